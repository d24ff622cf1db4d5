// comet-send: sends a message and prints the answer's `result` as JSON;
// with --stream, each item of a stream as a line of JSON (JSON Lines); with
// --subscribe, each item published on a topic.
//
// Exit status: 0 answered (or the stream ended); 2 usage or config error; 3 peer offline, its name
// does not resolve, or connection lost; 4 timeout; 5 the host answered an error; 6 protocol error;
// 7 TLS failed (files or handshake); 8 the host cannot stream (--stream, --subscribe); 9 the
// action is `health` and the host is not serving (a readiness probe). With --repeat, the status
// of the first failure.
#include <comet/comet.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>
#include <boost/program_options.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

namespace po = boost::program_options;
namespace json = boost::json;

namespace {

const char* usage = R"(Usage: comet-send (--to HOST:PORT | --client NAME [--config FILE]) --action A [--value JSON]
       comet-send (--to HOST:PORT | --client NAME) --stream --action A [--value JSON]
       comet-send (--to HOST:PORT | --client NAME) --subscribe TOPIC [--count N] [--sequence]

Sends a COMET message and prints the answer's `result` as JSON on stdout.
--value takes JSON text, @FILE to read it from a file, or - to read stdin.
--stream opens a stream of the action (a host's stream handler) and prints
each item as one line of JSON (JSON Lines), until the stream ends.
--subscribe prints each item the host publishes on TOPIC as one line of JSON
(its value; with --sequence, {"sequence": S, "value": V}, S counting the
topic's publishes, so a gap is what was lost), until --count items or the
subscription ends; items lost are reported on stderr.
Exit status: 0 answered, or the stream ended; 2 usage or config error; 3 peer
offline, its name does not resolve, or connection lost; 4 timeout; 5 the host
answered an error; 6 protocol error; 7 TLS failed (files or handshake); 8 the
host cannot stream (a COMET host); 9 the action is `health` and the answer is
not {"status": "serving"} (so `--action health` is a readiness probe). With
--repeat, the status of the first failure, and a summary line on stderr.

Options)";

// A problem with the command line: reported in one line, exit status 2.
struct usage_error {
  std::string message;
};

int exit_status(const std::error_code& code) {
  switch (static_cast<comet::errc>(code.value())) {
    case comet::errc::peer_offline:
    case comet::errc::unresolved:
    case comet::errc::connection_closed: return 3;
    case comet::errc::connect_timeout:
    case comet::errc::request_timeout: return 4;
    case comet::errc::protocol_error: return 6;
    case comet::errc::tls_error: return 7;
    case comet::errc::unknown_client: return 2;
    case comet::errc::unsupported: return 8;
    default: return 5;
  }
}

// --value as given: JSON text, @file, or - for stdin.
json::value read_value(const std::string& argument) {
  std::string text = argument;
  std::string origin = "--value";
  if (argument == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    origin = "--value - (stdin)";
  } else if (argument.size() > 1 && argument.front() == '@') {
    const std::string path = argument.substr(1);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw usage_error{"cannot open the --value file '" + path + "'; check the path"};
    std::ostringstream content;
    content << in.rdbuf();
    text = content.str();
    origin = "--value @" + path;
  }
  std::string why;
  auto value = comet::parse_json(text, why);
  if (!value) {
    throw usage_error{origin + " is not valid JSON (" + why +
                      "); quote strings, e.g. --value '\"text\"'"};
  }
  return std::move(*value);
}

comet::config read_config(const po::variables_map& args) {
  comet::config cfg;
  try {
    cfg = args.count("config") ? comet::load_config(args["config"].as<std::string>())
                               : comet::default_config();
  } catch (const comet::config_error& e) {
    throw usage_error{e.what()};
  }
  if (args.count("timeout")) {
    const double seconds = args["timeout"].as<double>();
    if (!(seconds > 0 && seconds <= 86400))
      throw usage_error{"--timeout must be between 0 and 86400 seconds"};
    cfg.framework.request_timeout =
        std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
    cfg.framework.connect_timeout =
        std::min(cfg.framework.connect_timeout, cfg.framework.request_timeout);
  }
  return cfg;
}

std::size_t connect_retries(const po::variables_map& args) {
  const long long n = args["connect-retries"].as<long long>();
  if (n < 0 || n > 16) throw usage_error{"--connect-retries must be between 0 and 16"};
  return static_cast<std::size_t>(n);
}

comet::client make_target(const po::variables_map& args, const comet::config& cfg,
                          comet::io_pool& pool) {
  const auto executor = pool.get_executor();
  comet::client_options options;
  if (args.count("to")) {
    const auto to = comet::parse_endpoint(args["to"].as<std::string>());
    if (!to) throw usage_error{"--to '" + args["to"].as<std::string>() + "' is not HOST:PORT (an address or host name, then a port)"};
    options = comet::client_options::from_config(cfg);
    options.keep_alive = args.count("keep-alive") > 0;
    options.connect_retries = connect_retries(args);
    try {
      return comet::client(executor, *to, options);
    } catch (const std::invalid_argument& e) {
      throw usage_error{e.what()};
    }
  }
  const std::string name = args["client"].as<std::string>();
  options = comet::client_options::from_config(cfg, name);
  options.keep_alive = args.count("keep-alive") > 0;
  options.connect_retries = connect_retries(args);
  // A client with `endpoints = [...]` sends over its whole list.
  if (const auto list = cfg.client_endpoints.find(name); list != cfg.client_endpoints.end())
    return comet::client(executor, list->second, options);
  const comet::client_set clients(executor, cfg);
  const comet::client& named = clients[name];  // throws unknown_client, naming the configured ones
  return comet::client(executor, named.peer(), options);
}

// A `health` answer that says the host takes requests.
bool serving(const json::value& answer) {
  const auto* object = answer.if_object();
  const auto* status = object ? object->if_contains("status") : nullptr;
  return status && status->is_string() && status->get_string() == "serving";
}

// Sends `count` times, one after the other. Returns the exit status.
int send_all(const comet::client& target, const std::string& action, const json::value& value,
             std::size_t count, bool quiet, bool summary) {
  std::size_t answered = 0;
  int status = 0;
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < count; ++i) {
    try {
      const json::value result = target.send_sync(action, value);
      ++answered;
      if (!quiet) std::cout << comet::to_json_text(result) << '\n';
      if (action == "health" && !serving(result)) {
        std::cerr << "comet-send: " << target.name() << " is not serving: "
                  << comet::to_json_text(result) << '\n';
        if (status == 0) status = 9;
      }
    } catch (const comet::error& e) {
      std::cerr << "comet-send: " << e.what() << '\n';
      if (status == 0) status = exit_status(e.code());
    }
  }
  std::cout.flush();
  if (summary) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    std::array<char, 160> line{};
    std::snprintf(line.data(), line.size(),
                  "comet-send: %zu sent, %zu answered, %zu failed in %.3f s (%.1f msgs/s)\n",
                  count, answered, count - answered, seconds,
                  seconds > 0 ? static_cast<double>(count) / seconds : 0.0);
    std::cerr << line.data();
  }
  return status;
}

