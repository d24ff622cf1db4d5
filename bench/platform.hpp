// The few OS-specific bits comet-bench needs: which CPUs the server and the
// load generator run on, a thread that must finish in time, file descriptor
// limits, and the loopback check on --to.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace comet_bench {

// Where threads go. Empty sets mean "wherever the OS puts them".
struct cpu_plan {
  std::vector<int> server;  // the servers' io threads
  std::vector<int> load;    // the load generator's thread (or comet client's pool)
  std::string describe() const;
};

// With `pin` and at least two usable CPUs: the load generator gets the last
// one, the servers all the others. Otherwise nothing is pinned.
cpu_plan plan_cpus(bool pin);

// Restricts the calling thread (and the threads it creates afterwards) to
// `cpus`; no-op when empty. Returns false when the OS refused.
bool pin_this_thread(const std::vector<int>& cpus);
// Names the calling thread (at most 15 characters) for perf, top and gdb;
// threads it creates afterwards inherit the name.
void name_this_thread(const char* name);

// The calling thread's current CPU set, to restore after pin_this_thread.
std::vector<int> current_cpus();

// Runs `fn` on a new thread named "bench-load", pinned to `cpus`, and
// returns its value. If it
// has not finished after `limit`, the benchmark is broken (a load that does
// not stop by itself): report and exit the process with status 3.
template <class R>
R run_bounded(std::function<R()> fn, const std::vector<int>& cpus,
              std::chrono::nanoseconds limit, const char* what) {
  std::packaged_task<R()> task(
      [&fn, &cpus] {
        name_this_thread("bench-load");  // for perf and top: the load, not the servers
        pin_this_thread(cpus);
        return fn();
      });
  auto done = task.get_future();
  std::thread thread(std::move(task));
  if (done.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "comet-bench: %s did not stop within %.1f s; aborting\n", what,
                 std::chrono::duration<double>(limit).count());
    std::fflush(stdout);
    std::_Exit(3);
  }
  thread.join();
  return done.get();
}

// Raises the soft RLIMIT_NOFILE towards the hard limit, or past it where
// the process may (root); both ends of every connection live in this process.
// Returns the soft limit in force afterwards.
std::size_t raise_fd_limit(std::size_t wanted);

// 127.0.0.0/8, ::1, or an IPv4-mapped 127.x address.
bool is_loopback(const boost::asio::ip::address& a);

// Number of CPUs this process may run on.
unsigned usable_cpus();

}  // namespace comet_bench
