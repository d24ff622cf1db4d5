// What one comet-bench measurement is (a scenario) and what it produced (a
// result). Shared by the CLI, the load generators and the report.
#pragma once

#include "stats.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace comet_bench {

// Hard caps: a benchmark must never exhaust the machine it runs on.
inline constexpr std::size_t max_connections = 1024;
inline constexpr std::size_t max_depth = 1024;
inline constexpr std::size_t max_payload = 1 << 20;
inline constexpr std::size_t max_io_threads = 64;
inline constexpr double max_duration_s = 60;

enum class load_mode {
  one_shot,     // COMET's mode: connect, one request, the server closes
  keep_alive,   // one request in flight per connection, connection reused
  pipelined,    // write `depth` untagged requests, read `depth` answers, repeat
  multiplexed,  // `depth` tagged requests in flight per connection, answered in any order
};

std::string_view to_string(load_mode m) noexcept;
std::optional<load_mode> parse_load_mode(std::string_view name) noexcept;

// Who serves: the in-process comet::host, the hand-written baseline server
// (also in-process), or an external server given with --to.
enum class server_kind { comet, baseline, external, floor };
// Who sends: the hand-written Asio load generator, or comet::client.
enum class driver_kind { raw, comet_client };

std::string_view to_string(server_kind s) noexcept;
std::string_view to_string(driver_kind d) noexcept;

struct scenario {
  server_kind server = server_kind::baseline;
  driver_kind driver = driver_kind::raw;
  load_mode mode = load_mode::keep_alive;
  std::size_t connections = 16;
  std::size_t depth = 1;  // 1 for one-shot and keep-alive
  std::size_t payload = 16;
  std::size_t threads = 1;  // io threads of the comet host (1 for the others)
  bool tls = false;         // comet::client and the comet host over TLS (--tls)
  // The comet host's (and comet::client's) per-request counters; off in
  // the rows --metrics-off adds.
  bool metrics = true;
  // The comet host's "echo" is a coroutine handler relaying each request
  // through a keep-alive comet::client to a second comet host (--relay).
  bool relay = false;

  // The same load against another server or with another driver.
  bool same_load(const scenario& o) const noexcept {
    return mode == o.mode && connections == o.connections && depth == o.depth &&
           payload == o.payload;
  }
};

// How long a load runs and where its threads go.
struct run_timing {
  std::chrono::nanoseconds warmup{std::chrono::milliseconds(300)};
  std::chrono::nanoseconds duration{std::chrono::seconds(2)};
  // After the measurement ends: time allowed for answers still in flight,
  // after which every socket is closed.
  std::chrono::nanoseconds drain{std::chrono::seconds(2)};
};

struct result {
  scenario what;
  double seconds = 0;          // the measured window
  std::uint64_t messages = 0;  // answered correctly inside the window
  std::uint64_t errors = 0;    // failed or mismatched, warm-up included
  std::string first_error;     // what the first error was, for the report
  latency_histogram latency;   // ns, from writing a request to reading its answer
  // Heap allocations the whole process (server and client) made inside the
  // measured window (bench/alloc_counter.hpp); allocations() divides.
  std::uint64_t window_allocations = 0;
  double allocations() const noexcept {
    return messages > 0 ? static_cast<double>(window_allocations) / static_cast<double>(messages) : 0;
  }

  double rate() const noexcept { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }

  // Set by the report: this result divided by its reference row (over
  // several rounds, the median of each round's ratio, which are kept).
  std::optional<double> ratio;
  std::string ratio_to;
  std::vector<double> round_ratios;
};

}  // namespace comet_bench