// Prints each item of a stream (--stream) or subscription (--subscribe)
// as a line of JSON, up to `count` items (0: all). Returns the exit status.
template <class Reader>
int print_items(Reader& reader, std::uint64_t count, bool with_sequence, bool subscription) {
  int status = 0;
  std::uint64_t printed = 0;
  try {
    while (count == 0 || printed < count) {
      auto item = reader.next_sync();
      if (!item) break;
      if constexpr (requires { item->sequence; }) {
        if (with_sequence) {
          const json::value line{{"sequence", item->sequence}, {"value", item->value}};
          std::cout << comet::to_json_text(line) << '\n';
        } else {
          std::cout << comet::to_json_text(item->value) << '\n';
        }
      } else {
        std::cout << comet::to_json_text(*item) << '\n';
      }
      std::cout.flush();  // a line as soon as it arrives, for a pipe
      ++printed;
    }
  } catch (const comet::error& e) {
    std::cerr << "comet-send: " << e.what() << '\n';
    status = exit_status(e.code());
  }
  if constexpr (requires { reader.dropped(); }) {
    if (subscription && reader.dropped() != 0)
      std::cerr << "comet-send: " << reader.dropped()
                << " items published on the topic were lost (gaps in the sequence)\n";
  }
  // Ends it on the host (a cancel frame); the next() after it completes
  // once the close has run, which hands the frame to the socket.
  reader.close();
  try {
    reader.next_sync();
  } catch (const comet::error&) {
  }
  return status;
}

// (The untyped cores: use_future needs a default-constructible result,
// which a reader is not.)
int stream_items(const comet::client& target, const std::string& action, const json::value& value) {
  comet::stream_reader<> reader(boost::asio::co_spawn(target.get_executor(),
                                                      target.open_channel(action, value, {}),
                                                      boost::asio::use_future)
                                    .get());
  return print_items(reader, 0, false, false);
}

