// A host's max_connection_age and reuse_port (issue 19, item 6), over real
// sockets on loopback: keep-alive connections closed gracefully at their
// (jittered) age lose no request of a comet-net client, one-shot peers are
// unaffected, and hosts sharing a port with reuse_port share its
// connections and hand them over when one stops.
#include <comet/host.hpp>

#include "support.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

using namespace comet;
using namespace comet::test;

namespace {

host_options aging_host(std::chrono::milliseconds age) {
  host_options o = host_fixture::loopback();
  o.max_connection_age = age;
  return o;
}

// The outcome of one send, as a test tallies it: "answered", or the
// error's wire name ("connection_closed reset" for a connection the
// kernel reset).
std::string outcome_of(const comet::error& e) {
  std::string outcome(wire_name(static_cast<errc>(e.code().value())));
  const std::string_view what = e.what();
  if ((e.code() == errc::connection_closed && what.find("reset the connection") != what.npos) ||
      (e.code() == errc::peer_offline &&
       (what.find("reset by peer") != what.npos || what.find("Broken pipe") != what.npos)))
    outcome += " reset";
  return outcome;
}

std::string summary_of(const std::map<std::string, int>& outcomes) {
  std::string text;
  for (const auto& [outcome, count] : outcomes) text += outcome + ": " + std::to_string(count) + "  ";
  return text;
}

}  // namespace

TEST_CASE("a keep-alive client under load to a host with a 50 ms max_connection_age loses no request",
          "[integration][age]") {
  host_fixture f(2, aging_host(50ms));
  add_echo(f.server);
  f.server.on("slow", sleep_then_echo);
  const auto at = f.start();
  io_pool senders(2);
  client c(senders.get_executor(), at, client_options{.keep_alive = true});

  // 16 senders, each sending in turn, until 3000 sends are answered and
  // the host has aged some five generations of the pool's 4 connections
  // (within 20 s).
  constexpr int concurrency = 16;
  std::atomic<int> sent{0}, answered{0}, running{concurrency};
  std::mutex failures_mutex;
  std::map<std::string, int> failures;
  std::string example;
  const auto until = std::chrono::steady_clock::now() + 20s;
  const auto done = [&] {
    return (answered >= 3000 && f.server.stats().connections_aged >= 20) ||
           std::chrono::steady_clock::now() >= until;
  };
  for (int i = 0; i < concurrency; ++i)
    asio::co_spawn(
        senders.get_executor(),
        [&, i]() -> asio::awaitable<void> {
          for (int n = 0; !done(); ++n) {
            // One send in eight is a coroutine handler, so that answers are
            // in flight when a connection ages.
            const bool slow = n % 8 == 0;
            const json::value value = slow ? json::value(1) : json::value(i * 1000000 + n);
            ++sent;
            try {
              const json::value answer = co_await c.send(slow ? "slow" : "echo", value);
              if (answer == value) {
                ++answered;
                continue;
              }
              std::lock_guard lock(failures_mutex);
              ++failures["wrong answer"];
            } catch (const comet::error& e) {
              std::lock_guard lock(failures_mutex);
              ++failures[outcome_of(e)];
              if (example.empty()) example = e.what();
            }
          }
          --running;
        },
        asio::detached);
  REQUIRE(wait_until([&] { return running == 0; }, 40s));
  const auto stats = f.server.stats();
  const auto client_stats = c.stats();
  const auto refused = stats.errors_by_code.count("shutting_down") ? stats.errors_by_code.at("shutting_down") : 0;
  std::printf("max_connection_age 50 ms: %d sends, %d answered, %llu connections aged, %llu opened by "
              "the client, %llu requests refused after a notice (sent again); %s\n",
              sent.load(), answered.load(), static_cast<unsigned long long>(stats.connections_aged),
              static_cast<unsigned long long>(client_stats.connects),
              static_cast<unsigned long long>(refused), summary_of(failures).c_str());
  INFO(summary_of(failures) << example);
  CHECK(failures.empty());
  CHECK(answered == sent);
  CHECK(answered >= 3000);
  CHECK(stats.connections_aged >= 20);
  // Every aged connection but the last ones was replaced by a new one.
  CHECK(client_stats.connects >= stats.connections_aged);
  CHECK(client_stats.connects >= 20);
  CHECK(stats.connections_accepted == client_stats.connects);
  // No request ran twice, and none was refused in a way the client saw.
  CHECK(stats.errors_by_code.count("busy") == 0);
}

