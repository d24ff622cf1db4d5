// comet-soak's command line.
#include "soak.hpp"

#include <boost/program_options.hpp>

#include <cmath>
#include <iostream>
#include <sstream>

namespace comet_soak {
namespace {

namespace po = boost::program_options;

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void require_seconds(const char* name, double s, double low, double high) {
  if (!std::isfinite(s) || s < low || s > high)
  {
    std::ostringstream message;
    message << "--" << name << ": use a number of seconds from " << low << " to " << high;
    throw usage_error(message.str());
  }
}

void require_count(const char* name, std::size_t n, std::size_t low, std::size_t high) {
  if (n < low || n > high)
    throw usage_error(std::string("--") + name + ": use a whole number from " + std::to_string(low) +
                      " to " + std::to_string(high));
}

po::options_description describe(soak_options& o) {
  po::options_description d(
      "comet-soak: a comet::host on 127.0.0.1 under many concurrent clients, valid and hostile,\n"
      "for a bounded time. Exits 0 when every valid request was answered exactly (or failed\n"
      "with the error its action causes), every hostile exchange ended as docs/protocol.md\n"
      "says, and RSS stayed within the bound; 1 otherwise; 2 on a usage error; 3 if the run\n"
      "did not stop by itself.\n\nOptions");
  d.add_options()
      ("help,h", "show this help")
      ("duration", po::value(&o.duration_s)->default_value(o.duration_s),
       "seconds of traffic (0.5 to 300)")
      ("clients", po::value(&o.clients)->default_value(o.clients),
       "concurrent client workers (4 to 1000): a quarter hostile raw sockets, the rest split "
       "between one-shot and keep-alive comet::client sends")
      ("host-threads", po::value(&o.host_threads)->default_value(o.host_threads),
       "threads of the host's io_pool (1 to 64)")
      ("client-threads", po::value(&o.client_threads)->default_value(o.client_threads),
       "threads of the clients' io_pool (1 to 64)")
      ("warmup", po::value(&o.warmup_s)->default_value(o.warmup_s),
       "seconds before the RSS baseline is taken (at most half the duration)")
      ("rss-slack", po::value(&o.rss_slack_mib)->default_value(o.rss_slack_mib),
       "MiB that RSS may grow over its baseline (1 to 4096)")
      ("seed", po::value(&o.seed)->default_value(o.seed), "seed of the traffic's random choices")
      ("strict", po::bool_switch(&o.strict),
       "fail on the known framework issues too (reported either way)")
      ("verbose,v", po::bool_switch(&o.verbose), "print the framework's log lines");
  return d;
}

void validate(soak_options& o) {
  require_seconds("duration", o.duration_s, 0.5, 300);
  require_seconds("warmup", o.warmup_s, 0, 300);
  o.warmup_s = std::min(o.warmup_s, o.duration_s / 2);
  require_count("clients", o.clients, 4, 1000);
  require_count("host-threads", o.host_threads, 1, 64);
  require_count("client-threads", o.client_threads, 1, 64);
  require_count("rss-slack", o.rss_slack_mib, 1, 4096);
}

}  // namespace

std::optional<soak_options> parse_options(int argc, char** argv, int& status) {
  soak_options o;
  const auto description = describe(o);
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, description), vm);
    if (vm.count("help")) {
      std::cout << description << "\n";
      status = 0;
      return std::nullopt;
    }
    po::notify(vm);
    validate(o);
    return o;
  } catch (const std::exception& e) {
    std::cerr << "comet-soak: " << e.what() << "\n(see comet-soak --help)\n";
    status = 2;
    return std::nullopt;
  }
}

}  // namespace comet_soak
