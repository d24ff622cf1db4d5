#include <comet/client.hpp>

#include "support.hpp"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

using namespace comet;
using namespace comet::test;

namespace {

// A port on 127.0.0.1 that nothing listens on: bound, then released.
endpoint closed_port() { return {"127.0.0.1", unused_port()}; }

}  // namespace

TEST_CASE("send_sync blocks a plain thread for the answer", "[integration][client]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  auto c = f.make_client();
  CHECK(c.send_sync("echo", "sync") == "sync");
  std::thread other([&] { CHECK(c.send_sync("echo", 2) == 2); });
  other.join();
}

TEST_CASE("send_sync on a pool thread refuses instead of deadlocking", "[integration][client]") {
  io_pool pool(1);
  client c(pool.get_executor(), {"127.0.0.1", 9});
  std::promise<std::error_code> seen;
  asio::post(pool.get_executor(), [&] {
    try {
      c.send_sync("echo", 1);
      seen.set_value({});
    } catch (const comet::error& e) {
      CHECK_THAT(e.what(), Catch::Contains("co_await"));
      seen.set_value(e.code());
    }
  });
  auto code = seen.get_future();
  REQUIRE(code.wait_for(10s) == std::future_status::ready);
  CHECK(code.get() == errc::would_deadlock);
}

TEST_CASE("post sends in the background and never throws", "[integration][client]") {
  host_fixture f;
  std::promise<json::value> received;
  f.server.on("TelegramBot", [&](const std::string&, const json::value& v) {
    received.set_value(v);
    return true;
  });
  f.start();
  auto c = f.make_client();
  c.post("TelegramBot", json::parse(R"({"123456789": "IV scan done"})"));
  auto got = received.get_future();
  REQUIRE(got.wait_for(10s) == std::future_status::ready);
  CHECK(got.get() == json::parse(R"({"123456789": "IV scan done"})"));

  // A post that fails is logged, not thrown.
  log_capture log;
  client offline(f.pool.get_executor(), closed_port(), {.name = "Offline", .connect_retries = 0});
  offline.post("TelegramBot", 1);
  CHECK(log.wait_for("background send of action 'TelegramBot' failed: cannot connect to Offline"));
}

TEST_CASE("send_tcp_message keeps COMET's shape", "[integration][client]") {
  host_fixture f;
  std::promise<void> posted;
  add_echo(f.server);
  f.server.on("note", [&](const std::string&, const json::value&) {
    posted.set_value();
    return 1;
  });
  f.start();
  auto c = f.make_client();
  auto blocking = send_tcp_message(c, "echo", "hi", /*no_thread=*/true);
  REQUIRE(blocking);
  CHECK(*blocking == json::parse(R"({"result": "hi"})"));
  CHECK_FALSE(send_tcp_message(c, "note", 1));
  CHECK(posted.get_future().wait_for(10s) == std::future_status::ready);
}

TEST_CASE("500 concurrent sends on a 2-thread pool are all answered correctly",
          "[integration][client]") {
  host_fixture f(2);
  f.server.on("square", [](const std::string&, const json::value& v) {
    const auto n = v.as_int64();
    return json::value{{"n", n}, {"square", n * n}};
  });
  f.start();
  auto c = f.make_client();
  // All 500 are started before any is awaited, so they are in flight together.
  std::vector<std::future<json::value>> pending;
  for (std::int64_t i = 0; i < 500; ++i)
    pending.push_back(asio::co_spawn(f.pool.get_executor(), c.send("square", i), asio::use_future));
  std::vector<json::value> answers;
  for (auto& p : pending) {
    REQUIRE(p.wait_for(60s) == std::future_status::ready);
    answers.push_back(p.get());
  }
  REQUIRE(answers.size() == 500);
  for (std::int64_t i = 0; i < 500; ++i) {
    CHECK(answers[i].at("n") == i);
    CHECK(answers[i].at("square") == i * i);
  }
  CHECK(f.server.stats().requests_served == 500);
}

TEST_CASE("a coroutine handler relays to a second host", "[integration][client]") {
  host_fixture telegram;
  telegram.server.on("TelegramBot", [](const std::string&, const json::value& v) {
    return "sent: " + std::string(v.at("text").as_string());
  });
  telegram.start();

  host_fixture relay;
  client to_telegram(relay.pool.get_executor(), telegram.at, {.name = "Telegram"});
  relay.server.on("notify", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    auto answer = co_await to_telegram.send("TelegramBot", v);
    co_return json::value{{"relayed", answer}};
  });
  relay.start();
  auto c = relay.make_client();
  CHECK(c.send_sync("notify", json::parse(R"({"text": "scan done"})")) ==
        json::parse(R"({"relayed": "sent: scan done"})"));
}

