// A keep-alive client's sends past its room (max_connections ×
// max_in_flight) wait in a queue (issue 18, items 1 and 4): served in the
// order they were made, one wakeup per place that frees up, leaving at once
// when cancelled or expired, and bounded by max_queued_sends.
#include <comet/comet.hpp>

#include "support.hpp"

#include <atomic>
#include <mutex>
#include <vector>

using namespace comet;
using namespace comet::test;

namespace {

// A host whose "note" action records the values in the order it ran them,
// and whose "hold" action waits until `released`.
struct noting_host : host_fixture {
  noting_host() {
    server.on("note", [this](const std::string&, const json::value& v) {
      std::lock_guard lock(mutex);
      noted.push_back(v.as_int64());
      return v;
    });
    server.on("hold", [this](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
      ++holding;
      asio::steady_timer t(co_await asio::this_coro::executor);
      for (int i = 0; !released && i < 2000; ++i) {  // at most 10 s
        t.expires_after(5ms);
        co_await t.async_wait(asio::use_awaitable);
      }
      co_return v;
    });
    start();
  }
  std::mutex mutex;
  std::vector<std::int64_t> noted;
  std::atomic<int> holding{0};
  std::atomic<bool> released{false};
};

}  // namespace

TEST_CASE("queued sends are served in the order they were made, each woken once",
          "[integration][client][queue]") {
  noting_host h;
  io_pool pool(1);
  client c(pool, h.at, {.keep_alive = true, .max_connections = 1, .max_in_flight = 4});
  CHECK(c.send_sync("note", -1) == -1);  // the peer keeps connections open: 4 places
  constexpr int sends = 2000;
  std::atomic<int> answered{0}, failed{0};
  // All made in one go, before any answer can come back.
  asio::post(pool.get_executor(), [&] {
    for (int i = 0; i < sends; ++i)
      asio::co_spawn(pool.get_executor(), c.send("note", i),
                     [&, i](std::exception_ptr e, json::value v) {
                       if (!e && v == i) ++answered;
                       else ++failed;
                     });
  });
  REQUIRE(wait_until([&] { return answered + failed == sends; }, 30s));
  CHECK(failed == 0);
  std::lock_guard lock(h.mutex);
  REQUIRE(h.noted.size() == sends + 1);
  bool in_order = true;
  for (int i = 0; i < sends; ++i) in_order = in_order && h.noted[static_cast<std::size_t>(i) + 1] == i;
  CHECK(in_order);
  const auto s = c.stats();
  CHECK(s.queued == 0);
  CHECK(s.queued_total == sends - 4);  // the first four found room
  // One wakeup per queued send: a completion wakes one waiter, not all.
  CHECK(s.queue_wakeups == s.queued_total);
}

TEST_CASE("a queued send that is cancelled or expires leaves the queue at once",
          "[integration][client][queue]") {
  noting_host h;
  io_pool pool(1);
  client c(pool, h.at, {.keep_alive = true, .max_connections = 1, .max_in_flight = 1});
  CHECK(c.send_sync("note", 0) == 0);
  auto held = asio::co_spawn(pool.get_executor(), c.send("hold", 1), asio::use_future);
  REQUIRE(wait_until([&] { return h.holding == 1; }));

  auto expiring = asio::co_spawn(pool.get_executor(), c.send("note", 2, {.timeout = 200ms}),
                                 asio::use_future);
  asio::cancellation_signal cancel;
  auto cancelled = asio::co_spawn(pool.get_executor(), c.send("note", 3),
                                  asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
  REQUIRE(wait_until([&] { return c.stats().queued == 2; }));
  asio::post(pool.get_executor(), [&] { cancel.emit(asio::cancellation_type::terminal); });
  REQUIRE(cancelled.wait_for(5s) == std::future_status::ready);
  CHECK(error_thrown_by([&] { cancelled.get(); }).code() == errc::cancelled);
  REQUIRE(expiring.wait_for(5s) == std::future_status::ready);
  CHECK(error_thrown_by([&] { expiring.get(); }).code() == errc::request_timeout);
  CHECK(c.stats().queued == 0);
  CHECK(held.wait_for(0s) == std::future_status::timeout);  // the place is still taken

  h.released = true;
  REQUIRE(held.wait_for(10s) == std::future_status::ready);
  CHECK(held.get() == 1);
  CHECK(c.stats().queue_wakeups == 0);  // nobody was left to wake
  CHECK(c.send_sync("note", 4) == 4);
  std::lock_guard lock(h.mutex);
  CHECK(h.noted == std::vector<std::int64_t>{0, 4});  // neither left-over send was sent
}

TEST_CASE("past max_queued_sends a send fails at once with queue_full, nothing sent",
          "[integration][client][queue]") {
  noting_host h;
  io_pool pool(1);
  client c(pool, h.at,
           {.keep_alive = true, .max_connections = 1, .max_in_flight = 1, .max_queued_sends = 3});
  CHECK(c.send_sync("note", 0) == 0);
  auto held = asio::co_spawn(pool.get_executor(), c.send("hold", 1), asio::use_future);
  REQUIRE(wait_until([&] { return h.holding == 1; }));
  std::vector<std::future<json::value>> queued;
  for (int i = 10; i < 13; ++i)
    queued.push_back(asio::co_spawn(pool.get_executor(), c.send("note", i), asio::use_future));
  REQUIRE(wait_until([&] { return c.stats().queued == 3; }));
  const auto e = error_thrown_by([&] { c.send_sync("note", 13); });
  CHECK(e.code() == errc::queue_full);
  CHECK(e.safe_to_retry());
  CHECK_THAT(e.what(), Catch::Contains("3 sends are waiting") && Catch::Contains("max_queued_sends"));

  h.released = true;
  CHECK(held.get() == 1);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(queued[static_cast<std::size_t>(i)].wait_for(10s) == std::future_status::ready);
    CHECK(queued[static_cast<std::size_t>(i)].get() == 10 + i);
  }
  std::lock_guard lock(h.mutex);
  CHECK(h.noted == std::vector<std::int64_t>{0, 10, 11, 12});
}

