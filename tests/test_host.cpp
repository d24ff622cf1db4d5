#include <comet/host.hpp>

#include "support.hpp"

#include <atomic>
#include <set>

using namespace comet;
using namespace comet::test;

namespace {

response_message answer_of(const std::string& frame) { return decode_response(split(frame).content); }

}  // namespace

TEST_CASE("host and client round-trip strings, objects, unicode and 1 MiB", "[integration][host]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  auto c = f.make_client();

  std::string big(1 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); i += 97) big[i] = static_cast<char>('a' + i % 26);
  const std::vector<json::value> values{
      "just a string",
      json::parse(R"({"i": 1, "text": "hello", "list": [1, 2.5, true, null]})"),
      json::parse(R"({"name": "Jürgen", "unit": "µA", "emoji": "✓ 🚀"})"),
      json::value(big),
      nullptr,
      json::parse("[]"),
  };
  for (const auto& v : values) {
    auto answer = run(f.pool.get_executor(), [&]() { return c.send("echo", v); });
    CHECK(answer == v);
  }
}

TEST_CASE("the host closes after one response unless the request asks for keep-alive",
          "[integration][host]") {
  host_fixture f;
  add_echo(f.server);
  const auto at = f.start();

  raw_peer once(at);
  once.write(request_frame("echo", 1));
  auto reply = split(once.read_frame());
  CHECK_FALSE(reply.header.contains("keep-alive"));
  CHECK(once.closed_by_peer());

  raw_peer kept(at);
  for (int i = 0; i < 3; ++i) {
    frame_header h;
    h.keep_alive = true;
    h.request_id = 100 + i;
    kept.write(encode_frame(h, encode_request("echo", i)));
    auto r = split(kept.read_frame());
    CHECK(r.header.at("keep-alive") == true);
    CHECK(r.header.at("request-id") == 100 + i);
    CHECK(decode_response(r.content).result == i);
  }
  // Pipelined: three requests written at once are answered in order.
  std::string burst;
  for (int i = 0; i < 3; ++i) burst += request_frame("echo", i * 10, /*keep_alive=*/true);
  kept.write(burst);
  for (int i = 0; i < 3; ++i) CHECK(answer_of(kept.read_frame()).result == i * 10);
  kept.write(request_frame("echo", "last"));  // no keep-alive: the host closes after it
  CHECK(answer_of(kept.read_frame()).result == "last");
  CHECK(kept.closed_by_peer());
}

TEST_CASE("measurements pass through a host unchanged, to the last digit", "[integration][host]") {
  host_fixture f;
  add_echo(f.server);
  const auto at = f.start();
  // As a COMET peer writes them (Python repr), read and written back by the host.
  const std::string content =
      R"({"action": "echo", "value": {"V": [46.803017420987636, 94.17241521181185, 926.1024924743651], "n": 3}})";
  raw_peer peer(at);
  peer.write(encode_frame(frame_header{}, content));
  const auto reply = split(peer.read_frame());
  CHECK(reply.content ==
        R"({"result": {"V": [46.803017420987636, 94.17241521181185, 926.1024924743651], "n": 3}})");
}

TEST_CASE("bad requests get bad_request and the host lives on", "[integration][host]") {
  host_fixture f;
  add_echo(f.server);
  const auto at = f.start();

  struct bad {
    std::string content;
    std::string reason;
  };
  const std::vector<bad> cases{
      {"this is not json", "not valid JSON"},
      {"[1, 2]", "not a JSON object"},
      {R"({"value": 1})", "no \"action\""},
      {R"({"action": 7, "value": 1})", "not a string"},
  };
  for (const auto& c : cases) {
    INFO(c.content);
    raw_peer p(at);
    p.write(encode_frame({}, c.content));
    auto r = answer_of(p.read_frame());
    REQUIRE(r.error);
    CHECK(*r.error == errc::bad_request);
    CHECK_THAT(r.error_message, Catch::Contains(c.reason));
  }

  frame_header binary;
  binary.content_type = "binary/custom-client-binary-type";
  binary.content_encoding = "binary";
  raw_peer p(at);
  p.write(encode_frame(binary, std::string("\x00\x01\x02", 3)));
  auto r = answer_of(p.read_frame());
  REQUIRE(r.error);
  CHECK(*r.error == errc::bad_request);
  CHECK_THAT(r.error_message, Catch::Contains("binary/custom-client-binary-type"));

  auto c = f.make_client();
  CHECK(run(f.pool.get_executor(), [&] { return c.send("echo", "still here"); }) == "still here");
}

