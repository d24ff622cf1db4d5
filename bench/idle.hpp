// Memory per idle connection (issue 21, item 6): N keep-alive connections
// to a comet host (one io thread), each answered once and then left open
// and silent; the host's heap growth (mallinfo2's bytes in use) and its
// process's RSS growth, divided by N. The clients are bare sockets in a
// child process, so what grows is the host's alone.
#pragma once

#include <cstddef>
#include <cstdio>
#include <string>

namespace comet_bench {

struct idle_result {
  std::size_t connections = 0;
  double heap_per_connection = 0;  // bytes (mallinfo2 uordblks + hblkhd)
  double rss_per_connection = 0;   // bytes
  std::size_t errors = 0;
  std::string first_error;
};

// Opens `connections` (clients on 127.0.0.1, and from 127.0.0.2, .3, ...
// past 20,000 of them, so that source ports do not run out). Raises the
// file limit as needed; fails with a message if it cannot.
idle_result run_idle(std::size_t connections, bool metrics);

void print_idle(std::FILE* out, const idle_result& r, bool metrics);

}  // namespace comet_bench
