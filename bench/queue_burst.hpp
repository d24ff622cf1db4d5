// Sends queued at once on one keep-alive comet::client (issue 18): N sends
// co_spawned in one go against a comet host, far past the pool's room
// (max_connections × max_in_flight), timed until the last answer. The cost
// per send should not grow with N: each row is divided by the first.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>
#include <vector>

namespace comet_bench {

struct burst_result {
  std::size_t sends = 0;
  std::vector<double> seconds;  // one per round
  std::size_t errors = 0;
  std::string first_error;
};

// Runs each size of `sizes` once per round, round after round; the client
// is on a one-thread pool pinned to `load_cpus` (may be empty). Each burst
// is bounded (60 s); one that does not finish aborts the program.
std::vector<burst_result> run_queue_bursts(const std::vector<std::size_t>& sizes, int rounds,
                                           const std::vector<int>& load_cpus);

void print_bursts(std::FILE* out, const std::vector<burst_result>& rows);

}  // namespace comet_bench