int subscribe_items(const comet::client& target, const std::string& topic, std::uint64_t count,
                    bool with_sequence) {
  comet::subscription<> sub(boost::asio::co_spawn(target.get_executor(),
                                                  target.subscribe_channel(topic, {}),
                                                  boost::asio::use_future)
                                .get());
  return print_items(sub, count, with_sequence, true);
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description options(usage);
  options.add_options()
      ("help,h", "show this help and exit")
      ("version", "show the version and exit")
      ("config,c", po::value<std::string>(), "config naming the clients: .toml, .yaml/.yml (COMET's settings) or .json (default: the embedded one)")
      ("client", po::value<std::string>(), "name of a client in the config (Socket_connection.Client.NAME); one with endpoints sends over its list")
      ("to", po::value<std::string>(), "target host as HOST:PORT, an address or a name (instead of --client)")
      ("action,a", po::value<std::string>(), "the action to send")
      ("value,v", po::value<std::string>()->default_value("null"), "the value: JSON text, @FILE, or - for stdin")
      ("timeout", po::value<double>(), "seconds to wait for each answer (default: the config's request_timeout)")
      ("repeat,n", po::value<long long>(), "send N times, one after the other, then print a summary on stderr")
      ("quiet,q", "do not print the answers")
      ("connect-retries", po::value<long long>()->default_value(5),
       "retry a refused connect N times, 50 ms apart and doubling (5: a host that is starting "
       "is found within 1.5 s)")
      ("keep-alive", "ask to keep the connection open between sends (docs/protocol.md, Extensions)")
      ("stream", "open a stream of --action and print each item as a line of JSON (JSON Lines) until it ends")
      ("subscribe", po::value<std::string>(), "print what the host publishes on TOPIC, a line of JSON per item")
      ("count", po::value<long long>(), "with --subscribe: stop after N items")
      ("sequence", "with --subscribe: print each item as {\"sequence\": S, \"value\": V}")
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
  try {
    const auto level = comet::parse_log_level(args["log-level"].as<std::string>());
    if (!level) throw usage_error{"unknown --log-level; use trace, debug, info, warn, error or off"};
    comet::set_log_level(*level);
    const bool streaming = args.count("stream") > 0, subscribing = args.count("subscribe") > 0;
    if (streaming && subscribing) throw usage_error{"give --stream or --subscribe, not both"};
    if (subscribing && args.count("action"))
      throw usage_error{"--subscribe takes a topic, not --action; see --help"};
    if (!subscribing && !args.count("action")) throw usage_error{"--action is required; see --help"};
    if ((streaming || subscribing) && args.count("repeat"))
      throw usage_error{"--repeat does not apply to --stream or --subscribe"};
    if (!subscribing && (args.count("count") || args.count("sequence")))
      throw usage_error{"--count and --sequence apply to --subscribe only"};
    std::uint64_t count = 0;
    if (args.count("count")) {
      const long long n = args["count"].as<long long>();
      if (n < 1) throw usage_error{"--count must be at least 1"};
      count = static_cast<std::uint64_t>(n);
    }
    if (args.count("to") == args.count("client"))
      throw usage_error{"give exactly one target: --to HOST:PORT or --client NAME"};
    std::size_t repeat = 1;
    if (args.count("repeat")) {
      const long long n = args["repeat"].as<long long>();
      if (n < 1 || n > 1'000'000'000) throw usage_error{"--repeat must be from 1 to 1000000000"};
      repeat = static_cast<std::size_t>(n);
    }
    const json::value value = read_value(args["value"].as<std::string>());
    const comet::config cfg = read_config(args);

    comet::io_pool pool(1);
    const comet::client target = make_target(args, cfg, pool);
    if (subscribing)
      return subscribe_items(target, args["subscribe"].as<std::string>(), count,
                             args.count("sequence") > 0);
    if (streaming) return stream_items(target, args["action"].as<std::string>(), value);
    return send_all(target, args["action"].as<std::string>(), value, repeat,
                    args.count("quiet") > 0, args.count("repeat") > 0);
  } catch (const usage_error& e) {
    std::cerr << "comet-send: " << e.message << '\n';
    return 2;
  } catch (const comet::error& e) {
    std::cerr << "comet-send: " << e.what() << '\n';
    return exit_status(e.code());
  }
}