TEST_CASE("connections opened together reach their max_connection_age at different times (jitter)",
          "[integration][age]") {
  constexpr auto age = 300ms;
  host_fixture f(2, aging_host(age));
  add_echo(f.server);
  const auto at = f.start();
  constexpr std::size_t peers = 8;
  std::vector<std::unique_ptr<raw_peer>> conns;
  std::vector<std::uint64_t> next_id(peers, 1);
  for (std::size_t i = 0; i < peers; ++i) {
    conns.push_back(std::make_unique<raw_peer>(at));
    conns.back()->write(tagged(next_id[i]++, "echo", 0, feature::going_away));
    REQUIRE(split(conns.back()->read_frame()).content == R"({"result": 0})");
  }
  const auto opened = std::chrono::steady_clock::now();
  // Each peer sends a request in turn and reads until its answer, noting
  // when the going-away notice arrives; a request written after the
  // notice is refused, unread (the host reads on until the peer closes).
  std::vector<std::optional<std::chrono::steady_clock::duration>> noticed(peers);
  int refused_after_notice = 0;
  const auto until = opened + 10s;
  while (std::any_of(noticed.begin(), noticed.end(), [](const auto& n) { return !n; }) &&
         std::chrono::steady_clock::now() < until) {
    for (std::size_t i = 0; i < peers; ++i) {
      if (noticed[i]) continue;
      const std::uint64_t id = next_id[i]++;
      conns[i]->write(tagged(id, "echo", static_cast<std::int64_t>(id)));
      for (;;) {
        const auto frame = split(conns[i]->read_frame());
        if (frame.header.contains("control")) {
          REQUIRE(frame.header.at("control") == "going-away");
          noticed[i] = std::chrono::steady_clock::now() - opened;
          continue;  // then the answer of this request, or its refusal
        }
        REQUIRE(frame.header.at("request-id").to_number<std::uint64_t>() == id);
        const auto response = decode_response(frame.content);
        if (noticed[i] && response.error) {
          CHECK(*response.error == errc::shutting_down);
          ++refused_after_notice;
        }
        break;
      }
    }
  }
  std::vector<double> at_ms;
  for (const auto& n : noticed) {
    REQUIRE(n);
    at_ms.push_back(std::chrono::duration<double, std::milli>(*n).count());
  }
  std::sort(at_ms.begin(), at_ms.end());
  std::printf("8 connections opened together, max_connection_age 300 ms: notices from %.1f to %.1f ms after\n",
              at_ms.front(), at_ms.back());
  // Each within [0.9, 1.1] of the age (plus the time the opens took, and
  // a generous margin for a loaded machine), and not all together: eight
  // draws from a 60 ms range that all fall within 3 ms of each other are
  // about one in 10^9.
  CHECK(at_ms.front() >= 0.9 * 300 - 50);
  CHECK(at_ms.back() <= 1.1 * 300 + 1000);
  CHECK(at_ms.back() - at_ms.front() >= 3.0);
  CHECK(f.server.stats().connections_aged == peers);
  // Each peer closes once answered; the host closes after it.
  conns.clear();
  CHECK(wait_until([&] { return f.server.stats().connections_open == 0; }));
}

