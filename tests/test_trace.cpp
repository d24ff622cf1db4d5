// W3C traceparent on requests (docs/api.md, "Tracing"; docs/protocol.md,
// "Announced extensions"): the check, the header key on the wire, what a
// handler reads, and what the sends it makes carry on, over real loopback
// sockets against comet-net hosts and hosts written by hand.
#include <comet/comet.hpp>

#include "fake_host.hpp"
#include "trace.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <mutex>
#include <thread>

using namespace comet;
using namespace comet::test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

constexpr const char* trace_a = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
constexpr const char* trace_b = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";

send_options traced_by(std::string_view traceparent) {
  send_options o;
  o.traceparent = std::string(traceparent);
  return o;
}

client_options keep_alive() {
  client_options o;
  o.keep_alive = true;
  return o;
}

// Registers "who": the answer is the request's traceparent ("" for none).
void add_who(host& h) {
  h.on("who", [](const std::string&, const json::value&, const request_context& context) {
    return json::value(context.traceparent);
  });
}

// A keep-alive client of `f`'s host that has had its first answer: the
// pool knows the host lists "trace", so every later request may carry one.
client warm_client(host_fixture& f) {
  client c = f.make_client(keep_alive());
  CHECK(c.send_sync("who", 0) == "");
  return c;
}

// A request frame with a "traceparent" key, written by hand.
std::string request_with(std::string_view traceparent, bool keep = false,
                         std::optional<std::uint64_t> id = std::nullopt) {
  frame_header h;
  h.keep_alive = keep;
  h.request_id = id;
  h.traceparent = std::string(traceparent);
  return encode_frame(h, encode_request("who", 0));
}

// An answer as a keep-alive host that speaks `features` writes its first one.
std::string answer(std::uint64_t id, const json::value& result,
                   std::optional<std::uint32_t> features = std::nullopt) {
  frame_header h;
  h.keep_alive = true;
  h.request_id = id;
  h.features = features;
  if (features) h.window = 64;
  return encode_frame(h, encode_response(result));
}

}  // namespace

