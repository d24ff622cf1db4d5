// comet-host: runs a host from a config, with the built-in actions `echo`
// (answers the value unchanged), `status` (everything in host_stats:
// uptime, requests and errors by code, bytes, connections, latency,
// streams), `publish` (publishes a value on a topic) and the stream
// `ticks` (N items, S seconds apart).
#include <comet/comet.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/program_options.hpp>

#include <chrono>
#include <csignal>
#include <iostream>
#include <map>
#include <optional>

namespace po = boost::program_options;
namespace json = boost::json;

namespace {

const char* usage = R"(Usage: comet-host [options]

Runs a comet-net host: COMET's TCP/JSON protocol, with the built-in actions
`echo` (answers the value unchanged), `status` (uptime, requests served,
errors by code, bytes, connections, latency percentiles, the addresses listened
on: all of a host name's, streams and subscriptions), `publish` ({"topic": T,
"value": V}: publishes V to T's subscribers, answered with its sequence
number) and the stream `ticks` ({"count": N, "interval": S}: N items
{"tick": 1} to {"tick": N}, S seconds apart). SIGINT or SIGTERM
stops it gracefully. The config may be TOML, YAML (COMET's settings.yml) or
JSON, by its extension.
--metrics-listen (or the config's metrics_listen) serves the host's
Prometheus metrics over HTTP (docs/observability.md).
--check-config validates the config (and the overrides) and exits: 0 when
usable, 2 with the problem otherwise.

Options)";

// `ticks`: {"count": N, "interval": S} streams {"tick": 1} .. {"tick": N},
// S seconds apart (none before the first).
boost::asio::awaitable<void> ticks(const json::value& value, comet::stream_writer& out) {
  const auto* o = value.if_object();
  const json::value* count = o ? o->if_contains("count") : nullptr;
  const json::value* interval = o ? o->if_contains("interval") : nullptr;
  const bool count_ok = count && ((count->is_int64() && count->as_int64() >= 0) || count->is_uint64());
  const bool interval_ok = !interval || (interval->is_number() && interval->to_number<double>() >= 0 &&
                                         interval->to_number<double>() <= 86400);
  if (!count_ok || !interval_ok)
    throw comet::error(comet::errc::bad_request,
                       "ticks takes {\"count\": N, \"interval\": S}: N items (0 or more), S seconds "
                       "apart (0 to 86400; default 0)");
  const auto n = count->to_number<std::uint64_t>();
  const auto pause = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(interval ? interval->to_number<double>() : 0.0));
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  for (std::uint64_t i = 1; i <= n; ++i) {
    if (i > 1 && pause.count() > 0) {
      timer.expires_after(pause);
      co_await timer.async_wait(boost::asio::use_awaitable);
    }
    json::value item = json::object{{"tick", i}};
    co_await out.write(std::move(item));
  }
}

// Where the address a host failed to listen on was given, for the message:
// the flag, or the config key and file.
std::string listen_origin(const po::variables_map& args, const comet::config& cfg) {
  const bool host_flag = args.count("host") > 0, port_flag = args.count("port") > 0;
  if (host_flag && port_flag) return "set by --host and --port";
  const std::string& file = cfg.source;  // the embedded default config has a name too
  if (port_flag) return "the port set by --port, the address by Socket_connection.Host.IP in " + file;
  if (host_flag) return "the address set by --host, the port by Socket_connection.Host.Port in " + file;
  return "set by Socket_connection.Host in " + file + "; --host and --port override it";
}

