// A host's drain (issue 16, item 5, first part): async_stop completes once
// the requests in flight are answered and written, not at shutdown_timeout,
// and a stop answers what it read instead of dropping it.
#include <comet/comet.hpp>

#include "support.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

using namespace comet;
using namespace comet::test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

// shutdown_timeout far beyond what any wait below allows: a stop that
// waits for it fails the test instead of passing slowly.
host_options patient_host() {
  host_options o = host_fixture::loopback();
  o.shutdown_timeout = 60s;
  return o;
}

asio::awaitable<json::value> after_1ms(const std::string&, const json::value& v) {
  asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
  co_await t.async_wait(asio::use_awaitable);
  co_return v;
}

}  // namespace

TEST_CASE("a stop completes when the last answer is written, with keep-alive peers left idle",
          "[integration][drain]") {
  for (const bool coroutine : {false, true}) {
    CAPTURE(coroutine);
    host_fixture f(2, patient_host());
    if (coroutine)
      f.server.on("work", after_1ms);
    else
      f.server.on("work", [](const std::string&, const json::value& v) { return v; });
    const auto at = f.start();
    io_pool clients(1);
    client c(clients.get_executor(), at, {.keep_alive = true});
    CHECK(c.send_sync("work", 1) == 1);  // the connection stays open, idle
    auto stopped = asio::co_spawn(f.pool.get_executor(), f.server.async_stop(), asio::use_future);
    REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
    stopped.get();
    CHECK(f.server.stats().connections_open == 0);
  }
}

TEST_CASE("a stop under keep-alive and one-shot senders waits for no timeout",
          "[integration][drain]") {
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    host_fixture f(2, patient_host());
    f.server.on("work", after_1ms);
    f.server.on("plain", [](const std::string&, const json::value& v) { return v; });
    const auto at = f.start();

    io_pool senders(2);
    std::atomic<bool> stop_sending{false};
    std::mutex outcomes_mutex;
    std::map<std::string, int> outcomes;  // "answered" or the error's wire name
    std::atomic<int> answered{0};
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < 8; ++i)
      clients.push_back(std::make_unique<client>(senders.get_executor(), at,
                                                 client_options{.keep_alive = i % 2 == 0,
                                                                .connect_retries = 0}));
    std::atomic<int> running{0};
    for (std::size_t i = 0; i < clients.size(); ++i) {
      ++running;
      asio::co_spawn(
          senders.get_executor(),
          [&, i]() -> asio::awaitable<void> {
            const std::string action = i % 4 < 2 ? "work" : "plain";
            for (int n = 0; !stop_sending && n < 100000; ++n) {
              std::string outcome = "answered";
              try {
                const json::value v = co_await clients[i]->send(action, n);
                if (v != n) outcome = "wrong answer";
                ++answered;
              } catch (const comet::error& e) {
                outcome = std::string(wire_name(static_cast<errc>(e.code().value())));
                if (e.code() == errc::peer_offline) stop_sending = true;
              }
              std::lock_guard lock(outcomes_mutex);
              ++outcomes[outcome];
            }
            --running;
          },
          asio::detached);
    }
    REQUIRE(wait_until([&] { return answered > 200; }));
    const auto begun = std::chrono::steady_clock::now();
    auto stopped = asio::co_spawn(f.pool.get_executor(), f.server.async_stop(), asio::use_future);
    // shutdown_timeout is 60 s: a stop that waited for it fails here.
    REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
    stopped.get();
    const auto took = std::chrono::steady_clock::now() - begun;
    REQUIRE(wait_until([&] { return running == 0; }, 20s));
    std::lock_guard lock(outcomes_mutex);
    std::string summary;
    for (const auto& [outcome, count] : outcomes) summary += outcome + ": " + std::to_string(count) + "  ";
    std::printf("drain round %d: stopped in %lld ms; %s\n", round,
                static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()),
                summary.c_str());
    INFO(summary);
    // Requests written after the host's going-away notice end unread. (The
    // case below runs this under 32 senders, many times.)
    for (const auto& [outcome, count] : outcomes)
      CHECK((outcome == "answered" || outcome == "shutting_down" || outcome == "peer_offline" ||
             outcome == "unread" || outcome == "connection_closed"));
    CHECK(outcomes["answered"] > 200);
  }
}

TEST_CASE("requests a keep-alive peer wrote before a stop are answered shutting_down, not dropped",
          "[integration][drain]") {
  held_requests held;
  host_fixture f(2, patient_host());
  held.add_to(f.server);
  add_echo(f.server);
  const auto at = f.start();
  raw_peer p(at);
  // One request the handler holds, two more behind it on the same connection.
  p.write(request_frame("hold", "first", /*keep_alive=*/true));
  REQUIRE(wait_until([&] { return held.runs > 0; }));
  p.write(request_frame("echo", "second", true) + request_frame("echo", "third", true));
  auto stopped = asio::co_spawn(f.pool.get_executor(), f.server.async_stop(), asio::use_future);
  REQUIRE(wait_until([&] { return !f.server.running(); }));
  held.release = true;

  const auto first = split(p.read_frame());
  CHECK(decode_response(first.content).result == "first");
  CHECK_FALSE(first.header.contains("keep-alive"));  // the stop began while it ran: it closes
  for (const char* behind : {"second", "third"}) {
    CAPTURE(behind);
    const auto answer = split(p.read_frame());
    const auto response = decode_response(answer.content);
    REQUIRE(response.error);
    CHECK(*response.error == errc::shutting_down);
  }
  CHECK(p.closed_by_peer());
  REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
  stopped.get();
}

