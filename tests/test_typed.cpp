// Typed handlers and sends, errors a handler chooses, and completion tokens
// (issue 11), over real sockets.
#include <comet/comet.hpp>

#include "support.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/describe/class.hpp>
#include <boost/describe/enum.hpp>

using namespace comet;
using namespace comet::test;

namespace lab {
struct point {
  double x = 0;
  double y = 0;
};
BOOST_DESCRIBE_STRUCT(point, (), (x, y))

struct reading {
  std::string sensor;
  std::vector<point> samples;
  std::optional<std::string> note;
};
BOOST_DESCRIBE_STRUCT(reading, (), (sensor, samples, note))

// Refuses keys it does not have.
struct exact_point {
  double x = 0;
  double y = 0;
};
BOOST_DESCRIBE_STRUCT(exact_point, (), (x, y))

BOOST_DEFINE_ENUM_CLASS(mode, idle, scan)
struct settings {
  lab::mode mode = lab::mode::idle;
  std::optional<int> gain;
};
BOOST_DESCRIBE_STRUCT(settings, (), (mode, gain))
}  // namespace lab

template <>
struct comet::strict_keys<lab::exact_point> : std::true_type {};

namespace {

// A host with typed handlers of every form.
struct typed_host : host_fixture {
  typed_host() {
    server.on("add", [](const lab::point& p) { return p.x + p.y; });
    server.on("scale", [this](lab::point p, const request_context& context) {
      p.x *= 2;
      p.y *= 2;
      std::lock_guard lock(seen_mutex);  // checked on the test's thread, not this pool thread
      scale_peer = context.peer.ip;
      return p;
    });
    server.on("product", [](lab::point p) -> asio::awaitable<double> { co_return p.x * p.y; });
    server.on("count", [](const lab::reading& r, const request_context&) -> asio::awaitable<int> {
      co_return static_cast<int>(r.samples.size());
    });
    server.on("length", [](const std::string& s) { return s.size(); });
    server.on("note", [](const lab::reading& r) { return r.note.value_or("(none)"); });
    server.on("exact_add", [](const lab::exact_point& p) { return p.x + p.y; });
    server.on("configure", [](const lab::settings& s) { return s; });
    add_echo(server);
    start();
  }
  std::string seen_scale_peer() {
    std::lock_guard lock(seen_mutex);
    return scale_peer;
  }

 private:
  std::mutex seen_mutex;
  std::string scale_peer;
};

}  // namespace

TEST_CASE("typed handlers take and return described structs", "[integration][typed]") {
  typed_host f;
  auto c = f.make_client();
  CHECK(c.send_sync<double>("add", lab::point{1.5, 2}) == 3.5);
  const auto scaled = c.send_sync<lab::point>("scale", lab::point{1, -2});
  CHECK(scaled.x == 2);
  CHECK(scaled.y == -4);
  CHECK(f.seen_scale_peer() == "127.0.0.1");
  CHECK(c.send_sync<double>("product", lab::point{3, 4}) == 12);
  const lab::reading r{"probe", {{1, 2}, {3, 4}}, std::nullopt};
  CHECK(c.send_sync<int>("count", r) == 2);
  CHECK(c.send_sync<std::size_t>("length", std::string("four")) == 4);
  // The untyped forms still work beside them.
  CHECK(c.send_sync("echo", json::value{{"k", 1}}) == json::value{{"k", 1}});
}