TEST_CASE("a malformed frame closes only that connection, without an answer",
          "[integration][host]") {
  host_fixture f;
  add_echo(f.server);
  const auto at = f.start();

  raw_peer bystander(at);  // an open connection that must survive
  bystander.write(request_frame("echo", "partial").substr(0, 10));

  for (std::string garbage : {std::string("\x00\x05hello", 7), std::string("\x00\x00", 2),
                              std::string("\x00\x02{}", 4)}) {
    raw_peer p(at);
    p.write(garbage);
    CHECK(p.read_to_eof().empty());
  }
  {
    raw_peer truncated(at);  // header says 100 bytes of content; EOF after 3
    std::string frame = encode_frame({}, std::string(100, 'x')).substr(0, 80);
    truncated.write(frame);
    truncated.socket().shutdown(tcp::socket::shutdown_send);
    CHECK(truncated.read_to_eof().empty());
  }
  bystander.write(request_frame("echo", "partial").substr(10));
  CHECK(answer_of(bystander.read_frame()).result == "partial");
}

TEST_CASE("content over the limit gets too_large before it is sent", "[integration][host]") {
  host_options o = host_fixture::loopback();
  o.max_content_length = 1000;
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();

  raw_peer p(at);
  std::string frame = encode_frame({}, encode_request("echo", json::string(5000, 'x')));
  const auto header_size = frame.size() - encode_request("echo", json::string(5000, 'x')).size();
  p.write(frame.substr(0, header_size));  // the header alone: the answer must not wait for content
  auto r = split(p.read_frame());
  auto response = decode_response(r.content);
  REQUIRE(response.error);
  CHECK(*response.error == errc::too_large);
  CHECK(p.closed_by_peer());

  auto c = f.make_client();
  CHECK(run(f.pool.get_executor(), [&] { return c.send("echo", json::string(900, 'y')); }) ==
        json::value(json::string(900, 'y')));
}

TEST_CASE("graceful stop answers the request in flight, then refuses new ones",
          "[integration][host]") {
  host_fixture f;
  std::promise<void> entered;
  f.server.on("slow", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    entered.set_value();
    asio::steady_timer t(co_await asio::this_coro::executor, 300ms);
    co_await t.async_wait(asio::use_awaitable);
    co_return v;
  });
  const auto at = f.start();
  auto c = f.make_client();

  auto in_flight = asio::co_spawn(f.pool.get_executor(), c.send("slow", "done"), asio::use_future);
  entered.get_future().wait();
  raw_peer idle(at);  // connected, sent nothing: closed by the stop
  // Accepted before the stop (a connection still in the backlog would be
  // reset by the acceptor's close and prove nothing about the host).
  REQUIRE(wait_until([&] { return f.server.stats().connections_open == 2; }));
  auto stopped = asio::co_spawn(f.pool.get_executor(), f.server.async_stop(), asio::use_future);

  REQUIRE(in_flight.wait_for(10s) == std::future_status::ready);
  CHECK(in_flight.get() == "done");
  REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
  stopped.get();
  CHECK(idle.closed_by_peer());
  CHECK_FALSE(f.server.running());
  CHECK(f.server.stats().connections_open == 0);
  try {
    run(f.pool.get_executor(), [&] { return c.send("slow", 1); });
    FAIL("a stopped host answered");
  } catch (const comet::error& e) {
    CHECK(e.code() == errc::peer_offline);
  }
}

TEST_CASE("stop closes connections whose handlers overrun the shutdown timeout",
          "[integration][host]") {
  host_options o = host_fixture::loopback();
  o.shutdown_timeout = 200ms;
  host_fixture f(2, o);
  std::promise<void> entered;
  f.server.on("stuck", [&](const std::string&, const json::value&) -> asio::awaitable<json::value> {
    entered.set_value();
    asio::steady_timer t(co_await asio::this_coro::executor, 3s);
    co_await t.async_wait(asio::use_awaitable);
    co_return 1;
  });
  const auto at = f.start();
  raw_peer p(at);
  p.write(request_frame("stuck", 1));
  entered.get_future().wait();
  const auto begun = std::chrono::steady_clock::now();
  f.server.stop();
  CHECK(p.read_to_eof().empty());
  CHECK(std::chrono::steady_clock::now() - begun < 2s);
}