TEST_CASE("a keep-alive peer that did not announce going-away is closed once answered past its age",
          "[integration][age]") {
  // With the metrics off too: the age does not depend on what is counted.
  const bool metrics = GENERATE(true, false);
  CAPTURE(metrics);
  host_options o = aging_host(20ms);
  o.metrics = metrics;
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();
  raw_peer p(at);
  // Tagged keep-alive requests, one at a time, without "features".
  int answered = 0;
  bool closed = false;
  const auto until = std::chrono::steady_clock::now() + 10s;
  for (std::uint64_t id = 1; !closed && std::chrono::steady_clock::now() < until; ++id) {
    boost::system::error_code ec;
    p.write(tagged(id, "echo", static_cast<std::int64_t>(id)), ec);
    const auto frame = ec ? std::string() : p.read_frame();
    if (frame.empty()) {
      closed = true;  // the host closed between two requests
      break;
    }
    const auto s = split(frame);
    const auto response = decode_response(s.content);
    if (response.error) {
      // Written after the answer that found it aged: refused, not run.
      CHECK(*response.error == errc::shutting_down);
      CHECK_FALSE(s.header.contains("keep-alive"));
      closed = p.closed_by_peer();
      break;
    }
    CHECK(s.header.at("request-id").to_number<std::uint64_t>() == id);
    ++answered;
    // The last answer says the host closes; the ones before keep it open.
    if (!s.header.contains("keep-alive")) {
      closed = p.closed_by_peer();
      break;
    }
  }
  CHECK(closed);
  CHECK(answered > 0);
  CHECK(f.server.stats().connections_aged == 1);
  CHECK(wait_until([&] { return f.server.stats().connections_open == 0; }));
}

TEST_CASE("one-shot peers (COMET's) are never aged", "[integration][age]") {
  host_fixture f(2, aging_host(1ms));
  f.server.on("slow", sleep_then_echo);
  add_echo(f.server);
  const auto at = f.start();
  // COMET's frames, a connection each, one of them on a handler that runs
  // past the age.
  for (int i = 0; i < 20; ++i) {
    raw_peer p(at);
    p.write(request_frame(i % 5 == 0 ? "slow" : "echo", i % 5 == 0 ? 5 : i));
    const auto frame = split(p.read_frame());
    CHECK(frame.content == "{\"result\": " + std::to_string(i % 5 == 0 ? 5 : i) + "}");
    CHECK(p.closed_by_peer());
  }
  // comet-net's one-shot client too.
  client c = f.make_client();
  for (int i = 0; i < 20; ++i) CHECK(c.send_sync("echo", i) == i);
  CHECK(f.server.stats().connections_aged == 0);
  CHECK(f.server.stats().error_responses == 0);
}

TEST_CASE("two hosts on one port with reuse_port both receive connections", "[integration][reuse_port]") {
  host_options first = host_fixture::loopback();
  first.reuse_port = true;
  host_fixture a(1, first);
  add_echo(a.server);
  const auto at = a.start();
  host_options second = first;
  second.listen = at;
  host_fixture b(1, second);
  add_echo(b.server);
  REQUIRE(b.start() == at);
  // Without reuse_port the port is taken.
  host_options plain = host_fixture::loopback();
  plain.listen = at;
  host_fixture c(1, plain);
  CHECK(error_thrown_by([&] { c.server.start(); }).code() == errc::bind_failed);

  client one_shot(a.pool.get_executor(), at);
  for (int i = 0; i < 64; ++i) REQUIRE(one_shot.send_sync("echo", i) == i);
  const auto to_a = a.server.stats().connections_accepted;
  const auto to_b = b.server.stats().connections_accepted;
  std::printf("64 one-shot connections to two reuse_port hosts: %llu and %llu\n",
              static_cast<unsigned long long>(to_a), static_cast<unsigned long long>(to_b));
  CHECK(to_a + to_b == 64);
  CHECK(to_a > 0);
  CHECK(to_b > 0);
}