TEST_CASE("an offline peer is a peer_offline error naming it", "[integration][client]") {
  io_pool pool(1);
  const auto nowhere = closed_port();
  client c(pool.get_executor(), nowhere, {.name = "Telegram"});
  auto e = error_thrown_by([&] { c.send_sync("TelegramBot", 1); });
  CHECK(e.code() == errc::peer_offline);
  CHECK_THAT(e.what(), Catch::Contains("cannot connect to Telegram at " + nowhere.to_string()) &&
                           Catch::Contains("refused"));
}

TEST_CASE("a host that never accepts is a connect_timeout error", "[integration][client]") {
  // A listener with a full accept queue: Linux drops further SYNs, so the
  // next connect hangs until the client gives up.
  asio::io_context io;
  tcp::acceptor full(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  full.listen(0);
  const endpoint at{"127.0.0.1", full.local_endpoint().port()};
  std::vector<tcp::socket> fillers;
  const auto target = tcp::endpoint(asio::ip::make_address(at.ip), at.port);
  for (int i = 0; i < 4; ++i) {
    fillers.emplace_back(io, tcp::v4());
    fillers.back().native_non_blocking(true);
    // A raw non-blocking connect: it sends the SYN and returns at once.
    ::connect(fillers.back().native_handle(), target.data(), target.size());
  }
  io_pool pool(1);
  client c(pool.get_executor(), at, {.name = "stuck", .connect_timeout = 200ms});
  const auto begun = std::chrono::steady_clock::now();
  auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
  CHECK(e.code() == errc::connect_timeout);
  CHECK_THAT(e.what(), Catch::Contains("cannot connect to stuck at"));
  CHECK(std::chrono::steady_clock::now() - begun < 1500ms);
}

TEST_CASE("a slow host is a request_timeout error", "[integration][client]") {
  host_fixture f;
  f.server.on("slow", [](const std::string&, const json::value&) -> asio::awaitable<json::value> {
    asio::steady_timer t(co_await asio::this_coro::executor, 2s);
    co_await t.async_wait(asio::use_awaitable);
    co_return 1;
  });
  f.start();
  auto c = f.make_client({.request_timeout = 200ms});
  const auto begun = std::chrono::steady_clock::now();
  auto e = error_thrown_by([&] { c.send_sync("slow", 1); });
  CHECK(e.code() == errc::request_timeout);
  CHECK_THAT(e.what(), Catch::Contains("200 ms"));
  CHECK(std::chrono::steady_clock::now() - begun < 1500ms);
}

TEST_CASE("error responses become typed errors with the host's message", "[integration][client]") {
  host_fixture f;
  f.server.on("broken", [](const std::string&, const json::value&) -> json::value {
    throw std::runtime_error("the magnet quenched");
  });
  f.start();
  auto c = f.make_client({.name = "lab"});
  auto missing = error_thrown_by([&] { c.send_sync("Telegram", 1); });
  CHECK(missing.code() == errc::no_handler);
  CHECK_THAT(missing.what(), Catch::Contains("lab at") && Catch::Contains("'Telegram'"));
  auto broken = error_thrown_by([&] { c.send_sync("broken", 1); });
  CHECK(broken.code() == errc::handler_failed);
  CHECK_THAT(broken.what(), Catch::Contains("the magnet quenched"));
}

TEST_CASE("a host that closes without answering is connection_closed", "[integration][client]") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const endpoint at{"127.0.0.1", acceptor.local_endpoint().port()};
  std::thread rude([&] {
    tcp::socket s(io);
    acceptor.accept(s);
    std::array<char, 16> buf;
    boost::system::error_code ec;
    s.read_some(asio::buffer(buf), ec);
    s.close();
  });
  io_pool pool(1);
  client c(pool.get_executor(), at);
  auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
  rude.join();
  CHECK(e.code() == errc::connection_closed);
}

TEST_CASE("named clients come from the config", "[integration][client]") {
  io_pool pool(1);
  config cfg;
  cfg.source = "lab.toml";
  cfg.clients.emplace("Telegram", endpoint{"127.0.0.4", 65432});
  cfg.framework.request_timeout = 1234ms;
  client_set clients(pool.get_executor(), cfg);
  CHECK(clients["Telegram"].peer() == endpoint{"127.0.0.4", 65432});
  CHECK(clients["Telegram"].name() == "Telegram");
  auto e = error_thrown_by([&] { clients["Telegam"]; });
  CHECK(e.code() == errc::unknown_client);
  CHECK_THAT(e.what(), Catch::Contains("'Telegam'") && Catch::Contains("lab.toml") &&
                           Catch::Contains("Telegram"));
  // Anything that is not an address is a name, resolved when it is used:
  // constructing a client never throws for it.
  const client odd(pool.get_executor(), {"not a name!", 1});
  CHECK(error_thrown_by([&] { odd.send_sync("echo", 1); }).code() == errc::unresolved);
}