TEST_CASE("a second host on a busy port fails with a clear message", "[integration][host]") {
  host_fixture f;
  const auto at = f.start();
  host_options o;
  o.listen = at;
  host second(f.pool.get_executor(), o);
  try {
    second.start();
    FAIL("bound a busy port");
  } catch (const comet::error& e) {
    CHECK(e.code() == errc::bind_failed);
    CHECK_THAT(e.what(), Catch::Contains(at.to_string()) && Catch::Contains("in use"));
  }
  host_options bad;
  bad.listen = {"no-such-host.invalid", 0};
  host third(f.pool.get_executor(), bad);
  try {
    third.start();
    FAIL("listened on a name that does not resolve");
  } catch (const comet::error& e) {
    CHECK(e.code() == errc::unresolved);
    CHECK_THAT(e.what(), Catch::Contains("'no-such-host.invalid' does not resolve"));
  }
}

TEST_CASE("stats count requests, errors and connections", "[integration][host]") {
  host_fixture f;
  add_echo(f.server);
  const auto at = f.start();
  auto c = f.make_client();
  run(f.pool.get_executor(), [&] { return c.send("echo", 1); });
  CHECK_THROWS_AS(run(f.pool.get_executor(), [&] { return c.send("missing", 1); }), comet::error);
  raw_peer open(at);
  // The raw connection is accepted, and the client's two are closed, soon after.
  CHECK(wait_until([&] {
    const auto now = f.server.stats();
    return now.connections_accepted == 3 && now.connections_open == 1;
  }));
  const auto s = f.server.stats();
  CHECK(s.requests_served == 2);
  CHECK(s.error_responses == 1);
  CHECK(s.connections_accepted == 3);
  CHECK(s.connections_open == 1);
  CHECK(s.uptime > 0s);
}

TEST_CASE("a host and client embed in an io_context the program runs itself",
          "[integration][host]") {
  asio::io_context io;  // no comet threads: this test's thread runs everything
  host_options o = host_fixture::loopback();
  host h(io.get_executor(), o);
  add_echo(h);
  const auto at = h.start();
  client c(io.get_executor(), at);

  json::value answer;
  int ticks = 0;
  asio::steady_timer other_work(io, 1ms);  // the program's own async work, beside ours
  std::function<void(boost::system::error_code)> tick = [&](boost::system::error_code ec) {
    if (ec || ++ticks == 5) return;
    other_work.expires_after(1ms);
    other_work.async_wait(tick);
  };
  other_work.async_wait(tick);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    answer = co_await c.send("echo", "embedded");
    co_await h.async_stop();
  }, asio::detached);
  // run() returns only once the stopped host has left no work behind.
  io.run_for(20s);
  CHECK(io.stopped());
  CHECK(answer == "embedded");
  CHECK(ticks == 5);
}

TEST_CASE("tagged requests on one connection run concurrently and answer in completion order",
          "[integration][host]") {
  host_fixture f;
  std::atomic<int> running{0}, peak{0};
  f.server.on("sleep", [&](const std::string& action, const json::value& v) -> asio::awaitable<json::value> {
    const int now = ++running;
    for (int seen = peak; now > seen && !peak.compare_exchange_weak(seen, now);) {
    }
    auto answer = co_await sleep_then_echo(action, v);
    --running;
    co_return answer;
  });
  const auto at = f.start();
  raw_peer p(at);
  std::string burst;
  const std::vector<std::int64_t> delays{400, 200, 0};
  for (std::size_t i = 0; i < delays.size(); ++i) {
    frame_header h;
    h.keep_alive = true;
    h.request_id = i + 1;
    burst += encode_frame(h, encode_request("sleep", delays[i]));
  }
  p.write(burst);
  std::vector<std::uint64_t> order;
  for (std::size_t i = 0; i < delays.size(); ++i) {
    auto r = split(p.read_frame());
    const auto id = r.header.at("request-id").to_number<std::uint64_t>();
    order.push_back(id);
    CHECK(decode_response(r.content).result == delays[id - 1]);
  }
  // The slow one did not hold up the fast ones, and they overlapped.
  CHECK(order == std::vector<std::uint64_t>{3, 2, 1});
  CHECK(peak >= 2);
}

