// What comet-bench prints and writes: the ratios of each row to its
// reference row, the table on stdout, the JSON file, and the gnuplot PNG.
#pragma once

#include "scenario.hpp"

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

namespace comet_bench {

struct run_info {
  std::string command;  // the command line, as typed
  std::string cpu_plan;
  unsigned cpus = 0;
  double warmup_s = 0, duration_s = 0;
  int rounds = 1;
  std::string target;  // "in-process" or the --to address
};

// Sets ratio / ratio_to on every row that has a reference in `rows`:
//  - a server measured with the raw client, over the baseline server with
//    the raw client on the same load ("baseline");
//  - comet::client, over the raw client against the same server on the
//    same load ("raw client").
void assign_ratios(std::vector<result>& rows);

// Several rounds of the same rows (each with its ratios assigned) as one:
// counts, seconds and latencies add up; a row's ratio is the median of its
// rounds' ratios, each of which was measured against a reference run next
// to it in time.
std::vector<result> merge_rounds(const std::vector<std::vector<result>>& rounds);

// One line per row: server, client, mode, C, depth, S, T, msgs/s,
// p50/p99/p99.9 in microseconds, errors, ratio.
void print_table(std::FILE* out, const std::vector<result>& rows);
std::string row_label(const result& r);  // e.g. "comet T=2 / raw", for progress lines

// Writes {"run": {...}, "results": [...]}; false and `error` on failure.
bool write_json(const std::string& path, const run_info& info, const std::vector<result>& rows,
                std::string& error);

// The gnuplot executable on PATH, if any.
std::optional<std::string> find_gnuplot();
inline constexpr const char* gnuplot_hint =
    "--plot needs gnuplot; on Debian: sudo apt-get install gnuplot-nox";

// Draws msgs/s against requests in flight per run (connections x depth, log
// scale), one line per server/client/mode/payload, into `png`; the gnuplot
// script is kept beside it as `png`.gp. False and `error` on failure.
bool write_plot(const std::string& gnuplot, const std::string& png,
                const std::vector<result>& rows, std::string& error);

}  // namespace comet_bench
