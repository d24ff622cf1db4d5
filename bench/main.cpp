// comet-bench: request/response throughput and latency of comet-net's host
// and client, each figure divided by a hand-written baseline measured in the
// same run. See bench/README.md.
#include "baseline_server.hpp"
#include "comet_side.hpp"
#include "endpoints.hpp"
#include "idle.hpp"
#include "load.hpp"
#include "platform.hpp"
#include "queue_burst.hpp"
#include "streams.hpp"
#include "report.hpp"
#include "tls_pki.hpp"

#include <comet/log.hpp>

#include <boost/program_options.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iostream>

namespace po = boost::program_options;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace comet_bench;

namespace {

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::size_t start = 0;
  while (start <= text.size()) {
    const auto comma = text.find(',', start);
    const auto end = comma == std::string::npos ? text.size() : comma;
    if (end > start) items.push_back(text.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return items;
}

std::vector<std::size_t> number_list(const std::string& option, const std::string& text,
                                     std::size_t low, std::size_t high) {
  std::vector<std::size_t> values;
  for (const auto& item : split_list(text)) {
    std::size_t v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc{} || end != item.data() + item.size() || v < low || v > high)
      throw usage_error("--" + option + ": '" + item + "' is not a whole number between " +
                        std::to_string(low) + " and " + std::to_string(high));
    values.push_back(v);
  }
  if (values.empty()) throw usage_error("--" + option + " needs at least one value");
  return values;
}

tcp::endpoint parse_target(const std::string& text) {
  const auto colon = text.rfind(':');
  std::string host = colon == std::string::npos ? "" : text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  const auto ports = colon == std::string::npos
                         ? std::vector<std::size_t>{}
                         : number_list("to", text.substr(colon + 1), 1, 65535);
  if (ec || ports.size() != 1)
    throw usage_error("--to '" + text + "': expected IP:PORT, e.g. 127.0.0.1:65432 or [::1]:65432");
  if (!is_loopback(address))
    throw usage_error("--to " + text +
                      ": comet-bench only loads servers on this machine's loopback interface "
                      "(127.0.0.0/8 or ::1), never a network or another host");
  return {address, static_cast<unsigned short>(ports.front())};
}

std::chrono::nanoseconds seconds_option(const std::string& name, double s, double low,
                                        double high) {
  if (!std::isfinite(s) || s < low || s > high)
    throw usage_error("--" + name + " " + std::to_string(s) + ": use a number of seconds from " +
                      std::to_string(low) + " to " + std::to_string(high));
  return std::chrono::nanoseconds(static_cast<long long>(s * 1e9));
}

// The load matrix of a plain run: for each load, the baseline first (the
// reference), then the comet host at each thread count (or the --to
// server), then comet::client against `client_server`.
struct plan_request {
  std::vector<load_mode> modes;
  std::vector<std::size_t> connections, depths, payloads, threads;
  bool floor = false, baseline = true, comet = true, raw_client = true, comet_client = false;
  server_kind client_server = server_kind::baseline;
  bool external = false;
  bool tls = false;  // each comet::client row on the comet host also over TLS
  bool metrics_off = false;  // each comet host row also with its counters off
  bool relay = false;        // each raw-client comet host row also relaying (scenario::relay)
};

std::vector<scenario> expand(const plan_request& p) {
  std::vector<scenario> out;
  auto add = [&](scenario s) {
    for (const auto& o : out)
      if (o.same_load(s) && o.server == s.server && o.driver == s.driver &&
          o.threads == s.threads && o.tls == s.tls && o.metrics == s.metrics)
        return;
    out.push_back(s);
    if (p.metrics_off && s.server == server_kind::comet) {
      scenario bare = s;
      bare.metrics = false;
      out.push_back(bare);
    }
    if (p.relay && s.server == server_kind::comet && s.driver == driver_kind::raw && !s.tls) {
      scenario relayed = s;
      relayed.relay = true;
      out.push_back(relayed);
      if (p.metrics_off) {
        relayed.metrics = false;
        out.push_back(relayed);
      }
    }
  };
  const server_kind comet_side = p.external ? server_kind::external : server_kind::comet;
  for (auto mode : p.modes)
    for (auto payload : p.payloads)
      for (auto c : p.connections)
        for (auto depth : p.depths) {
          scenario s;
          s.mode = mode;
          s.connections = c;
          s.payload = payload;
          s.depth = mode == load_mode::pipelined || mode == load_mode::multiplexed ? depth : 1;
          if (p.raw_client && p.floor) {
            s.server = server_kind::floor;
            add(s);
            s.server = server_kind::baseline;
          }
          if (p.raw_client && p.baseline) add(s);
          if (p.raw_client && p.comet)
            for (auto t : p.external ? std::vector<std::size_t>{1} : p.threads) {
              s.server = comet_side;
              s.threads = t;
              add(s);
            }
          if (p.comet_client && mode != load_mode::pipelined) {
            s.driver = driver_kind::comet_client;
            const bool on_comet = p.client_server != server_kind::baseline;
            s.server = on_comet ? comet_side : server_kind::baseline;
            for (auto t : on_comet && !p.external ? p.threads : std::vector<std::size_t>{1}) {
              s.threads = t;
              add(s);
              if (p.tls && s.server == server_kind::comet) {
                scenario secure = s;
                secure.tls = true;
                add(secure);
              }
            }
          }
        }
  return out;
}

// Issue 4's targets, exactly: one-shot 16, keep-alive 16, pipelined 64 x 4
// against the comet host on 1 and 2 io threads and the baseline; and
// comet::client against the raw client for keep-alive 16 and multiplexed
// 64 x 4 (the client's default max_connections / max_in_flight).
std::vector<scenario> issue4_suite(bool external, std::size_t payload) {
  plan_request p;
  p.payloads = {payload};
  p.threads = {1, 2};
  p.external = external;
  p.depths = {64};
  p.modes = {load_mode::one_shot, load_mode::keep_alive};
  p.connections = {16};
  auto rows = expand(p);
  p.modes = {load_mode::pipelined};
  p.connections = {4};
  for (auto& s : expand(p)) rows.push_back(s);
  p.comet = false;
  p.comet_client = true;
  p.modes = {load_mode::keep_alive, load_mode::multiplexed};
  p.connections = {16};
  for (auto& s : expand(p))
    if (s.mode == load_mode::keep_alive) rows.push_back(s);
  p.connections = {4};
  for (auto& s : expand(p))
    if (s.mode == load_mode::multiplexed) rows.push_back(s);
  std::vector<scenario> unique;
  for (const auto& s : rows) {
    bool seen = false;
    for (const auto& u : unique)
      seen = seen || (u.same_load(s) && u.server == s.server && u.driver == s.driver &&
                      u.threads == s.threads);
    if (!seen) unique.push_back(s);
  }
  return unique;
}

// Issue 21's reference rows: the protocol's floor (a byte-scanning
// server), the baseline and the comet host, under the raw client, in the
// three loads its targets name; and the comet host relaying through a
// comet::client, keep-alive and multiplexed 4 x 64 (pipelined requests
// are ordered: a relay would answer them one at a time), each read
// against the host answering directly.
std::vector<scenario> floor_suite(std::size_t payload, bool metrics_off) {
  plan_request p;
  p.floor = true;
  p.metrics_off = metrics_off;
  p.payloads = {payload};
  p.threads = {1};
  p.depths = {64};
  p.modes = {load_mode::one_shot, load_mode::keep_alive};
  p.connections = {16};
  p.relay = true;
  auto rows = expand(p);
  p.relay = false;
  p.modes = {load_mode::pipelined};
  p.connections = {4};
  for (auto& s : expand(p)) rows.push_back(s);
  p.floor = p.baseline = false;
  p.relay = true;
  p.modes = {load_mode::multiplexed};
  for (auto& s : expand(p)) rows.push_back(s);
  return rows;
}

// The two ends of --tls: a host certificate for 127.0.0.1 and the CA that
// signed it, made once per run in a temporary directory.
struct tls_ends {
  comet::tls_settings host, client;
};

result run_scenario(const scenario& s, const run_timing& timing, const cpu_plan& cpus,
                    const std::optional<tcp::endpoint>& external, const tls_ends& tls) {
  // Servers start on this thread, which is pinned to the servers' CPUs, so
  // their threads inherit that affinity.
  std::optional<baseline_server> baseline;
  std::optional<comet_host_target> host;
  tcp::endpoint target;
  const auto loopback = asio::ip::make_address_v4("127.0.0.1");
  switch (s.server) {
    case server_kind::baseline: target = {loopback, baseline.emplace().port()}; break;
    case server_kind::floor:
      target = {loopback, baseline.emplace(server_style::scanning).port()};
      break;
    case server_kind::comet:
      name_this_thread("comet-host");  // its io_pool's threads inherit the name
      target = {loopback,
                host.emplace(s.threads, s.tls ? tls.host : comet::tls_settings{}, s.metrics, 10000,
                             s.relay)
                    .port()};
      name_this_thread("comet-bench");
      break;
    case server_kind::external: target = *external; break;
  }
  const auto limit = timing.warmup + timing.duration + timing.drain + std::chrono::seconds(5);
  if (s.driver == driver_kind::raw)
    return run_bounded<result>([&] { return run_raw_load(s, target, timing); }, cpus.load, limit,
                               "the raw load generator");
  return run_bounded<result>([&] { return run_comet_client_load(s, target, timing, tls.client); },
                             cpus.load, limit, "the comet::client load");
}

}  // namespace