TEST_CASE("a connection's tagged requests beyond max_in_flight are answered busy, unrun",
          "[integration][host]") {
  host_options o = host_fixture::loopback();
  o.max_in_flight = 2;
  host_fixture f(2, o);
  std::atomic<int> running{0}, peak{0}, runs{0};
  f.server.on("work", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    ++runs;
    const int now = ++running;
    for (int seen = peak; now > seen && !peak.compare_exchange_weak(seen, now);) {
    }
    asio::steady_timer t(co_await asio::this_coro::executor, 200ms);
    co_await t.async_wait(asio::use_awaitable);
    --running;
    co_return v;
  });
  const auto at = f.start();
  raw_peer p(at);
  std::string burst;
  for (std::uint64_t i = 0; i < 6; ++i) {
    frame_header h;
    h.keep_alive = true;
    h.request_id = i;
    burst += encode_frame(h, encode_request("work", i));
  }
  p.write(burst);
  std::set<std::uint64_t> answered, busy;
  for (int i = 0; i < 6; ++i) {
    auto r = split(p.read_frame());
    const auto id = r.header.at("request-id").to_number<std::uint64_t>();
    answered.insert(id);
    if (decode_response(r.content).error == errc::busy) busy.insert(id);
  }
  CHECK(answered.size() == 6);
  CHECK(busy == std::set<std::uint64_t>{2, 3, 4, 5});
  CHECK(runs == 2);
  CHECK(peak == 2);
}

TEST_CASE("a peer that stalls mid-frame is dropped after idle_timeout while others are served",
          "[integration][host][limits]") {
  host_options o = host_fixture::loopback();
  o.idle_timeout = 300ms;
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();
  raw_peer stalled(at);
  stalled.write(request_frame("echo", "never finished").substr(0, 20));
  const auto begun = std::chrono::steady_clock::now();
  auto c = f.make_client();
  CHECK(c.send_sync("echo", "prompt") == "prompt");
  CHECK(stalled.read_to_eof().empty());
  const auto waited = std::chrono::steady_clock::now() - begun;
  CHECK(waited >= 300ms);
  CHECK(waited < 3s);
}

TEST_CASE("connections past max_connections are answered host_full and closed", "[integration][host][limits]") {
  host_options o = host_fixture::loopback();
  o.max_connections = 2;
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();
  raw_peer first(at), second(at);
  first.write(request_frame("echo", 1, /*keep_alive=*/true));
  second.write(request_frame("echo", 2, /*keep_alive=*/true));
  CHECK(answer_of(first.read_frame()).result == 1);
  CHECK(answer_of(second.read_frame()).result == 2);
  raw_peer third(at);
  third.write(request_frame("echo", 3));
  const auto refusal = answer_of(third.read_frame());
  REQUIRE(refusal.error);
  CHECK(*refusal.error == errc::host_full);
  CHECK(third.closed_by_peer());
  CHECK(wait_until([&] { return f.server.stats().connections_refused == 1; }));
  first.write(request_frame("echo", "still served"));
  CHECK(answer_of(first.read_frame()).result == "still served");
}

TEST_CASE("a coroutine handler past handler_timeout answers timeout and is cancelled",
          "[integration][host][limits]") {
  host_options o = host_fixture::loopback();
  o.handler_timeout = 200ms;
  host_fixture f(2, o);
  std::promise<bool> cancelled;
  f.server.on("hang", [&](const std::string&, const json::value&) -> asio::awaitable<json::value> {
    asio::steady_timer t(co_await asio::this_coro::executor, 10s);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    cancelled.set_value(ec == asio::error::operation_aborted);
    co_return 1;
  });
  f.server.on("quick", [](const std::string&, const json::value&) -> asio::awaitable<json::value> {
    co_return 2;
  });
  f.start();
  auto c = f.make_client();
  const auto begun = std::chrono::steady_clock::now();
  try {
    c.send_sync("hang", 1);
    FAIL("a hung handler answered");
  } catch (const comet::error& e) {
    CHECK(e.code() == errc::timeout);
    CHECK_THAT(e.what(), Catch::Contains("'hang'") && Catch::Contains("200 ms"));
  }
  CHECK(std::chrono::steady_clock::now() - begun < 2s);
  auto was_cancelled = cancelled.get_future();
  REQUIRE(was_cancelled.wait_for(5s) == std::future_status::ready);
  CHECK(was_cancelled.get());
  CHECK(c.send_sync("quick", 0) == 2);
}