// Issue 18, item 2: a peer whose connect failed is down, and sends to it
// fail at once instead of at their deadlines.
TEST_CASE("sends to an offline peer fail at once, with one connect attempt for all of them",
          "[integration][client][queue]") {
  const endpoint nowhere{"127.0.0.1", unused_port()};
  log_capture log(log_level::info);
  io_pool pool(1);
  client c(pool, nowhere,
           {.request_timeout = 60s, .keep_alive = true, .connect_retries = 0});
  constexpr int sends = 2000;
  std::atomic<int> offline{0}, other{0};
  asio::post(pool.get_executor(), [&] {
    for (int i = 0; i < sends; ++i)
      asio::co_spawn(pool.get_executor(), c.send("echo", i),
                     [&](std::exception_ptr e, const json::value&) {
                       try {
                         if (e) std::rethrow_exception(e);
                         ++other;
                       } catch (const comet::error& x) {
                         ++(x.code() == errc::peer_offline ? offline : other);
                       }
                     });
  });
  // request_timeout is 60 s: sends that waited for their deadlines fail here.
  REQUIRE(wait_until([&] { return offline + other == sends; }, 20s));
  CHECK(offline == sends);
  // One attempt per backoff, not one per send: each failed attempt starts a
  // backoff (one log line). A slow machine (a sanitizer build) may take more
  // than the first backoff to make the 2,000 sends.
  const auto attempts = c.stats().connects;
  std::size_t backoffs = 0;
  for (const auto& l : log.lines()) backoffs += l.text.find("is down, next attempt in") != std::string::npos;
  CHECK(attempts == backoffs);
  CHECK(attempts <= 10);

  // Within a backoff, a send fails at once and tries nothing.
  const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
  CHECK(e.code() == errc::peer_offline);
  CHECK(e.safe_to_retry());
  if (std::string(e.what()).find("fail at once for") != std::string::npos) {
    CHECK_THAT(e.what(), Catch::Contains("then the next one tries again"));
    CHECK(c.stats().connects == attempts);
  } else {
    CHECK(c.stats().connects == attempts + 1);  // the backoff had passed: one attempt
  }

  // Past it, the next send tries again (once; still refused).
  REQUIRE(wait_until([&] {
    try {
      c.send_sync("echo", 1);
    } catch (const comet::error&) {
    }
    return c.stats().connects > attempts + 1;
  }, 20s));
}

TEST_CASE("a peer that comes back after being down is used again", "[integration][client][queue]") {
  // A port that refuses until a host listens on it.
  const std::uint16_t port = unused_port();
  io_pool pool(1);
  client c(pool, {"127.0.0.1", port}, {.keep_alive = true, .connect_retries = 0});
  CHECK(error_thrown_by([&] { c.send_sync("echo", 1); }).code() == errc::peer_offline);
  host_options o = host_fixture::loopback();
  o.listen.port = port;
  host_fixture f(1, o);
  add_echo(f.server);
  f.start();
  // Past the backoff (200 ms ± 25%), the next send connects and is answered.
  const std::optional<json::value> answer = send_until_up(c, "echo", 2);
  REQUIRE(answer);
  CHECK(*answer == 2);
  const auto connects = c.stats().connects;
  for (int i = 0; i < 5; ++i) CHECK(c.send_sync("echo", i) == i);
  CHECK(c.stats().connects == connects);  // the connection is kept
}
