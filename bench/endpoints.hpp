// Several hosts behind one client (issue 19), `comet-bench --suite
// endpoints`: comet::client over three endpoints (three in-process comet
// hosts on 127.0.0.2, .3 and .4) against the same client over one endpoint
// (the first host alone), with the same senders, as a ratio measured in the
// same round; keep-alive multiplexed and one-shot. A client of one peer
// (no list) is measured beside them, so the cost of the list itself shows.
#pragma once

#include "stats.hpp"

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace comet_bench {

struct endpoint_row {
  std::string name;            // "keep-alive x64: 3 endpoints", ...
  std::vector<double> rates;   // msgs/s, one per round
  std::vector<double> ratios;  // to the round's one-endpoint row of its mode (empty for it)
  latency_histogram latency;   // every round's answers
  std::vector<std::uint64_t> served;  // requests each host answered, over the rounds
  std::size_t errors = 0;
  std::string first_error;
};

// Runs every row once per round: `warmup` seconds unmeasured, then
// `seconds` measured. The hosts' threads inherit the calling thread's CPU
// affinity; the client runs on a one-thread pool pinned to `load_cpus`
// (may be empty). Bounded: a row that does not end in its time and a
// margin aborts the program (exit 3).
std::vector<endpoint_row> run_endpoint_suite(int rounds, double warmup, double seconds,
                                             const std::vector<int>& load_cpus);

void print_endpoint_rows(std::FILE* out, const std::vector<endpoint_row>& rows);

}  // namespace comet_bench
