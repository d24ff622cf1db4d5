// The host's announced extensions over real sockets (docs/protocol.md,
// "Announced extensions"; issue 16): capabilities, the window, cancel
// frames and the going-away notice, written by hand by raw peers.
#include <comet/comet.hpp>

#include "hostile_peers.hpp"
#include "support.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <atomic>
#include <set>

using namespace comet;
using namespace comet::test;

namespace {

std::string cancel_frame(std::uint64_t id, bool keep_alive = true) {
  frame_header h;
  h.keep_alive = keep_alive;
  h.request_id = id;
  h.kind = frame_kind::cancel;
  return encode_frame(h, "");
}

// A frame whose header is `json` as written (for keys the codec does not write).
std::string raw_frame(std::string_view json) {
  std::string out;
  out += static_cast<char>(json.size() >> 8);
  out += static_cast<char>(json.size() & 0xFF);
  out += json;
  return out;
}

std::uint64_t id_of(const split_frame& f) { return f.header.at("request-id").to_number<std::uint64_t>(); }

// Handlers that wait for a long time unless cancelled, counting both.
struct waiting_handlers {
  std::atomic<int> started{0}, aborted{0};
  void add_to(host& h) {
    h.on("wait", [this](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
      ++started;
      asio::steady_timer t(co_await asio::this_coro::executor, 30s);
      auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec == asio::error::operation_aborted) ++aborted;
      co_return v;
    });
  }
};

}  // namespace

TEST_CASE("a cancel frame cancels the host's coroutine handler and nothing is sent for it",
          "[integration][host_session]") {
  waiting_handlers handlers;  // outlives the host, whose handlers use it
  host_fixture f;
  handlers.add_to(f.server);
  add_echo(f.server);
  const auto at = f.start();
  raw_peer p(at);
  p.write(tagged(1, "echo", 1, feature::all));
  const auto first = split(p.read_frame());
  CHECK(first.header.at("features").as_array().size() == feature::names.size());

  p.write(tagged(2, "wait", 2));
  REQUIRE(wait_until([&] { return handlers.started == 1; }));
  p.write(cancel_frame(2));
  REQUIRE(wait_until([&] { return handlers.aborted == 1; }));
  // The next request is answered, and nothing for the cancelled one came first.
  p.write(tagged(3, "echo", 3));
  const auto next = split(p.read_frame());
  CHECK(id_of(next) == 3);
  CHECK(decode_response(next.content).result == 3);
}

TEST_CASE("the first answer carries features and the window only when the request announced them",
          "[integration][host_session]") {
  host_options o = host_fixture::loopback();
  o.max_in_flight = 7;
  o.max_in_flight_bytes = 12345;
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();

  raw_peer announcing(at);
  announcing.write(tagged(1, "echo", 1, feature::all));
  const auto first = split(announcing.read_frame());
  CHECK(first.header.at("features") == json::array{"cancel", "going-away", "stream", "trace"});
  CHECK(first.header.at("window") == 7);
  CHECK(first.header.at("window-bytes") == 12345);
  announcing.write(tagged(2, "echo", 2));
  const auto second = split(announcing.read_frame());
  CHECK_FALSE(second.header.contains("features"));
  CHECK_FALSE(second.header.contains("window"));

  // An old-style tagged keep-alive peer: today's bytes, and no notice at the stop.
  raw_peer old(at);
  for (std::uint64_t id = 1; id <= 2; ++id) {
    old.write(tagged(id, "echo", "v"));
    frame_header h;
    h.keep_alive = true;
    h.request_id = id;
    CHECK(old.read_frame() == encode_frame(h, encode_response("v")));
  }
  auto stopped = asio::co_spawn(f.pool.get_executor(), f.server.async_stop(), asio::use_future);
  CHECK(old.read_to_eof().empty());
  REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
  stopped.get();
}

TEST_CASE("requests past the window are answered busy at once and a cancel behind them still arrives",
          "[integration][host_session]") {
  host_options o = host_fixture::loopback();
  o.max_in_flight = 4;
  waiting_handlers handlers;
  host_fixture f(2, o);
  handlers.add_to(f.server);
  const auto at = f.start();
  raw_peer p(at);
  std::string burst;
  for (std::uint64_t id = 1; id <= 9; ++id)
    burst += tagged(id, "wait", static_cast<std::int64_t>(id),
                    id == 1 ? std::optional<std::uint32_t>(feature::all) : std::nullopt);
  p.write(burst);
  std::set<std::uint64_t> busy;
  for (int i = 0; i < 5; ++i) {
    const auto r = split(p.read_frame());
    const auto response = decode_response(r.content);
    REQUIRE(response.error);
    CHECK(*response.error == errc::busy);
    CHECK(error(*response.error, response.error_message).safe_to_retry());
    busy.insert(id_of(r));
  }
  CHECK(busy == std::set<std::uint64_t>{5, 6, 7, 8, 9});
  REQUIRE(wait_until([&] { return handlers.started == 4; }));
  p.write(cancel_frame(3));
  REQUIRE(wait_until([&] { return handlers.aborted == 1; }));
  CHECK(handlers.started == 4);  // the busy ones never ran
}