int main(int argc, char** argv) {
  po::options_description desc(
      "comet-bench: throughput and latency of comet-net's host and client against a "
      "hand-written Asio baseline, on loopback.\nLists are comma-separated; every "
      "combination is run.\n\nOptions");
  // clang-format off
  desc.add_options()
    ("help,h", "show this help")
    ("suite", po::value<std::string>(), "run a preset instead of the load options: 'issue4' "
        "(issue 4's targets; implies --pin), or 'queue' (1,000, 10,000 and 100,000 sends queued "
        "at once on one keep-alive client; same as --queued 1000,10000,100000), or 'stream' "
        "(items/s of 1 and 16 streams and deliveries/s of a publish to 100 subscribers, as ratios to "
        "the multiplexed rate, beside Debian's nats-server when it is installed), or 'endpoints' "
        "(comet::client over three in-process hosts on 127.0.0.2-.4 against the same client over "
        "one, keep-alive x64 and one-shot x16, as ratios; implies --pin), or 'floor' (the "
        "protocol's floor, a byte-scanning server fit only for canonical loopback load, beside "
        "the baseline and the comet host: one-shot x16, keep-alive x16, pipelined 4 x 64, as "
        "fractions of the floor; implies --pin)")
    ("idle", po::value<std::size_t>(), "instead of load rows: open this many keep-alive "
        "connections to the comet host, one request each, and report the host's heap and the "
        "process's RSS per idle connection (up to 200,000; past 20,000 the clients bind "
        "127.0.0.2, .3, ...)")
    ("queued", po::value<std::string>(), "instead of load rows: bursts of this many sends "
        "queued at once on one keep-alive comet::client against the comet host, with the cost "
        "per send as a ratio to the first size (1-1000000 each)")
    ("mode,m", po::value<std::string>()->default_value("keep-alive"),
        "load modes: one-shot, keep-alive, pipelined, multiplexed")
    ("connections,c", po::value<std::string>()->default_value("16"), "connections (1-1024)")
    ("depth,n", po::value<std::string>()->default_value("64"),
        "pipelined: requests per round; multiplexed: requests in flight per connection (1-1024)")
    ("payload,s", po::value<std::string>()->default_value("32"),
        "bytes of the echoed string value (0-1048576)")
    ("threads,t", po::value<std::string>()->default_value("1"), "io threads of the comet host (1-64)")
    ("servers", po::value<std::string>()->default_value("baseline,comet"),
        "servers measured with the raw client: floor (the protocol's floor, a byte-scanning "
        "server for canonical loopback load), baseline, comet")
    ("clients", po::value<std::string>()->default_value("raw"),
        "load generators: raw (hand-written Asio), comet (comet::client)")
    ("client-server", po::value<std::string>()->default_value("baseline"),
        "the server comet::client loads: baseline or comet")
    ("to", po::value<std::string>(), "load the server at IP:PORT (loopback only) instead of an "
        "in-process comet host; the baseline still runs in-process")
    ("duration,d", po::value<double>()->default_value(2.0, "2"), "measured seconds per run (at most 60)")
    ("warmup,w", po::value<double>()->default_value(0.3, "0.3"), "unmeasured seconds before each run")
    ("rounds,r", po::value<int>(), "run every row this many times, round after round, and report "
        "the median ratio with its range (1-10; default 1, 3 with --suite)")
    ("pin", po::bool_switch(), "pin the load generator to the last CPU and the servers to the others")
    ("metrics-off", po::bool_switch(), "also run each comet host row with the host's and "
        "comet::client's per-request counters off (host_options::metrics), as a ratio to the row "
        "with them on")
    ("relay", po::bool_switch(), "also run each comet host row (raw client) with \"echo\" a "
        "coroutine handler that relays each request through a keep-alive comet::client to a "
        "second comet host; the ratio is to the host answering directly")
    ("tls", po::bool_switch(), "also run each comet::client row against the comet host over TLS "
        "(throwaway certificates), as a ratio to the same row in plain TCP; needs --clients comet "
        "--client-server comet")
    ("json", po::value<std::string>()->default_value("bench-results.json"), "write results here")
    ("plot", po::value<std::string>(), "draw msgs/s vs requests in flight into this PNG (gnuplot)")
    ("log-level", po::value<std::string>()->default_value("error"), "comet-net's log level");
  // clang-format on
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << desc << "\nExit status: 0 no errors, 1 some requests failed, 2 usage, "
                           "3 a run did not stop by itself.\n";
      return 0;
    }
    auto level = comet::parse_log_level(vm["log-level"].as<std::string>());
    if (!level) throw usage_error("--log-level: use trace, debug, info, warn, error or off");
    comet::set_log_level(*level);

    run_timing timing;
    timing.duration = seconds_option("duration", vm["duration"].as<double>(), 0.05, max_duration_s);
    timing.warmup = seconds_option("warmup", vm["warmup"].as<double>(), 0, 10);
    std::optional<tcp::endpoint> external;
    if (vm.count("to")) external = parse_target(vm["to"].as<std::string>());

    std::optional<std::string> gnuplot;
    if (vm.count("plot") && !(gnuplot = find_gnuplot())) throw usage_error(gnuplot_hint);

    std::vector<scenario> scenarios;
    bool pin = vm["pin"].as<bool>();
    if (vm.count("idle")) {
      const std::size_t n = vm["idle"].as<std::size_t>();
      if (n < 1 || n > 200000) throw usage_error("--idle: 1 to 200,000 connections");
      const bool metrics = !vm["metrics-off"].as<bool>();
      const auto r = run_idle(n, metrics);
      print_idle(stdout, r, metrics);
      return r.errors ? 1 : 0;
    }
    const bool queue_suite = vm.count("suite") && vm["suite"].as<std::string>() == "queue";
    if (vm.count("queued") || queue_suite) {
      const std::string sizes_text =
          queue_suite ? "1000,10000,100000" : vm["queued"].as<std::string>();
      const auto sizes = number_list("queued", sizes_text, 1, 1000000);
      const int rounds = vm.count("rounds") ? vm["rounds"].as<int>() : 3;
      if (rounds < 1 || rounds > 10) throw usage_error("--rounds: 1 to 10");
      raise_fd_limit(256);
      const cpu_plan cpus = plan_cpus(pin);
      pin_this_thread(cpus.server);
      const auto rows = run_queue_bursts(sizes, rounds, cpus.load);
      print_bursts(stdout, rows);
      bool failed = false;
      for (const auto& r : rows) failed = failed || r.errors != 0;
      return failed ? 1 : 0;
    }
    if (vm.count("suite") && vm["suite"].as<std::string>() == "stream") {
      const int rounds = vm.count("rounds") ? vm["rounds"].as<int>() : 3;
      if (rounds < 1 || rounds > 10) throw usage_error("--rounds: 1 to 10");
      raise_fd_limit(1024);
      const cpu_plan cpus = plan_cpus(pin);
      pin_this_thread(cpus.server);
      const double seconds = std::chrono::duration<double>(timing.duration).count();
      const auto rows = run_stream_suite(rounds, seconds, cpus.load);
      print_stream_rows(stdout, rows);
      bool failed = false;
      for (const auto& r : rows) failed = failed || r.errors != 0;
      return failed ? 1 : 0;
    }
    if (vm.count("suite") && vm["suite"].as<std::string>() == "endpoints") {
      const int rounds = vm.count("rounds") ? vm["rounds"].as<int>() : 3;
      if (rounds < 1 || rounds > 10) throw usage_error("--rounds: 1 to 10");
      raise_fd_limit(1024);
      // Implies --pin: the hosts share the servers' CPUs however many they
      // are, so one host and three get the same CPU, and so does the client.
      const cpu_plan cpus = plan_cpus(true);
      pin_this_thread(cpus.server);
      const auto rows = run_endpoint_suite(rounds, std::chrono::duration<double>(timing.warmup).count(),
                                           std::chrono::duration<double>(timing.duration).count(),
                                           cpus.load);
      print_endpoint_rows(stdout, rows);
      bool failed = false;
      for (const auto& r : rows) failed = failed || r.errors != 0;
      return failed ? 1 : 0;
    }
    if (vm.count("suite")) {
      const auto suite = vm["suite"].as<std::string>();
      if (suite != "issue4" && suite != "floor")
        throw usage_error(
            "--suite: the presets are 'issue4', 'floor', 'queue', 'stream' and 'endpoints'");
      for (const char* o : {"mode", "connections", "depth", "threads", "servers", "clients",
                            "client-server", "tls"})
        if (!vm[o].defaulted()) throw usage_error(std::string("--suite sets --") + o + " itself");
      const auto payload =
          number_list("payload", vm["payload"].as<std::string>(), 0, max_payload).front();
      if (suite == "floor" && external)
        throw usage_error("--suite floor runs its own servers: leave out --to");
      scenarios = suite == "floor" ? floor_suite(payload, vm["metrics-off"].as<bool>())
                                   : issue4_suite(external.has_value(), payload);
      pin = true;
    } else {
      plan_request p;
      for (const auto& m : split_list(vm["mode"].as<std::string>())) {
        auto mode = parse_load_mode(m);
        if (!mode)
          throw usage_error("--mode '" + m + "': use one-shot, keep-alive, pipelined, multiplexed");
        p.modes.push_back(*mode);
      }
      if (p.modes.empty()) throw usage_error("--mode needs at least one mode");
      p.connections = number_list("connections", vm["connections"].as<std::string>(), 1,
                                  max_connections);
      p.depths = number_list("depth", vm["depth"].as<std::string>(), 1, max_depth);
      p.payloads = number_list("payload", vm["payload"].as<std::string>(), 0, max_payload);
      p.threads = number_list("threads", vm["threads"].as<std::string>(), 1, max_io_threads);
      auto servers = split_list(vm["servers"].as<std::string>());
      auto clients = split_list(vm["clients"].as<std::string>());
      auto has = [](const std::vector<std::string>& v, const char* x) {
        return std::find(v.begin(), v.end(), x) != v.end();
      };
      for (const auto& s : servers)
        if (s != "floor" && s != "baseline" && s != "comet")
          throw usage_error("--servers: floor, baseline or comet");
      for (const auto& c : clients)
        if (c != "raw" && c != "comet") throw usage_error("--clients: raw or comet");
      p.floor = has(servers, "floor");
      p.baseline = has(servers, "baseline");
      p.comet = has(servers, "comet");
      p.raw_client = has(clients, "raw");
      p.comet_client = has(clients, "comet");
      const auto cs = vm["client-server"].as<std::string>();
      if (cs != "baseline" && cs != "comet") throw usage_error("--client-server: baseline or comet");
      p.client_server = cs == "comet" ? server_kind::comet : server_kind::baseline;
      p.external = external.has_value();
      p.tls = vm["tls"].as<bool>();
      p.metrics_off = vm["metrics-off"].as<bool>();
      p.relay = vm["relay"].as<bool>();
      if (p.relay && p.external) throw usage_error("--relay runs its own comet hosts: leave out --to");
      if (p.tls && (!p.comet_client || p.client_server != server_kind::comet || p.external))
        throw usage_error("--tls measures comet::client and the in-process comet host over TLS: "
                          "add --clients comet --client-server comet (and no --to)");
      scenarios = expand(p);
    }
    if (scenarios.empty()) throw usage_error("nothing to run: check --servers and --clients");
    std::optional<comet::test::test_pki> pki;
    tls_ends tls;
    if (std::any_of(scenarios.begin(), scenarios.end(), [](const scenario& s) { return s.tls; })) {
      pki.emplace();
      tls.host.enabled = tls.client.enabled = true;
      tls.host.certificate = pki->file("host.pem");
      tls.host.private_key = pki->file("host.key");
      tls.client.ca = pki->file("ca.pem");
    }
    const int rounds = vm.count("rounds") ? vm["rounds"].as<int>() : vm.count("suite") ? 3 : 1;
    if (rounds < 1 || rounds > 10) throw usage_error("--rounds: 1 to 10");
    if (scenarios.size() * static_cast<std::size_t>(rounds) > 200)
      throw usage_error("more than 200 runs requested; narrow the lists or lower --rounds");

    std::size_t most_sockets = 64;
    for (const auto& s : scenarios) most_sockets = std::max(most_sockets, 2 * s.connections + 64);
    raise_fd_limit(most_sockets);
    const cpu_plan cpus = plan_cpus(pin);
    if (pin && cpus.load.empty())
      std::cerr << "comet-bench: fewer than 2 CPUs available, not pinning\n";
    pin_this_thread(cpus.server);

    // Round after round, so a slow spell of a shared machine falls on every
    // row of a round rather than on one row.
    std::vector<std::vector<result>> by_round(static_cast<std::size_t>(rounds));
    const std::size_t total = scenarios.size() * by_round.size();
    std::size_t done = 0;
    for (auto& round : by_round) {
      for (const auto& s : scenarios) {
        round.push_back(run_scenario(s, timing, cpus, external, tls));
        const result& r = round.back();
        std::cerr << "[" << ++done << "/" << total << "] " << row_label(r) << ": "
                  << static_cast<long long>(r.rate()) << " msgs/s, " << r.errors << " errors\n";
      }
      assign_ratios(round);
    }
    std::vector<result> results = rounds == 1 ? by_round.front() : merge_rounds(by_round);
    print_table(stdout, results);
    std::fflush(stdout);

    run_info info;
    for (int i = 0; i < argc; ++i) info.command += (i ? " " : "") + std::string(argv[i]);
    info.cpu_plan = cpus.describe();
    info.cpus = usable_cpus();
    info.warmup_s = std::chrono::duration<double>(timing.warmup).count();
    info.duration_s = std::chrono::duration<double>(timing.duration).count();
    info.rounds = rounds;
    info.target = external ? vm["to"].as<std::string>() : "in-process";
    std::string error;
    const auto json_path = vm["json"].as<std::string>();
    if (!json_path.empty() && !write_json(json_path, info, results, error))
      std::cerr << "comet-bench: " << error << "\n";
    if (gnuplot && !write_plot(*gnuplot, vm["plot"].as<std::string>(), results, error))
      std::cerr << "comet-bench: " << error << "\n";

    bool failed = false;
    for (const auto& r : results) failed = failed || r.errors != 0;
    return failed ? 1 : 0;
  } catch (const usage_error& e) {
    std::cerr << "comet-bench: " << e.what() << "\n";
    return 2;
  } catch (const po::error& e) {
    std::cerr << "comet-bench: " << e.what() << "; see --help\n";
    return 2;
  }
}
