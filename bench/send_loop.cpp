#include "send_loop.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>

namespace comet_bench {
namespace asio = boost::asio;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

asio::awaitable<void> send_loop(comet::client client, json::value value, send_run& run,
                                std::string_view who) {
  const std::string_view payload = value.get_string();
  // One clock read per request: the next request is sent the moment the
  // previous answer arrives (the raw client reads the clock once a batch).
  auto now = clock_type::now();
  while (now < run.end) {
    const auto sent = now;
    bool failed = false;
    try {
      const json::value answer = co_await client.send("echo", value);
      now = clock_type::now();
      if (!answer.is_string() || answer.get_string() != payload) {
        run.fail(std::string(who) + "wrong answer");
      } else if (now >= run.begin && now < run.end) {
        ++run.answers;
        run.latency.record(static_cast<std::uint64_t>(std::chrono::nanoseconds(now - sent).count()));
      }
    } catch (const std::exception& e) {
      run.fail(std::string(who) + e.what());
      failed = true;
    }
    if (failed) {  // do not spin on a dead host
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(10));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      now = clock_type::now();
    }
  }
}

}  // namespace comet_bench
