// Counting heap allocations: the program that links alloc_counter.cpp
// replaces the global operator new and delete with ones that count every
// allocation and pass it on to malloc. Everything C++ allocates goes
// through them (std::string, containers, Boost.JSON's default resource,
// Asio's operations and coroutine frames); malloc called directly (by
// OpenSSL, say) is not counted. comet-bench reports allocations per request
// with it, and tests/test_allocations.cpp keeps the canonical echo path at
// none. Only the executables that name it link it: no consumer's build
// ever sees a replaced operator new.
#pragma once

#include <cstdint>

namespace comet_alloc {

// Allocations made so far by every thread of the process (relaxed: read it
// after the work to count has been seen to end).
std::uint64_t allocations() noexcept;

}  // namespace comet_alloc

#include <chrono>
#include <thread>

namespace comet_alloc {

// The allocations the process makes between two instants (a load's
// measured window), read by a thread of its own that waits for each: a
// measurement's edges, not synchronisation.
class window {
 public:
  using clock = std::chrono::steady_clock;
  window(clock::time_point begin, clock::time_point end)
      : reader_([this, begin, end] {
          std::this_thread::sleep_until(begin);
          const auto first = allocations();
          std::this_thread::sleep_until(end);
          count_ = allocations() - first;
        }) {}
  window(const window&) = delete;
  window& operator=(const window&) = delete;
  ~window() {
    if (reader_.joinable()) reader_.join();
  }
  // Waits for the window to end.
  std::uint64_t count() {
    if (reader_.joinable()) reader_.join();
    return count_;
  }

 private:
  std::uint64_t count_ = 0;
  std::thread reader_;
};

}  // namespace comet_alloc