TEST_CASE("a keep-alive client multiplexes concurrent sends over a few connections",
          "[integration][client]") {
  host_fixture f(2);
  f.server.on("square", [](const std::string&, const json::value& v) {
    return v.as_int64() * v.as_int64();
  });
  f.start();
  auto c = f.make_client({.keep_alive = true, .max_connections = 3, .max_in_flight = 16});
  for (int round = 0; round < 2; ++round) {
    std::vector<std::future<json::value>> pending;
    for (std::int64_t i = 0; i < 300; ++i)
      pending.push_back(asio::co_spawn(f.pool.get_executor(), c.send("square", i), asio::use_future));
    for (std::int64_t i = 0; i < 300; ++i) {
      REQUIRE(pending[i].wait_for(30s) == std::future_status::ready);
      CHECK(pending[i].get() == i * i);
    }
  }
  CHECK(c.send_sync("square", 7) == 49);
  CHECK(f.server.stats().requests_served == 601);
  CHECK(f.server.stats().connections_accepted <= 3);
}

TEST_CASE("a keep-alive client falls back to a connection per message for a COMET host",
          "[integration][client]") {
  // A stand-in for COMET's host: one request per connection, answered
  // without keep-alive, then closed.
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const endpoint at{"127.0.0.1", acceptor.local_endpoint().port()};
  constexpr int messages = 5;
  std::atomic<int> connections{0};
  std::thread comet_host([&] {
    for (int i = 0; i < messages; ++i) {
      tcp::socket s(io);
      acceptor.accept(s);
      ++connections;
      raw_peer peer(std::move(s));
      auto request = split(peer.read_frame());
      std::string why;
      auto message = decode_request(request.content, why);
      peer.write(encode_frame({}, encode_response(message->value)));
    }
  });
  io_pool pool(1);
  client c(pool.get_executor(), at, {.keep_alive = true});
  for (int i = 0; i < messages; ++i) CHECK(c.send_sync("echo", i) == i);
  comet_host.join();
  CHECK(connections == messages);
}

TEST_CASE("a keep-alive client times out one request and keeps serving the rest",
          "[integration][client]") {
  host_fixture f;
  f.server.on("sleep", sleep_then_echo);
  f.start();
  auto c = f.make_client({.request_timeout = 300ms, .keep_alive = true, .max_connections = 1});
  CHECK(c.send_sync("sleep", 1) == 1);
  auto slow = asio::co_spawn(f.pool.get_executor(), c.send("sleep", 2000), asio::use_future);
  CHECK(c.send_sync("sleep", 2) == 2);  // not stuck behind the slow one
  REQUIRE(slow.wait_for(10s) == std::future_status::ready);
  auto e = error_thrown_by([&] { slow.get(); });
  CHECK(e.code() == errc::request_timeout);
  CHECK(c.send_sync("sleep", 3) == 3);
  CHECK(f.server.stats().connections_accepted == 1);
}

TEST_CASE("a keep-alive client reports a host that goes away and reconnects when it is back",
          "[integration][client]") {
  io_pool pool(2);
  host_options o = host_fixture::loopback();
  auto first = std::make_unique<host>(pool.get_executor(), o);
  first->on("echo", [](const std::string&, const json::value& v) { return v; });
  const auto at = first->start();
  client c(pool.get_executor(), at, {.keep_alive = true});
  CHECK(c.send_sync("echo", 1) == 1);
  run(pool.get_executor(), [&] { return first->async_stop(); });
  first.reset();
  auto e = error_thrown_by([&] { c.send_sync("echo", 2); });
  INFO(e.what());
  // The stopped host's going-away notice (unread), or its closed port.
  CHECK((e.code() == errc::peer_offline || e.code() == errc::unread));
  CHECK(e.safe_to_retry());

  o.listen = at;
  host second(pool.get_executor(), o);
  add_echo(second);
  second.start();
  // A peer found down is tried again after a backoff of about 200 ms;
  // until then sends fail at once, peer_offline.
  const std::optional<json::value> answer = send_until_up(c, "echo", 3);
  REQUIRE(answer);
  CHECK(*answer == 3);
}