TEST_CASE("a value that does not convert is bad_request naming the field", "[integration][typed]") {
  typed_host f;
  auto c = f.make_client();
  struct mismatch {
    const char* action;
    json::value value;
    const char* message;
  };
  const mismatch cases[] = {
      {"add", json::value{{"x", "one"}, {"y", 2}}, "value.x: expected a number, got a string"},
      {"add", json::value{{"x", 1}}, "value.y: missing"},
      {"add", 7, "value: expected an object, got an integer"},
      {"count", json::value{{"sensor", "a"}, {"samples", {json::value{{"x", 1}, {"y", true}}}}},
       "value.samples[0].y: expected a number, got a boolean"},
      {"count", json::value{{"sensor", 5}, {"samples", json::array()}},
       "value.sensor: expected a string, got an integer"},
      {"length", json::array{1}, "value: expected a string, got an array"},
  };
  for (const auto& m : cases) {
    CAPTURE(m.action, json::serialize(m.value));
    const auto e = error_thrown_by([&] { c.send_sync(m.action, m.value); });
    CHECK(e.code() == errc::bad_request);
    CHECK_THAT(e.what(), Catch::Contains(m.message));
    CHECK_THAT(e.what(), !Catch::Contains("boost") && !Catch::Contains(".hpp"));
  }
  // The optional field may be absent or null, and must be a string otherwise.
  CHECK(c.send_sync("count", json::value{{"sensor", "a"}, {"samples", json::array()}, {"note", nullptr}}) == 0);
  const auto note = error_thrown_by([&] {
    c.send_sync("count", json::value{{"sensor", "a"}, {"samples", json::array()}, {"note", 1}});
  });
  CHECK_THAT(note.what(), Catch::Contains("value.note: expected a string, got an integer"));
}