TEST_CASE("stats report errors by code, bytes and latency", "[integration][host]") {
  host_fixture f;
  f.server.on("sleep", sleep_then_echo);
  f.start();
  auto c = f.make_client();
  // Every answer takes 20 ms or more, so every latency measured is as long.
  for (int i = 0; i < 8; ++i) CHECK(c.send_sync("sleep", 20) == 20);
  const auto timed = f.server.stats();
  CHECK(timed.latency_p50 >= 20ms);
  CHECK(timed.latency_p99 >= timed.latency_p50);
  CHECK(timed.latency_p999 >= timed.latency_p99);
  CHECK(timed.latency_p999 < 10s);

  CHECK_THROWS_AS(c.send_sync("nope", 1), comet::error);
  CHECK_THROWS_AS(c.send_sync("nope", 2), comet::error);
  // The client writes COMET's frames, and the host answers COMET's: every byte is counted.
  const auto answer = encode_frame({}, encode_response(20)).size();
  const auto refusal =
      encode_frame({}, encode_error_response(errc::no_handler, "no handler answered action 'nope'"))
          .size();
  const auto received =
      8 * request_frame("sleep", 20).size() + request_frame("nope", 1).size() +
      request_frame("nope", 2).size();
  const auto sent = 8 * answer + 2 * refusal;
  // A write is counted when it completes, which may be just after the client has read it.
  CHECK(wait_until([&] { return f.server.stats().bytes_sent == sent; }));
  const auto s = f.server.stats();
  CHECK(s.requests_served == 10);
  CHECK(s.error_responses == 2);
  REQUIRE(s.errors_by_code.count("no_handler") == 1);
  CHECK(s.errors_by_code.at("no_handler") == 2);
  CHECK(s.bytes_received == received);
  CHECK(s.bytes_sent == sent);
}

TEST_CASE("a host with an auth token answers only requests that carry it",
          "[integration][host][security]") {
  host_options o = host_fixture::loopback();
  o.auth_token = "s3cret-token";
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();

  auto without = f.make_client();
  try {
    without.send_sync("echo", 1);
    FAIL("answered without a token");
  } catch (const comet::error& e) {
    CHECK(e.code() == errc::unauthorized);
    CHECK_THAT(e.what(), Catch::Contains("requires an auth-token"));
  }
  auto wrong = f.make_client({.auth_token = "s3cret-tokem"});
  CHECK_THROWS_WITH(wrong.send_sync("echo", 1), Catch::Contains("not valid"));

  auto right = f.make_client({.auth_token = "s3cret-token"});
  CHECK(right.send_sync("echo", "in") == "in");
  auto pooled = f.make_client({.keep_alive = true, .auth_token = "s3cret-token"});
  CHECK(pooled.send_sync("echo", "pooled") == "pooled");

  // The refusal closes the connection, even one that asked for keep-alive.
  raw_peer p(at);
  p.write(request_frame("echo", 1, /*keep_alive=*/true));
  auto r = decode_response(split(p.read_frame()).content);
  REQUIRE(r.error);
  CHECK(*r.error == errc::unauthorized);
  CHECK(p.closed_by_peer());
  CHECK(f.server.stats().errors_by_code.at("unauthorized") == 3);
}

TEST_CASE("an allow-list admits only listed addresses", "[integration][host][security]") {
  SECTION("a loopback peer outside the list is refused") {
    host_options o = host_fixture::loopback();
    o.allow = {"10.0.0.0/8", "::1"};
    host_fixture f(2, o);
    add_echo(f.server);
    f.start();
    CHECK_THROWS_WITH(f.make_client().send_sync("echo", 1),
                      Catch::Contains("does not accept requests from your address"));
  }
  SECTION("a listed network admits it") {
    host_options o = host_fixture::loopback();
    o.allow = {"192.168.1.7", "127.0.0.0/8"};
    host_fixture f(2, o);
    add_echo(f.server);
    f.start();
    CHECK(f.make_client().send_sync("echo", 2) == 2);
  }
  SECTION("a bad entry is a clear error") {
    io_pool pool(1);
    host_options o = host_fixture::loopback();
    o.allow = {"127.0.0.0/33"};
    CHECK_THROWS_WITH(host(pool.get_executor(), o), Catch::Contains("127.0.0.0/33"));
  }
}