TEST_CASE("a refused connect is retried, so a host that is starting is reached",
          "[integration][client]") {
  for (const bool keep_alive : {false, true}) {
    INFO("keep_alive " << keep_alive);
    const auto at = closed_port();
    io_pool pool(2);
    host_options o;
    o.listen = at;
    host late(pool.get_executor(), o);
    add_echo(late);
    // Retries 50 ms, 100 ms, ... 3.2 s apart: seconds for the host to start.
    client c(pool.get_executor(), at,
             {.connect_timeout = 20s, .request_timeout = 20s, .keep_alive = keep_alive,
              .connect_retries = 8});
    // At debug the client logs each refused connect it retries: the host
    // listens only once this client's connect has been refused, so only a
    // retry can reach it.
    log_capture log(log_level::debug);
    auto answer = asio::co_spawn(pool.get_executor(), c.send("echo", "eventually"), asio::use_future);
    REQUIRE(log.wait_for("Connection refused; retrying in 50 ms"));
    late.start();
    REQUIRE(answer.wait_for(20s) == std::future_status::ready);
    CHECK(answer.get() == "eventually");
  }
  io_pool pool(1);
  client impatient(pool.get_executor(), closed_port(), {.connect_retries = 0});
  CHECK(error_thrown_by([&] { impatient.send_sync("echo", 1); }).code() == errc::peer_offline);
}

TEST_CASE("a request over the host's limit is reported as too_large, not as a broken pipe",
          "[integration][client]") {
  host_options o = host_fixture::loopback();
  o.max_content_length = 1000;
  host_fixture f(2, o);
  add_echo(f.server);
  f.start();
  const json::value big(json::string(4 << 20, 'x'));  // the host closes long before this is sent
  for (const bool keep_alive : {false, true}) {
    INFO("keep_alive " << keep_alive);
    auto c = f.make_client({.keep_alive = keep_alive});
    for (int i = 0; i < 5; ++i) {
      auto e = error_thrown_by([&] { c.send_sync("echo", big); });
      CHECK(e.code() == errc::too_large);
    }
    CHECK(c.send_sync("echo", "small") == "small");
  }
  // The refusals did not make the keep-alive client give up on keep-alive.
  const auto accepted = f.server.stats().connections_accepted;
  auto pooled = f.make_client({.keep_alive = true});
  CHECK_THROWS_AS(pooled.send_sync("echo", big), comet::error);
  for (int i = 0; i < 5; ++i) CHECK(pooled.send_sync("echo", i) == i);
  CHECK(f.server.stats().connections_accepted - accepted == 2);
}

TEST_CASE("requests written behind one refused as too_large are sent again, not lost",
          "[integration][client]") {
  host_options o = host_fixture::loopback();
  o.max_content_length = 1000;
  host_fixture f(2, o);
  add_echo(f.server);
  f.start();
  // One connection, so every request shares it with the oversize one; one
  // client thread, so the sends are submitted in the order they are spawned.
  io_pool client_thread(1);
  const client c(client_thread, f.at, {.keep_alive = true, .max_connections = 1});
  REQUIRE(c.send_sync("echo", 0) == 0);  // the connection is open and keeps alive

  const json::value big(json::string(2000, 'x'));
  std::vector<std::future<json::value>> answers;
  answers.push_back(asio::co_spawn(client_thread.get_executor(), c.send("echo", big), asio::use_future));
  for (int i = 1; i <= 20; ++i)
    answers.push_back(asio::co_spawn(client_thread.get_executor(), c.send("echo", i), asio::use_future));
  for (auto& a : answers) REQUIRE(a.wait_for(10s) == std::future_status::ready);
  auto refused = error_thrown_by([&] { answers[0].get(); });
  CHECK(refused.code() == errc::too_large);
  for (int i = 1; i <= 20; ++i) CHECK(answers[i].get() == i);
  // The host read none of those written after the refused one on the first
  // connection; they went out again on a second.
  CHECK(f.server.stats().connections_accepted == 2);
  CHECK(f.server.stats().requests_served == 1 + 1 + 20);

  // The pool learnt: a request that large now goes on a connection of its
  // own, and the shared one carries the others undisturbed.
  answers.clear();
  answers.push_back(asio::co_spawn(client_thread.get_executor(), c.send("echo", big), asio::use_future));
  for (int i = 1; i <= 20; ++i)
    answers.push_back(asio::co_spawn(client_thread.get_executor(), c.send("echo", i), asio::use_future));
  for (auto& a : answers) REQUIRE(a.wait_for(10s) == std::future_status::ready);
  CHECK(error_thrown_by([&] { answers[0].get(); }).code() == errc::too_large);
  for (int i = 1; i <= 20; ++i) CHECK(answers[i].get() == i);
  CHECK(f.server.stats().connections_accepted == 3);  // the big one's own
  CHECK(f.server.stats().requests_served == 22 + 1 + 20);
}
