// The comet::client sender shared by the comet-client load (comet_side.cpp)
// and the endpoints suite (endpoints.cpp): coroutines that each send "echo"
// in turn over one client and tally its answers in a measured window.
#pragma once

#include "stats.hpp"

#include <comet/client.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <string>
#include <string_view>

namespace comet_bench {

// One run of send loops: its measured window and what they saw. Touched
// only on the client's one pool thread while they run, and by the caller
// once they ended.
struct send_run {
  std::chrono::steady_clock::time_point begin, end;  // the measured window
  std::uint64_t answers = 0;  // answered correctly inside the window
  latency_histogram latency;  // ns, of those answers
  std::size_t errors = 0;     // failed or mismatched, warm-up included
  std::string first_error;
  std::size_t live = 0;  // loops still running
  std::promise<void> finished;

  void fail(std::string what) {
    ++errors;
    if (first_error.empty()) first_error = std::move(what);
  }
};

// Sends "echo" with `value` (a string) on `client` until `run.end`, the
// next request the moment the previous answer arrives (one clock read per
// request), and tallies each answer in the window with its latency
// measured around the co_await. A wrong answer or a failed send is an
// error, named `who` + "wrong answer" or + the exception's what(); after a
// failure the loop pauses 10 ms, so as not to spin on a dead host.
boost::asio::awaitable<void> send_loop(comet::client client, boost::json::value value, send_run& run,
                                       std::string_view who);

}  // namespace comet_bench