TEST_CASE("a stopping host sends going-away, answers what it read and refuses what came after",
          "[integration][host_session][drain]") {
  host_options o = host_fixture::loopback();
  o.shutdown_timeout = 60s;
  held_requests held;
  host_fixture f(2, o);
  held.add_to(f.server);
  add_echo(f.server);
  const auto at = f.start();
  raw_peer p(at);
  p.write(tagged(1, "echo", 1, feature::all));
  CHECK(split(p.read_frame()).header.contains("features"));
  p.write(tagged(2, "hold", 2) + tagged(3, "hold", 3));
  REQUIRE(wait_until([&] { return held.runs == 2; }));

  auto stopped = asio::co_spawn(f.pool.get_executor(), f.server.async_stop(), asio::use_future);
  const auto notice = split(p.read_frame());
  CHECK(notice.header.at("control") == "going-away");
  CHECK(notice.header.at("last-request-id") == 3);
  CHECK(notice.content.empty());

  // Written after the notice: answered shutting_down, not run.
  p.write(tagged(4, "hold", 4));
  const auto late = split(p.read_frame());
  CHECK(id_of(late) == 4);
  const auto refusal = decode_response(late.content);
  REQUIRE(refusal.error);
  CHECK(*refusal.error == errc::shutting_down);
  CHECK(held.runs == 2);

  held.release = true;
  std::set<std::uint64_t> answered;
  for (int i = 0; i < 2; ++i) {
    const auto r = split(p.read_frame());
    CHECK(decode_response(r.content).result == static_cast<std::int64_t>(id_of(r)));
    answered.insert(id_of(r));
  }
  CHECK(answered == std::set<std::uint64_t>{2, 3});
  CHECK(p.closed_by_peer());
  REQUIRE(stopped.wait_for(20s) == std::future_status::ready);
  stopped.get();
  CHECK(held.runs == 2);
}

TEST_CASE("hostile extension frames: unknown cancels and kinds are ignored, bad features close",
          "[integration][host_session][hostile]") {
  echo_host f;
  SECTION("a cancel for an unknown id") {
    raw_peer p(f.at, peer_timeout);
    p.write(tagged(1, "echo", 1, feature::all));
    (void)p.read_frame();
    p.write(cancel_frame(42) + cancel_frame(1) + tagged(2, "echo", 2));
    const auto r = split(p.read_frame());
    CHECK(id_of(r) == 2);
  }
  SECTION("a control frame of a kind the host does not know") {
    raw_peer p(f.at, peer_timeout);
    p.write(raw_frame(R"({"byteorder": "little", "content-type": "text/json", )"
                      R"("content-encoding": "utf-8", "content-length": 0, "keep-alive": true, )"
                      R"("control": "self-destruct", "request-id": 1})") +
            tagged(1, "echo", "after"));
    const auto r = split(p.read_frame());
    CHECK(id_of(r) == 1);
    CHECK(decode_response(r.content).result == "after");
  }
  SECTION("malformed features close that connection only") {
    raw_peer other(f.at, peer_timeout);
    other.write(tagged(1, "echo", 1));
    (void)other.read_frame();
    raw_peer p(f.at, peer_timeout);
    p.write(raw_frame(R"({"byteorder": "little", "content-type": "text/json", )"
                      R"("content-encoding": "utf-8", "content-length": 0, "keep-alive": true, )"
                      R"("request-id": 1, "features": "cancel"})"));
    CHECK(closed_without_answer(p));
    other.write(tagged(2, "echo", 2));
    CHECK(id_of(split(other.read_frame())) == 2);
  }
  SECTION("a cancel on a connection that does not stay open") {
    raw_peer p(f.at, peer_timeout);
    frame_header h;
    h.request_id = 1;
    p.write(cancel_frame(1, /*keep_alive=*/false) + encode_frame(h, encode_request("echo", "one")));
    const auto r = split(p.read_frame());
    CHECK(id_of(r) == 1);
    CHECK(decode_response(r.content).result == "one");
    CHECK_FALSE(r.header.contains("keep-alive"));
    CHECK(p.closed_by_peer());
  }
  require_alive(f);
}

// Issue 16's first finding, end to end: `send || timer` on a keep-alive
// comet::client ends the host's coroutine handler too, not only the send.
TEST_CASE("a keep-alive send raced by a timer cancels the host's handler through a cancel frame",
          "[integration][host_session]") {
  host_fixture f;
  std::atomic<int> started{0}, aborted{0}, finished{0};
  f.server.on("slow", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    ++started;
    asio::steady_timer t(co_await asio::this_coro::executor, 5s);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    ++(ec == asio::error::operation_aborted ? aborted : finished);
    co_return v;
  });
  add_echo(f.server);
  const auto at = f.start();
  io_pool pool(1);
  client c(pool, at, {.keep_alive = true, .max_connections = 1});
  CHECK(c.send_sync("echo", 0) == 0);  // the first answer says the host takes cancel frames
  const auto outcome = run(pool.get_executor(), [&]() -> asio::awaitable<std::size_t> {
    using namespace boost::asio::experimental::awaitable_operators;
    asio::steady_timer timer(co_await asio::this_coro::executor, 300ms);
    auto raced = co_await (c.send("slow", 1) || timer.async_wait(asio::use_awaitable));
    co_return raced.index();
  });
  CHECK(outcome == 1);  // the timer won
  REQUIRE(wait_until([&] { return aborted == 1; }, 4s));  // well before the handler's 5 s
  CHECK(started == 1);
  CHECK(finished == 0);
  // The connection goes on serving.
  for (int i = 1; i <= 3; ++i) CHECK(c.send_sync("echo", i) == i);
  CHECK(f.server.stats().connections_accepted == 1);
}