TEST_CASE("connections waiting in the listen backlog at a stop are answered shutting_down",
          "[integration][drain]") {
  // One thread, held by a handler: the peers below connect and write their
  // requests while the host cannot accept them (the kernel queues them).
  host_fixture f(1, patient_host());
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> holding{false};
  f.server.on("block", [&](const std::string&, const json::value& v) {
    holding = true;
    released.wait_for(20s);
    return v;
  });
  const auto at = f.start();
  raw_peer blocker(at);
  blocker.write(request_frame("block", "held"));
  REQUIRE(wait_until([&] { return holding.load(); }));

  std::vector<std::unique_ptr<raw_peer>> queued;
  for (int i = 0; i < 5; ++i) {
    queued.push_back(std::make_unique<raw_peer>(at));
    queued.back()->write(request_frame("block", i));
  }
  f.server.stop();
  release.set_value();

  CHECK(decode_response(split(blocker.read_frame()).content).result == "held");
  for (auto& peer : queued) {
    const auto response = decode_response(split(peer->read_frame()).content);
    REQUIRE(response.error);
    CHECK(*response.error == errc::shutting_down);
  }
  auto stopped = asio::co_spawn(f.pool.get_executor(), f.server.async_stop(), asio::use_future);
  REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
  stopped.get();
}

// Issue 16, item 6: a host stopped mid-run under 16 one-shot and 16
// keep-alive senders, many times. Every send ends with its answer, or with
// a failure that says the host did not run it (shutting_down, unread,
// peer_offline): never connection_closed, which would leave the caller
// unable to tell it from a request the host ran.
TEST_CASE("a host stopped under 16 one-shot and 16 keep-alive senders loses no request",
          "[integration][drain][load]") {
  constexpr int rounds = 8;
  std::vector<long long> stop_ms;
  std::map<std::string, int> totals;
  int raced = 0;  // connections reset by the listener's close
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    host_fixture f(2, patient_host());
    f.server.on("work", after_1ms);
    f.server.on("plain", [](const std::string&, const json::value& v) { return v; });
    const auto at = f.start();

    io_pool senders(2);
    std::atomic<bool> stop_sending{false};
    std::mutex outcomes_mutex;
    std::map<std::string, int> outcomes;  // "<kind> answered" or "<kind> <wire name>"
    std::map<std::string, std::string> examples;  // outcome → its first error message
    std::atomic<int> answered{0};
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < 32; ++i)
      clients.push_back(std::make_unique<client>(
          senders.get_executor(), at,
          client_options{.keep_alive = i % 2 == 0, .connect_retries = 0}));
    std::atomic<int> running{0};
    for (std::size_t i = 0; i < clients.size(); ++i) {
      ++running;
      asio::co_spawn(
          senders.get_executor(),
          [&, i]() -> asio::awaitable<void> {
            const std::string kind = i % 2 == 0 ? "keep-alive" : "one-shot";
            const std::string action = i % 4 < 2 ? "work" : "plain";
            bool offline = false;
            for (int n = 0; !offline && n < 100000; ++n) {
              std::string outcome = kind + " answered";
              try {
                const json::value v = co_await clients[i]->send(action, n);
                if (v != n) outcome = kind + " wrong answer";
                ++answered;
              } catch (const comet::error& e) {
                outcome = kind + " " + std::string(wire_name(static_cast<errc>(e.code().value())));
                {
                  std::lock_guard lock(outcomes_mutex);
                  examples.emplace(outcome, e.what());
                }
                // Once the host is gone, each sender stops at its first
                // refused connect (the listener closed).
                offline = e.code() == errc::peer_offline;
              }
              std::lock_guard lock(outcomes_mutex);
              ++outcomes[outcome];
            }
            --running;
          },
          asio::detached);
    }
    REQUIRE(wait_until([&] { return answered > 300; }));
    const auto begun = std::chrono::steady_clock::now();
    auto stopped = asio::co_spawn(f.pool.get_executor(), f.server.async_stop(), asio::use_future);
    REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
    stopped.get();
    stop_ms.push_back(std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - begun)
                          .count());
    REQUIRE(wait_until([&] { return running == 0; }, 30s));
    std::lock_guard lock(outcomes_mutex);
    std::string summary;
    for (const auto& [outcome, count] : outcomes) {
      summary += outcome + ": " + std::to_string(count) + "  ";
      totals[outcome] += count;
    }
    INFO(summary);
    for (const auto& [outcome, count] : outcomes) {
      const bool allowed = outcome.ends_with(" answered") || outcome.ends_with(" shutting_down") ||
                           outcome.ends_with(" peer_offline") || outcome.ends_with(" unread");
      // One rare exception, the kernel's, counted and bounded below: a
      // connection whose handshake completes in the instant the listener
      // closes (after the host accepted the backlog) is reset unaccepted;
      // its sender cannot tell that from a host that crashed, so it stays
      // connection_closed (about one in 50 stops here).
      if (outcome.ends_with(" connection_closed") &&
          examples[outcome].find("reset the connection") != std::string::npos) {
        raced += count;
        continue;
      }
      INFO(outcome << ", e.g. " << examples[outcome]);
      CHECK(allowed);
    }
    CHECK(outcomes["keep-alive answered"] > 0);
    CHECK(outcomes["one-shot answered"] > 0);
  }
  std::sort(stop_ms.begin(), stop_ms.end());
  std::string summary;
  for (const auto& [outcome, count] : totals) summary += outcome + ": " + std::to_string(count) + "  ";
  std::printf("%d stops under 32 senders: stop took %lld ms min, %lld median, %lld max; %s\n",
              rounds, stop_ms.front(), stop_ms[stop_ms.size() / 2], stop_ms.back(), summary.c_str());
  std::printf("connection_closed in those stops: %d\n", raced);
  CHECK(raced <= 4);  // a fresh connection each (all connection_closed were 47 before the connection core)
}