TEST_CASE("a traceparent is checked as W3C Trace Context level 1 says", "[unit][trace]") {
  using comet::detail::valid_traceparent;
  CHECK(valid_traceparent(trace_a) == trace_a);
  CHECK(valid_traceparent(trace_b) == trace_b);
  CHECK(valid_traceparent("") == "");
  CHECK(valid_traceparent(std::string(trace_a).substr(0, 54)) == "");  // too short
  CHECK(valid_traceparent(std::string(trace_a) + "-x") == "");  // version 00 is exactly 55
  CHECK(valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == "");
  CHECK(valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01") == "");
  CHECK(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01") == "");
  CHECK(valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01") == "");
  CHECK(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g") == "");
  CHECK(valid_traceparent("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == "");
  CHECK(valid_traceparent("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == "");
  // A later version may go on after a '-': its first 55 characters are kept.
  const std::string later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next";
  CHECK(valid_traceparent(later) == later.substr(0, 55));
  CHECK(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x") == "");
  CHECK(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") ==
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

TEST_CASE("traceparent is written last, after auth-token, and read back", "[unit][trace][codec]") {
  frame_header h;
  h.keep_alive = true;
  h.request_id = 3;
  h.auth_token = "secret";
  h.traceparent = std::string(trace_a);
  const std::string frame = encode_frame(h, encode_request("who", 0));
  const std::string header = frame.substr(2, frame.find('}') - 1);
  CHECK_THAT(header, Catch::EndsWith(", \"auth-token\": \"secret\", \"traceparent\": \"" +
                                     std::string(trace_a) + "\"}"));
  CHECK(header_of(frame).traceparent == trace_a);
  CHECK(header_of(frame).auth_token == "secret");
  // Read in any order, and as it is: the host checks it.
  std::string why;
  const auto first = parse_frame_header(
      R"({"traceparent": "not one", "byteorder": "little", "content-type": "text/json", )"
      R"("content-encoding": "utf-8", "content-length": 0})",
      why);
  REQUIRE(first);
  CHECK(first->traceparent == "not one");
  const auto wrong = parse_frame_header(
      R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", )"
      R"("content-length": 0, "traceparent": 7})",
      why);
  CHECK_FALSE(wrong);
  CHECK_THAT(why, Catch::Contains("\"traceparent\" is not a string"));
}

TEST_CASE("a keep-alive client's send_options traceparent reaches the handler",
          "[integration][trace]") {
  host_fixture f;
  add_who(f.server);
  f.start();
  client c = f.make_client(keep_alive());
  // The first request to a host the client never heard from carries none:
  // until its answer, the host may be a COMET host.
  CHECK(c.send_sync("who", 0, traced_by(trace_a)) == "");
  CHECK(c.send_sync("who", 0, traced_by(trace_a)) == trace_a);
  CHECK(run(f.pool.get_executor(), [&]() -> asio::awaitable<json::value> {
          const send_options options = traced_by(trace_b);
          co_return co_await c.send("who", 0, options);
        }) == trace_b);
  CHECK(c.send_sync("who", 0) == "");
  CHECK(c.send_sync("who", 0, traced_by("")) == "");
  // async_send and the typed send take it too.
  auto future = c.async_send("who", 0, traced_by(trace_a), asio::use_future);
  CHECK(future.get() == trace_a);
  CHECK(c.send_sync<std::string>("who", 0, traced_by(trace_b)) == trace_b);
}

TEST_CASE("a traceparent in send_options that is not valid throws usage_error",
          "[integration][trace]") {
  host_fixture f;
  add_who(f.server);
  f.server.on_stream("scan", [](const json::value&, stream_writer& out) -> asio::awaitable<void> {
    co_await out.write(1);
  });
  f.start();
  client c = warm_client(f);
  for (const std::string& bad : {std::string("nope"), std::string(trace_a) + "-01",
                                std::string("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01")}) {
    const auto e = error_thrown_by([&] { c.send_sync("who", 0, traced_by(bad)); });
    CHECK(e.code() == errc::usage_error);
    CHECK_THAT(e.what(), Catch::Contains("is not a W3C traceparent") &&
                             Catch::Contains("00-<32 lowercase hex trace-id>-<16 lowercase hex parent-id>"));
  }
  const auto e = error_thrown_by([&] {
    run(f.pool.get_executor(), [&]() -> asio::awaitable<void> {
      const send_options options = traced_by("nope");
      co_await c.open_stream("scan", 0, options);
    });
  });
  CHECK(e.code() == errc::usage_error);
  CHECK(f.server.stats().requests_served == 1);  // the warm-up alone: nothing else was sent
}

TEST_CASE("the host reads traceparent from any request, ignores one that is not valid and never "
          "echoes it",
          "[integration][trace]") {
  host_fixture f;
  add_who(f.server);
  f.start();
  const auto ask = [&](const std::string& frame) {
    raw_peer p(f.at);
    p.write(frame);
    return split(p.read_frame());
  };
  // A request of its own connection, as COMET's client writes them.
  const auto valid = ask(request_with(trace_a));
  CHECK_FALSE(valid.header.contains("traceparent"));
  CHECK(decode_response(valid.content).result == trace_a);
  for (const std::string& bad :
       {std::string("nope"), std::string(trace_a) + "-01", std::string(std::string(trace_a).substr(0, 54)),
        std::string("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        std::string("00-00000000000000000000000000000000-00f067aa0ba902b7-01")}) {
    const auto ignored = ask(request_with(bad));
    CHECK(decode_response(ignored.content).result == "");
    CHECK_FALSE(decode_response(ignored.content).error);
  }
  const std::string later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
  CHECK(decode_response(ask(request_with(later)).content).result == json::value(later.substr(0, 55)));
  // A tagged keep-alive one; the next request on the connection has none.
  raw_peer p(f.at);
  p.write(request_with(trace_b, true, 1));
  const auto tagged_answer = split(p.read_frame());
  CHECK_FALSE(tagged_answer.header.contains("traceparent"));
  CHECK(decode_response(tagged_answer.content).result == trace_b);
  p.write(tagged(2, "who", 0));
  CHECK(decode_response(split(p.read_frame()).content).result == "");
  CHECK(f.server.stats().error_responses == 0);
}

// A relay: its coroutine handler sends on to `upstream` twice, with a
// suspension between, then with a traceparent of its own and with none.
TEST_CASE("a coroutine handler's sends carry its request's traceparent across suspensions",
          "[integration][trace]") {
  // One thread: the relay's sends run in its handler's coroutine (no hop);
  // several: on the client's strand.
  std::size_t threads = 2;
  SECTION("on a pool of two threads") {}
  SECTION("on a pool of one thread") { threads = 1; }

  host_fixture upstream;
  add_who(upstream.server);
  upstream.start();

  io_pool pool(threads);
  client to_upstream(pool, upstream.at, keep_alive());
  CHECK(to_upstream.send_sync("who", 0) == "");  // its pool learns that upstream lists "trace"
  host relay(pool, host_fixture::loopback());
  add_who(relay);
  relay.on("relay", [&](const std::string&, const json::value&,
                        const request_context& context) -> asio::awaitable<json::value> {
    json::value first = co_await to_upstream.send("who", 0);
    asio::steady_timer pause(co_await asio::this_coro::executor, 1ms);
    co_await pause.async_wait(asio::use_awaitable);
    json::value after_pause = co_await to_upstream.send("who", 0);
    const send_options child = traced_by(trace_b);  // a span of its own
    json::value own = co_await to_upstream.send("who", 0, child);
    const send_options untraced = traced_by("");
    json::value none = co_await to_upstream.send("who", 0, untraced);
    co_return json::array{first, after_pause, own, none, json::value(context.traceparent)};
  });
  const endpoint at = relay.start();
  client c(pool, at, keep_alive());
  CHECK(c.send_sync("who", 0) == "");

  CHECK(c.send_sync("relay", 0, traced_by(trace_a)) == json::array{trace_a, trace_a, trace_b, "", trace_a});
  // A request without one sees none, whatever ran on the thread before.
  CHECK(c.send_sync("relay", 0) == json::array{"", "", trace_b, "", ""});
  // Tagged requests side by side, each with its own.
  const auto both = run(pool.get_executor(), [&]() -> asio::awaitable<json::array> {
    auto one = c.async_send("relay", 0, traced_by(trace_a), asio::use_awaitable);
    auto two = c.async_send("relay", 0, traced_by(trace_b), asio::use_awaitable);
    auto [a, b] = co_await (std::move(one) && std::move(two));
    co_return json::array{a, b};
  });
  CHECK(both.at(0) == json::array{trace_a, trace_a, trace_b, "", trace_a});
  CHECK(both.at(1) == json::array{trace_b, trace_b, trace_b, "", trace_b});
}

TEST_CASE("a plain handler's post carries its request's traceparent", "[integration][trace]") {
  std::mutex mutex;
  std::vector<std::string> recorded;
  host_fixture upstream;
  add_who(upstream.server);
  upstream.server.on("record", [&](const std::string&, const json::value&, const request_context& context) {
    std::lock_guard lock(mutex);
    recorded.push_back(context.traceparent);
    return true;
  });
  upstream.start();
  const auto recorded_count = [&] {
    std::lock_guard lock(mutex);
    return recorded.size();
  };

  host_fixture relay;
  client to_upstream(relay.pool.get_executor(), upstream.at, keep_alive());
  CHECK(to_upstream.send_sync("who", 0) == "");
  relay.server.on("notify", [&](const std::string&, const json::value&) {
    to_upstream.post("record", 1);
    return "posted";
  });
  add_who(relay.server);
  relay.start();
  client c = warm_client(relay);

  CHECK(c.send_sync("notify", 0, traced_by(trace_a)) == "posted");
  REQUIRE(wait_until([&] { return recorded_count() == 1; }));
  CHECK(c.send_sync("notify", 0) == "posted");
  REQUIRE(wait_until([&] { return recorded_count() == 2; }));
  std::lock_guard lock(mutex);
  CHECK(recorded == std::vector<std::string>{std::string(trace_a), ""});
}

TEST_CASE("a stream's opening request carries the traceparent, and its handler's sends carry it on",
          "[integration][trace]") {
  host_fixture upstream;
  add_who(upstream.server);
  upstream.start();

  host_fixture f;
  client to_upstream(f.pool.get_executor(), upstream.at, keep_alive());
  CHECK(to_upstream.send_sync("who", 0) == "");
  f.server.on_stream("scan", [&](const json::value&, stream_writer& out,
                                 const request_context& context) -> asio::awaitable<void> {
    json::value mine(context.traceparent);
    co_await out.write(std::move(mine));
    json::value upstream_saw = co_await to_upstream.send("who", 0);
    co_await out.write(std::move(upstream_saw));
  });
  add_who(f.server);
  f.start();
  client c = warm_client(f);
  const auto items_of = [&](send_options options) {
    return run(f.pool.get_executor(), [&]() -> asio::awaitable<std::vector<std::string>> {
      std::vector<std::string> seen;
      auto s = co_await c.open_stream<std::string>("scan", 0, options);
      while (auto item = co_await s.next()) seen.push_back(*item);
      co_return seen;
    });
  };
  CHECK(items_of(traced_by(trace_a)) == std::vector<std::string>{std::string(trace_a), std::string(trace_a)});
  CHECK(items_of({}) == std::vector<std::string>{"", ""});
}

TEST_CASE("a COMET host never sees a traceparent", "[integration][trace]") {
  fake_host host;
  std::vector<std::string> frames;
  std::string failure;
  std::thread script([&] {
    try {
      // Each request on a connection of its own, answered without
      // keep-alive, as a COMET host does.
      for (int i = 0; i < 3; ++i) {
        raw_peer conn = host.next();
        frames.push_back(conn.read_frame());
        conn.write(encode_frame({}, encode_response("ok")));
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client one_shot(pool.get_executor(), host.at);
  CHECK(one_shot.send_sync("who", 0, traced_by(trace_a)) == "ok");
  // A keep-alive client learns from the first answer that it is a COMET host.
  client pooled(pool.get_executor(), host.at, keep_alive());
  CHECK(pooled.send_sync("who", 0, traced_by(trace_a)) == "ok");
  CHECK(pooled.send_sync("who", 0, traced_by(trace_a)) == "ok");
  script.join();
  REQUIRE(failure.empty());
  REQUIRE(frames.size() == 3);
  for (const auto& frame : frames) CHECK_FALSE(split(frame).header.contains("traceparent"));
}

TEST_CASE("a keep-alive client sends no traceparent to a host that did not list trace",
          "[integration][trace]") {
  fake_host host;
  std::vector<std::string> frames;
  std::string failure;
  std::thread script([&] {
    try {
      raw_peer conn = host.next();
      for (int i = 0; i < 3; ++i) {
        frames.push_back(conn.read_frame());
        const auto features = i == 0 ? std::optional<std::uint32_t>(feature::cancel | feature::going_away |
                                                                     feature::stream)
                                     : std::nullopt;
        conn.write(answer(id_of(frames.back()), "ok", features));
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at, keep_alive());
  for (int i = 0; i < 3; ++i) CHECK(c.send_sync("who", 0, traced_by(trace_a)) == "ok");
  script.join();
  REQUIRE(failure.empty());
  REQUIRE(frames.size() == 3);
  for (const auto& frame : frames) CHECK_FALSE(split(frame).header.contains("traceparent"));
}

// A host that lists "trace": the first request to it carries none (it may
// be a COMET host); later ones do, last in the header; and so does the
// first request of a new connection once the pool knows.
TEST_CASE("a keep-alive client sends traceparent to a host that listed trace, and on its new "
          "connections",
          "[integration][trace]") {
  fake_host host;
  std::vector<std::string> frames;
  std::string failure;
  std::thread script([&] {
    try {
      raw_peer conn = host.next();
      frames.push_back(conn.read_frame());
      conn.write(answer(id_of(frames.back()), "ok", feature::all));
      frames.push_back(conn.read_frame());
      // The host goes away after this one: the next send takes a new connection.
      frame_header notice;
      notice.keep_alive = true;
      notice.kind = frame_kind::going_away;
      notice.last_request_id = id_of(frames.back());
      conn.write(encode_frame(notice, {}) + answer(id_of(frames.back()), "ok"));
      raw_peer again = host.next();
      frames.push_back(again.read_frame());
      again.write(answer(id_of(frames.back()), "ok", feature::all));
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client_options o = keep_alive();
  o.auth_token = "secret";
  client c(pool.get_executor(), host.at, o);
  for (int i = 0; i < 3; ++i) CHECK(c.send_sync("who", 0, traced_by(trace_a)) == "ok");
  script.join();
  REQUIRE(failure.empty());
  REQUIRE(frames.size() == 3);
  CHECK_FALSE(split(frames[0]).header.contains("traceparent"));
  for (const auto& frame : {frames[1], frames[2]}) {
    const auto header = split(frame).header;
    CHECK(header.at("traceparent") == trace_a);
    // Last, after auth-token.
    CHECK(std::prev(header.end())->key() == "traceparent");
    CHECK(std::prev(header.end(), 2)->key() == "auth-token");
  }
  CHECK(split(frames[2]).header.contains("features"));  // a new connection's first request
}
