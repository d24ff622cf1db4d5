// Streams and publish/subscribe (issue 17), `comet-bench --suite stream`:
// items/s of one stream and of 16 at once, each as a ratio to the
// multiplexed request rate (1 connection x 64 in flight) measured in the
// same round; deliveries/s of a publish fanned out to 100 subscribers; and,
// when Debian's nats-server is on PATH, the same one-to-one and fan-out
// patterns through NATS on the same machine, spoken with its text protocol
// over a socket (no NATS library is linked).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace comet_bench {

struct stream_row {
  std::string name;             // "stream x1", "nats fan-out x100", ...
  std::string unit;             // "items/s", "deliveries/s", "msgs/s"
  std::vector<double> rates;    // one per round
  std::vector<double> ratios;   // to the round's multiplexed rate (empty for the baseline)
  std::size_t errors = 0;
  std::string first_error;
};

// Runs every row once per round, `seconds` each; the comet side's client
// runs on a one-thread pool pinned to `load_cpus` (may be empty). Bounded:
// a row that does not end within its time and a margin aborts the program.
std::vector<stream_row> run_stream_suite(int rounds, double seconds, const std::vector<int>& load_cpus);

void print_stream_rows(std::FILE* out, const std::vector<stream_row>& rows);

}  // namespace comet_bench