TEST_CASE("a typed handler reads a value with extra keys or an optional left out, from any peer",
          "[integration][typed]") {
  typed_host f;
  // A newer peer, not a comet-net client: an extra key at each level, no "note".
  raw_peer newer(f.at);
  newer.write(request_frame("count", json::parse(R"({"sensor": "a", "firmware": "2.1",
      "samples": [{"x": 1, "y": 2, "z": 3}, {"x": 0, "y": 0, "weight": 1}]})")));
  const auto answer = decode_response(split(newer.read_frame()).content);
  CHECK_FALSE(answer.error);
  CHECK(answer.result == 2);

  auto c = f.make_client();
  CHECK(c.send_sync("note", json::parse(R"({"sensor": "a", "samples": [], "extra": true})")) == "(none)");
  CHECK(c.send_sync("note", json::parse(R"({"sensor": "a", "samples": [], "note": "hi"})")) == "hi");
  // An enum is read and written by name; an optional left out is written as null.
  CHECK(c.send_sync("configure", json::parse(R"({"mode": "scan"})")) ==
        json::parse(R"({"mode": "scan", "gain": null})"));
  const auto e = error_thrown_by([&] {
    c.send_sync("count", json::parse(R"({"sensor": "a", "samples": [{"x": 1}]})"));
  });
  CHECK(e.code() == errc::bad_request);
  CHECK_THAT(e.what(), Catch::Contains("value.samples[0].y: missing"));
  const auto warp = error_thrown_by([&] { c.send_sync("configure", json::parse(R"({"mode": "warp"})")); });
  CHECK(warp.code() == errc::bad_request);
  CHECK_THAT(warp.what(), Catch::Contains(R"(value.mode: "warp" is not one of "idle", "scan")"));
}

TEST_CASE("a strict_keys handler refuses an unknown key with bad_request naming it",
          "[integration][typed]") {
  typed_host f;
  auto c = f.make_client();
  const json::value exact{{"x", 1}, {"y", 2}};
  const json::value extra{{"x", 1}, {"y", 2}, {"z", 3}};
  CHECK(c.send_sync<double>("exact_add", exact) == 3);
  const auto e = error_thrown_by([&] { c.send_sync("exact_add", extra); });
  CHECK(e.code() == errc::bad_request);
  CHECK_THAT(e.what(), Catch::Contains(R"(value.z: unknown key; expected one of "x", "y")"));
  // The tolerant handler takes the same value.
  CHECK(c.send_sync<double>("add", extra) == 3);
}

TEST_CASE("a typed send reads an answer with extra keys or an optional left out",
          "[integration][typed]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  auto c = f.make_client();
  const json::value newer{{"x", 1}, {"y", 2}, {"colour", "red"}};
  const auto p = c.send_sync<lab::point>("echo", newer);
  CHECK(p.x == 1);
  CHECK(p.y == 2);
  const json::value python = json::parse(R"({"sensor": "b", "samples": [], "sent_by": "python"})");
  const auto r = run(f.pool.get_executor(), [&] { return c.send<lab::reading>("echo", python); });
  CHECK(r.sensor == "b");
  CHECK_FALSE(r.note);
  // Strict answers are refused as protocol_error, naming the key.
  const auto e = error_thrown_by([&] { c.send_sync<lab::exact_point>("echo", newer); });
  CHECK(e.code() == errc::protocol_error);
  CHECK_THAT(e.what(), Catch::Contains(R"(result.colour: unknown key; expected one of "x", "y")"));
}

TEST_CASE("a handler answers the comet::error it throws", "[integration][typed]") {
  host_fixture f;
  f.server.on("check", [](const lab::point& p) {
    if (p.x < 0) throw comet::error(errc::bad_request, "x must not be negative");
    return p.x;
  });
  f.server.on("internal", [](const std::string&, const json::value& v) {
    return v.as_string().size();  // throws Boost's system_error for a non-string
  });
  f.server.on("plain", [](const std::string&, const json::value&) -> json::value {
    throw std::runtime_error("the magnet quenched");
  });
  f.start();
  auto c = f.make_client();
  CHECK(c.send_sync<double>("check", lab::point{2, 0}) == 2);
  const auto chosen = error_thrown_by([&] { c.send_sync("check", lab::point{-1, 0}); });
  CHECK(chosen.code() == errc::bad_request);
  CHECK_THAT(chosen.what(), Catch::Contains("x must not be negative"));

  const auto internal = error_thrown_by([&] { c.send_sync("internal", 5); });
  CHECK(internal.code() == errc::handler_failed);
  CHECK_THAT(internal.what(), Catch::Contains("'internal'"));
  CHECK_THAT(internal.what(), !Catch::Contains("boost") && !Catch::Contains(".hpp"));

  const auto plain = error_thrown_by([&] { c.send_sync("plain", 1); });
  CHECK(plain.code() == errc::handler_failed);
  CHECK_THAT(plain.what(), Catch::Contains("the magnet quenched"));
}

TEST_CASE("a relay whose upstream is offline answers peer_offline", "[integration][typed]") {
  asio::io_context probe;
  tcp::acceptor a(probe, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const endpoint nowhere{"127.0.0.1", a.local_endpoint().port()};
  a.close();
  host_fixture f;
  client upstream(f.pool.get_executor(), nowhere, {.name = "Telegram", .connect_retries = 0});
  f.server.on("relay", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    co_return co_await upstream.send("TelegramBot", v);
  });
  f.start();
  auto c = f.make_client();
  const auto e = error_thrown_by([&] { c.send_sync("relay", "hello"); });
  CHECK(e.code() == errc::peer_offline);
  CHECK_THAT(e.what(), Catch::Contains("cannot connect to Telegram"));
}

TEST_CASE("a typed send whose answer is another type is protocol_error naming the field",
          "[integration][typed]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  auto c = f.make_client({.name = "lab"});
  const auto e = error_thrown_by([&] { c.send_sync<int>("echo", std::string("text")); });
  CHECK(e.code() == errc::protocol_error);
  CHECK_THAT(e.what(), Catch::Contains("lab at") &&
                           Catch::Contains("result: expected an integer, got a string"));
  const auto nested = error_thrown_by([&] { c.send_sync<lab::point>("echo", json::value{{"x", 1}}); });
  CHECK_THAT(nested.what(), Catch::Contains("result.y: missing"));
  CHECK(run(f.pool.get_executor(), [&] { return c.send<lab::point>("echo", lab::point{1, 2}); }).y == 2);
}

TEST_CASE("async_send works with the usual completion tokens", "[integration][typed]") {
  host_fixture f;
  add_echo(f.server);
  f.server.on("sleep", sleep_then_echo);
  std::atomic<int> slow_started{0};
  f.server.on("slow", [&](const std::string& a, const json::value& v) {
    ++slow_started;
    return sleep_then_echo(a, v);
  });
  f.start();
  for (bool keep_alive : {false, true}) {
    CAPTURE(keep_alive);
    auto c = f.make_client({.keep_alive = keep_alive});

    // use_future, typed.
    CHECK(c.async_send<int>("echo", 41, asio::use_future).get() == 41);

    // A plain callback.
    std::promise<std::pair<std::exception_ptr, json::value>> called;
    c.async_send("echo", json::value("cb"), [&](std::exception_ptr e, json::value v) {
      called.set_value({e, std::move(v)});
    });
    auto [failure, value] = called.get_future().get();
    CHECK_FALSE(failure);
    CHECK(value == "cb");

    // deferred, as_tuple, use_awaitable and awaitable operators in a coroutine.
    using namespace asio::experimental::awaitable_operators;
    const auto results = run(f.pool.get_executor(), [&]() -> asio::awaitable<std::vector<json::value>> {
      std::vector<json::value> out;
      auto later = c.async_send("echo", json::value(1), asio::deferred);
      out.push_back(co_await std::move(later)(asio::use_awaitable));
      auto [e, v] = co_await c.async_send("echo", json::value(2), asio::as_tuple(asio::use_awaitable));
      CHECK_FALSE(e);
      out.push_back(v);
      auto both = co_await (c.async_send<int>("echo", 3, asio::use_awaitable) &&
                            c.async_send<int>("echo", 4, asio::use_awaitable));
      out.push_back(std::get<0>(both) + std::get<1>(both));
      asio::steady_timer timer(co_await asio::this_coro::executor, 200ms);
      auto first = co_await (c.async_send("sleep", json::value(5000), asio::use_awaitable) ||
                             timer.async_wait(asio::use_awaitable));
      out.push_back(static_cast<std::int64_t>(first.index()));
      co_return out;
    });
    CHECK(results == std::vector<json::value>{1, 2, 7, 1});

    // bind_cancellation_slot: cancelled, with its own code.
    // Emitted once the send is under way (before it starts, Asio ends the
    // coroutine without completing it).
    asio::cancellation_signal cancel;
    const int before = slow_started;
    auto slow = c.async_send("slow", json::value(5000),
                             asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
    REQUIRE(wait_until([&] { return slow_started == before + 1; }));
    asio::post(c.get_executor(), [&] { cancel.emit(asio::cancellation_type::terminal); });
    REQUIRE(slow.wait_for(5s) == std::future_status::ready);
    CHECK(error_thrown_by([&] { slow.get(); }).code() == errc::cancelled);

    // An error arrives as the exception.
    CHECK(error_thrown_by([&] { c.async_send("nothing", json::value(1), asio::use_future).get(); })
              .code() == errc::no_handler);
  }
}

TEST_CASE("a host's stop takes a completion token", "[integration][typed]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  CHECK(f.make_client().send_sync("echo", 1) == 1);
  f.server.async_stop(asio::use_future).get();
  CHECK_FALSE(f.server.running());
  CHECK(f.server.stats().connections_open == 0);
}

TEST_CASE("routing an action twice is refused, naming it", "[unit][typed]") {
  io_pool pool(1);
  host h(pool.get_executor(), host_fixture::loopback());
  h.on("echo", [](const std::string&, const json::value& v) { return v; });
  const auto e = error_thrown_by([&] { h.on("echo", [](const lab::point& p) { return p.x; }); });
  CHECK(e.code() == errc::usage_error);
  CHECK_THAT(e.what(), Catch::Contains("action 'echo' already has a handler"));
  h.start();
  CHECK(error_thrown_by([&] { h.on("late", [](int i) { return i; }); }).code() == errc::usage_error);
  CHECK(error_thrown_by([&] { h.start(); }).code() == errc::usage_error);
}

TEST_CASE("host_stats converts to JSON with value_from", "[integration][typed]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  CHECK(f.make_client().send_sync("echo", 1) == 1);
  REQUIRE(wait_until([&] { return f.server.stats().requests_served == 1; }));
  const json::value stats = json::value_from(f.server.stats());
  CHECK(stats.at("requests_served") == 1);
  CHECK(stats.at("error_responses") == 0);
  CHECK(stats.at("connections_accepted") == 1);
  CHECK(stats.at("bytes_received").as_uint64() > 0);
  CHECK(stats.at("errors_by_code").as_object().empty());
  CHECK(stats.at("latency_us").as_object().contains("p99"));
  CHECK(stats.at("uptime_seconds").as_double() > 0);
}