// The kernel (net.ipv4.tcp_migrate_req 0, the default) resets a connection
// whose handshake is under way or completes between a stopping host's last
// accept and its listener's close; everything else reaches the other host
// or is served. The reset is seen while connecting (peer_offline,
// "Connection reset by peer": nothing was sent, safe to send again) or
// after (connection_closed, "reset the connection"); one that lands
// between the connect and the request's write reads "Broken pipe" (still
// peer_offline: nothing of the request was taken).
// Measured here: 6 resets in 250 stops, one connection each.
TEST_CASE("one of two reuse_port hosts stopped under one-shot load: every request is answered",
          "[integration][reuse_port][drain]") {
  constexpr int rounds = 6;
  std::map<std::string, int> totals;
  for (int round = 0; round < rounds; ++round) {
    CAPTURE(round);
    host_options first = host_fixture::loopback();
    first.reuse_port = true;
    auto a = std::make_unique<host_fixture>(2, first);
    a->server.on("work", sleep_then_echo);
    add_echo(a->server);
    const auto at = a->start();
    host_options second = first;
    second.listen = at;
    host_fixture b(2, second);
    b.server.on("work", sleep_then_echo);
    add_echo(b.server);
    REQUIRE(b.start() == at);

    io_pool senders(2);
    std::atomic<bool> stop_sending{false};
    std::atomic<int> answered{0}, running{0};
    std::mutex outcomes_mutex;
    std::map<std::string, int> outcomes;
    std::map<std::string, std::string> examples;
    std::vector<std::unique_ptr<client>> clients;
    for (int i = 0; i < 16; ++i)
      clients.push_back(std::make_unique<client>(senders.get_executor(), at,
                                                 client_options{.connect_retries = 0}));
    for (std::size_t i = 0; i < clients.size(); ++i) {
      ++running;
      asio::co_spawn(
          senders.get_executor(),
          [&, i]() -> asio::awaitable<void> {
            for (int n = 0; !stop_sending && n < 1000000; ++n) {
              // Half the senders' requests take a millisecond: some are in
              // flight on the stopping host when it stops.
              const bool work = i % 2 == 0;
              const json::value value = work ? json::value(1) : json::value(n);
              std::string outcome = "answered";
              try {
                const json::value v = co_await clients[i]->send(work ? "work" : "echo", value);
                if (v != value) outcome = "wrong answer";
                ++answered;
              } catch (const comet::error& e) {
                outcome = outcome_of(e);
                std::lock_guard lock(outcomes_mutex);
                examples.emplace(outcome, e.what());
              }
              std::lock_guard lock(outcomes_mutex);
              ++outcomes[outcome];
            }
            --running;
          },
          asio::detached);
    }
    REQUIRE(wait_until([&] { return answered > 300 && a->server.stats().requests_served > 100; }));
    auto stopped = asio::co_spawn(a->pool.get_executor(), a->server.async_stop(), asio::use_future);
    REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
    stopped.get();
    // The load goes on against the other host.
    const auto served_by_b = b.server.stats().requests_served;
    REQUIRE(wait_until([&] { return b.server.stats().requests_served > served_by_b + 300; }));
    stop_sending = true;
    REQUIRE(wait_until([&] { return running == 0; }, 30s));
    const auto served_by_a = a->server.stats();
    a.reset();
    std::lock_guard lock(outcomes_mutex);
    INFO(summary_of(outcomes));
    for (const auto& [outcome, count] : outcomes) {
      totals[outcome] += count;
      if (outcome.ends_with(" reset")) continue;  // the kernel's race, counted below
      INFO(outcome << ", e.g. " << examples[outcome]);
      CHECK(outcome == "answered");
    }
    CHECK(served_by_a.errors_by_code.count("shutting_down") == 0);
  }
  std::printf("%d stops of one of two reuse_port hosts under 16 one-shot senders: %s\n", rounds,
              summary_of(totals).c_str());
  // A reset each is the kernel's race (tcp_migrate_req 0); it is rare.
  const int resets = totals["connection_closed reset"] + totals["peer_offline reset"];
  std::printf("connections reset in those stops: %d\n", resets);
  CHECK(resets <= 4);
}
