// comet-soak: a host under many concurrent peers, valid and hostile, for a
// bounded time. Every valid request carries a unique value and must come back
// exactly, or fail with the one error its action is meant to cause; every
// hostile exchange must end the way docs/protocol.md says; the process's RSS
// must stay bounded. See bench/soak/main.cpp for the run itself.
#pragma once

#include <comet/client.hpp>
#include <comet/endpoint.hpp>
#include <comet/errors.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace comet_soak {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using rng_type = std::mt19937_64;

// The host's limits, small so that the soak reaches them often.
inline constexpr std::size_t host_max_content = 64 * 1024;
inline constexpr auto host_idle_timeout = 2000ms;
inline constexpr auto host_handler_timeout = 1000ms;
inline constexpr std::size_t host_write_buffer_limit = 256 * 1024;

// The actions the soak's host serves.
inline constexpr std::string_view echo_action = "echo";
inline constexpr std::string_view slow_echo_action = "slow_echo";  // a coroutine: sleeps, then echoes
inline constexpr std::string_view fail_action = "fail";            // always throws
inline constexpr std::string_view unknown_action = "no_such_action";

struct soak_options {
  double duration_s = 10;
  std::size_t clients = 32;
  std::size_t host_threads = 2;
  std::size_t client_threads = 2;
  double warmup_s = 2;
  std::size_t rss_slack_mib = 64;
  std::uint64_t seed = 1;
  bool strict = false;  // known framework issues fail the run too
  bool verbose = false;
};

// After the main run: bursts of sends to an offline peer and to a full
// host, outcomes by code printed; any other outcome is a failure in `counts`.
class tally;
void run_refusal_phases(tally& counts);

// Returns nullopt after printing help or a usage error (exit status in `status`).
std::optional<soak_options> parse_options(int argc, char** argv, int& status);

// A comet::error's code, spelled as on the wire or as the errc name.
std::string code_name(const std::error_code& code);

// Every counter of the run. Thread-safe.
class tally {
 public:
  // Valid requests (unique value, an answer or a known error expected).
  void sent() { ++sent_; }
  void answered() { ++answered_; }
  void expected_error(std::string_view code) { bump(expected_errors_, code); }
  void lost(std::string_view how, const std::string& detail);
  void mismatched(const std::string& detail);

  // Hostile exchanges, by scenario: as documented, or a problem.
  void hostile(std::string_view scenario, const std::string& problem);

  // An error response some peer of the soak read off the wire, by code;
  // compared with the host's own count at the end.
  void wire_error(std::string_view code) { bump(wire_errors_, code); }

  // An error response the host sent but the client could not read because
  // of a known framework issue (see `known_issue`); kept apart so that the
  // host's count still adds up.
  void unread_error(std::string_view code) { bump(unread_errors_, code); }

  // A known framework issue, reported but failing the run only with --strict.
  void known_issue(std::string_view name, const std::string& detail);

  // Something worth reporting that is neither good nor bad in itself.
  void observe(std::string_view what) { bump(observations_, what); }

  // Something else that must not happen (an error-level log line, a check).
  void failure(const std::string& detail);

  std::uint64_t sent_count() const { return sent_; }
  std::uint64_t answered_count() const { return answered_; }
  std::uint64_t lost_count() const { return lost_; }
  std::uint64_t mismatched_count() const { return mismatched_; }
  std::uint64_t hostile_problems() const;
  std::uint64_t other_failures() const { return failures_; }

  using counts = std::map<std::string, std::uint64_t, std::less<>>;
  struct scenario_counts {
    std::uint64_t as_documented = 0;
    std::uint64_t problems = 0;
  };
  counts expected_errors() const { return copy(expected_errors_); }
  counts lost_by_kind() const { return copy(lost_by_kind_); }
  counts wire_errors() const { return copy(wire_errors_); }
  counts unread_errors() const { return copy(unread_errors_); }
  counts known_issues() const { return copy(known_issues_); }
  counts observations() const { return copy(observations_); }
  std::map<std::string, scenario_counts, std::less<>> hostile_counts() const;
  // The first few problems of any kind, for the report.
  std::vector<std::string> samples() const;

 private:
  std::uint64_t bump(counts& which, std::string_view key);  // the new count
  counts copy(const counts& which) const;
  void sample(const std::string& detail);

  std::atomic<std::uint64_t> sent_{0}, answered_{0}, lost_{0}, mismatched_{0}, failures_{0};
  mutable std::mutex mutex_;
  counts expected_errors_, lost_by_kind_, wire_errors_, unread_errors_, known_issues_, observations_;
  std::map<std::string, scenario_counts, std::less<>> hostile_;
  std::vector<std::string> samples_;
};

// What every worker shares.
struct soak_context {
  const soak_options& options;
  comet::endpoint at;
  comet::client one_shot;
  comet::client keep_alive;
  tally& counts;
  clock_type::time_point stop_at;
  std::atomic<std::uint64_t> next_id{1};

  bool expired() const { return clock_type::now() >= stop_at; }
  std::uint64_t unique_id() { return next_id++; }
  json::value fresh_value(std::string_view via, rng_type& rng);
};

// Payloads (payload.cpp).
// A unique value: {"id": n, "via": ..., "text": ..., "number": ..., ...},
// whose request content stays under the host's limit.
json::value unique_value(std::uint64_t id, std::string_view via, rng_type& rng);
// A value whose request is over the host's limit.
json::value oversize_value(std::uint64_t id, rng_type& rng);
std::string random_bytes(std::size_t n, rng_type& rng);
std::string nested_arrays(std::size_t depth);
std::string nested_objects(std::size_t depth);
// A frame with this raw JSON header text and content.
std::string frame_with_header(std::string_view header, std::string_view content = {});
// A header as COMET writes it, with the content-length spelled as given.
std::string header_text(std::string_view content_length);
// A request frame as comet-net's client writes it.
std::string request_frame(std::string_view action, const json::value& value, bool keep_alive,
                          std::optional<std::uint64_t> request_id = std::nullopt);

// Workers (valid_traffic.cpp, hostile_traffic.cpp). None of them throws;
// each runs until ctx.expired() and then finishes what it started.
asio::awaitable<void> one_shot_worker(soak_context& ctx, std::uint64_t seed);
asio::awaitable<void> keep_alive_worker(soak_context& ctx, std::uint64_t seed);
asio::awaitable<void> hostile_worker(soak_context& ctx, std::uint64_t seed);

// Checks a result against the value sent; records answered or mismatched.
void check_echo(tally& counts, std::string_view via, const json::value& sent,
                const json::value& result);

}  // namespace comet_soak