// --check-config: what the config says, on stdout, or why it is unusable.
int check_config(const comet::config& cfg) {
  if (!cfg.host.is_address()) {
    if (!comet::is_host_name(cfg.host.ip)) {
      std::cerr << "comet-host: --host '" << cfg.host.ip
                << "' is neither an IPv4 or IPv6 address nor a host name; write an address "
                   "such as 127.0.0.1 or a name such as localhost\n";
      return 2;
    }
    boost::asio::io_context io;
    boost::asio::ip::tcp::resolver resolver(io);
    boost::system::error_code ec;
    const auto results = resolver.resolve(cfg.host.ip, std::to_string(cfg.host.port), ec);
    if (ec || results.empty()) {
      std::cerr << "comet-host: the host name '" << cfg.host.ip << "' does not resolve ("
                << (ec ? ec.message() : std::string("no addresses"))
                << "); check the name, or write the address to listen on\n";
      return 2;
    }
  }
  try {
    // A host that is never started reads its TLS files, and nothing else.
    boost::asio::io_context unused;
    comet::host probe(unused.get_executor(), cfg);
  } catch (const comet::error& e) {
    std::cerr << "comet-host: " << e.what() << '\n';
    return 2;
  }
  // Every client by name, whether one peer or a list of endpoints (a name
  // is in one of the two maps).
  std::map<std::string, std::string> described;
  for (const auto& [name, peer] : cfg.clients) described.emplace(name, "at " + peer.to_string());
  for (const auto& [name, list] : cfg.client_endpoints) {
    std::string text = "over";
    for (const auto& peer : list) text += ' ' + peer.to_string();
    described.emplace(name, std::move(text));
  }
  std::cout << (cfg.source.empty() ? "config" : cfg.source) << ": ok; host "
            << cfg.host.to_string() << ", " << described.size()
            << (described.size() == 1 ? " client" : " clients");
  const char* separator = ": ";
  for (const auto& [name, text] : described) {
    std::cout << separator << name << ' ' << text;
    separator = ", ";
  }
  std::cout << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description options(usage);
  options.add_options()
      ("help,h", "show this help and exit")
      ("version", "show the version and exit")
      ("config,c", po::value<std::string>(), "config file: .toml, .yaml/.yml or .json (default: the embedded config/default.toml)")
      ("check-config", "validate the config and exit: 0 when usable, 2 otherwise")
      ("host", po::value<std::string>(), "address or host name to listen on (overrides the config)")
      ("port,p", po::value<int>(), "port to listen on; 0 picks a free one (overrides the config)")
      ("threads,t", po::value<int>(), "io threads (overrides the config's io_threads)")
      ("metrics-listen", po::value<std::string>(),
       "HOST:PORT to serve GET /metrics on, for Prometheus; port 0 picks a free one, logged; "
       "\"\" turns it off (overrides the config's metrics_listen)")
      ("log-level", po::value<std::string>()->default_value("info"),
       "trace, debug, info, warn, error or off");
  po::variables_map args;
  try {
    po::store(po::parse_command_line(argc, argv, options), args);
    po::notify(args);
  } catch (const po::error& e) {
    std::cerr << "comet-host: " << e.what() << "; see --help\n";
    return 2;
  }
  if (args.count("help")) {
    std::cout << options << '\n';
    return 0;
  }
  if (args.count("version")) {
    std::cout << "comet-host " << comet::version << '\n';
    return 0;
  }

  auto level = comet::parse_log_level(args["log-level"].as<std::string>());
  if (!level) {
    std::cerr << "comet-host: unknown --log-level '" << args["log-level"].as<std::string>()
              << "'; use trace, debug, info, warn, error or off\n";
    return 2;
  }
  comet::set_log_level(*level);

  comet::config cfg;
  try {
    cfg = args.count("config") ? comet::load_config(args["config"].as<std::string>())
                               : comet::default_config();
  } catch (const comet::config_error& e) {
    std::cerr << "comet-host: " << e.what() << '\n';
    return 2;
  }
  if (args.count("host")) cfg.host.ip = args["host"].as<std::string>();
  if (args.count("port")) {
    const int port = args["port"].as<int>();
    if (port < 0 || port > 65535) {
      std::cerr << "comet-host: --port " << port << " is out of range; use 0 to 65535\n";
      return 2;
    }
    cfg.host.port = static_cast<std::uint16_t>(port);
  }
  if (args.count("threads")) {
    const int threads = args["threads"].as<int>();
    if (threads < 1 || threads > 256) {
      std::cerr << "comet-host: --threads " << threads << " is out of range; use 1 to 256\n";
      return 2;
    }
    cfg.framework.io_threads = static_cast<std::size_t>(threads);
  }
  if (args.count("metrics-listen")) {
    const std::string text = args["metrics-listen"].as<std::string>();
    // Port 0 is for tests and scratch runs, which read the port from the log.
    const bool any_port = text.ends_with(":0");
    auto at = comet::parse_endpoint(any_port ? text.substr(0, text.size() - 1) + "1" : text);
    if (!text.empty() && !at) {
      std::cerr << "comet-host: --metrics-listen '" << text
                << "' is not HOST:PORT; write an address and a port, e.g. 127.0.0.1:9464\n";
      return 2;
    }
    if (at && any_port) at->port = 0;
    cfg.framework.metrics_listen = at;
  }
  if (args.count("check-config")) return check_config(cfg);

  // One io_context per thread: connections are spread over them and need
  // no strands.
  comet::io_pool pool(cfg.framework.io_threads, comet::io_pool_layout::context_per_thread);
  std::optional<comet::host> made;
  try {
    made.emplace(pool, cfg);
  } catch (const comet::error& e) {  // TLS files that cannot be used
    std::cerr << "comet-host: " << e.what() << '\n';
    return 2;
  }
  comet::host& host = *made;
  host.on("echo", [](const std::string&, const json::value& value) { return value; });
  host.on("status", [&host](const std::string&, const json::value&) {
    json::value status = json::value_from(host.stats());
    status.as_object()["version"] = comet::version;
    return status;
  });
  host.on("publish", [&host](const std::string&, const json::value& value) -> json::value {
    const auto* o = value.if_object();
    const json::value* topic = o ? o->if_contains("topic") : nullptr;
    if (!topic || !topic->is_string() || topic->as_string().empty() || !o->contains("value"))
      throw comet::error(comet::errc::bad_request,
                         "publish takes {\"topic\": \"name\", \"value\": V}");
    return host.publish(topic->as_string(), o->at("value"));
  });
  host.on_stream("ticks", ticks);

  // Before start(): a signal that arrives once the host says it is
  // listening must find the handler in place, not the default action.
  boost::asio::signal_set signals(pool.context(), SIGINT, SIGTERM);
  try {
    host.start();
  } catch (const comet::error& e) {
    std::cerr << "comet-host: " << e.what();
    if (e.code() == comet::errc::bind_failed) std::cerr << " (" << listen_origin(args, cfg) << ")";
    std::cerr << '\n';
    return 1;
  }

  signals.async_wait([&](boost::system::error_code ec, int signal) {
    if (ec) return;
    comet::log(comet::log_level::info,
               std::string("received ") + (signal == SIGINT ? "SIGINT" : "SIGTERM") +
                   ", stopping (again to stop at once)");
    signals.async_wait([&](boost::system::error_code ec2, int) {
      if (!ec2) pool.stop();
    });
    boost::asio::co_spawn(pool.get_executor(), host.async_stop(), [&](std::exception_ptr) {
      signals.cancel();
      pool.release();
    });
  });
  pool.join();
  return 0;
}
