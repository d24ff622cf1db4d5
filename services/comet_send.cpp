// comet-send: sends one message and prints the answer's `result` as JSON.
//
// Exit status: 0 answered; 2 usage or config error; 3 peer offline or
// connection lost; 4 timeout; 5 the host answered an error; 6 protocol error.
#include <comet/comet.hpp>

#include <boost/json/parse.hpp>
#include <boost/program_options.hpp>

#include <iostream>

namespace po = boost::program_options;
namespace json = boost::json;

namespace {

const char* usage = R"(Usage: comet-send (--to IP:PORT | --client NAME [--config FILE]) --action A [--value JSON]

Sends one COMET message and prints the answer's `result` as JSON on stdout.
Exit status: 0 answered; 2 usage or config error; 3 peer offline or connection
lost; 4 timeout; 5 the host answered an error; 6 protocol error.

Options)";

std::optional<comet::endpoint> parse_target(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) return std::nullopt;
  std::string ip = text.substr(0, colon);
  if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
  int port = 0;
  try {
    std::size_t used = 0;
    port = std::stoi(text.substr(colon + 1), &used);
    if (used != text.size() - colon - 1) return std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (port < 1 || port > 65535) return std::nullopt;
  return comet::endpoint{ip, static_cast<std::uint16_t>(port)};
}

int exit_status(const std::error_code& code) {
  switch (static_cast<comet::errc>(code.value())) {
    case comet::errc::peer_offline:
    case comet::errc::connection_closed: return 3;
    case comet::errc::connect_timeout:
    case comet::errc::request_timeout: return 4;
    case comet::errc::protocol_error: return 6;
    case comet::errc::unknown_client: return 2;
    default: return 5;
  }
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description options(usage);
  options.add_options()
      ("help,h", "show this help and exit")
      ("version", "show the version and exit")
      ("config,c", po::value<std::string>(), "TOML config naming the clients (default: the embedded one)")
      ("client", po::value<std::string>(), "name of a client in the config ([Socket_connection.Client.NAME])")
      ("to", po::value<std::string>(), "target host as IP:PORT (instead of --client)")
      ("action,a", po::value<std::string>(), "the action to send")
      ("value,v", po::value<std::string>()->default_value("null"), "the value, as JSON text")
      ("timeout", po::value<double>(), "seconds to wait for the answer (default: the config's request_timeout)")
      ("log-level", po::value<std::string>()->default_value("warn"),
       "trace, debug, info, warn, error or off");
  po::variables_map args;
  try {
    po::store(po::parse_command_line(argc, argv, options), args);
    po::notify(args);
  } catch (const po::error& e) {
    std::cerr << "comet-send: " << e.what() << "; see --help\n";
    return 2;
  }
  if (args.count("help")) {
    std::cout << options << '\n';
    return 0;
  }
  if (args.count("version")) {
    std::cout << "comet-send " << comet::version << '\n';
    return 0;
  }
  auto fail_usage = [](const std::string& message) {
    std::cerr << "comet-send: " << message << '\n';
    return 2;
  };
  auto level = comet::parse_log_level(args["log-level"].as<std::string>());
  if (!level) return fail_usage("unknown --log-level; use trace, debug, info, warn, error or off");
  comet::set_log_level(*level);
  if (!args.count("action")) return fail_usage("--action is required; see --help");
  if (args.count("to") == args.count("client"))
    return fail_usage("give exactly one target: --to IP:PORT or --client NAME");

  boost::system::error_code json_ec;
  json::value value = json::parse(args["value"].as<std::string>(), json_ec);
  if (json_ec)
    return fail_usage("--value is not valid JSON (" + json_ec.message() +
                      "); quote strings, e.g. --value '\"text\"'");

  comet::config cfg;
  try {
    cfg = args.count("config") ? comet::load_config(args["config"].as<std::string>())
                               : comet::default_config();
  } catch (const comet::config_error& e) {
    return fail_usage(e.what());
  }
  if (args.count("timeout")) {
    const double seconds = args["timeout"].as<double>();
    if (!(seconds > 0 && seconds <= 86400)) return fail_usage("--timeout must be between 0 and 86400 seconds");
    cfg.framework.request_timeout =
        std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
    cfg.framework.connect_timeout = std::min(cfg.framework.connect_timeout, cfg.framework.request_timeout);
  }

  comet::io_pool pool(1);
  try {
    std::optional<comet::client> target;
    if (args.count("to")) {
      auto to = parse_target(args["to"].as<std::string>());
      if (!to) return fail_usage("--to '" + args["to"].as<std::string>() + "' is not IP:PORT");
      try {
        target.emplace(pool.get_executor(), *to, comet::client_options::from_config(cfg));
      } catch (const std::invalid_argument& e) {
        return fail_usage(e.what());
      }
    } else {
      target.emplace(comet::client_set(pool.get_executor(), cfg)[args["client"].as<std::string>()]);
    }
    const json::value result = target->send_sync(args["action"].as<std::string>(), std::move(value));
    std::cout << comet::to_json_text(result) << std::endl;
    return 0;
  } catch (const comet::error& e) {
    std::cerr << "comet-send: " << e.what() << '\n';
    return exit_status(e.code());
  }
}
