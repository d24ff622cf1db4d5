// Streams and publish/subscribe end to end (issue 17): the real client's
// stream_reader and subscription against the real host's stream handlers
// and publish(), over loopback. The wire rules are tested on each side
// alone (test_host_session.cpp, test_host_streams.cpp, test_multiplexer.cpp,
// test_client_streams.cpp).
#include <comet/comet.hpp>

#include "support.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <atomic>
#include <thread>

using namespace comet;
using namespace comet::test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

struct count_request {
  int n = 0;
  int pause_ms = 0;  // between writes
};
BOOST_DESCRIBE_STRUCT(count_request, (), (n, pause_ms))

struct counted {
  int i = 0;
};
BOOST_DESCRIBE_STRUCT(counted, (), (i))

// A host with stream actions: "count" writes {"i": 0..n-1}; "forever"
// writes until cancelled, noting what it saw; "fail_after" writes n items
// then throws.
struct stream_host : host_fixture {
  explicit stream_host(host_options o = loopback()) : host_fixture(2, std::move(o)) {
    server.on_stream("count", [this](const count_request& r, stream_writer& out) -> asio::awaitable<void> {
      asio::steady_timer t(co_await asio::this_coro::executor);
      for (int i = 0; i < r.n; ++i) {
        ++attempted;
        co_await out.write(counted{i});
        ++written;
        if (r.pause_ms > 0) {
          t.expires_after(std::chrono::milliseconds(r.pause_ms));
          co_await t.async_wait(asio::use_awaitable);
        }
      }
    });
    server.on_stream("forever", [this](const json::value&, stream_writer& out) -> asio::awaitable<void> {
      ++running;
      try {
        asio::steady_timer t(co_await asio::this_coro::executor);
        for (int i = 0; i < 100000; ++i) {  // bounded: 100 s at most
          co_await out.write(json::value(i));
          ++written;
          t.expires_after(1ms);
          co_await t.async_wait(asio::use_awaitable);
        }
      } catch (const comet::error& e) {
        if (e.code() == errc::cancelled) ++saw_cancel;
        --running;
        throw;
      } catch (const boost::system::system_error&) {
        ++saw_cancel;  // a wait cancelled under it
        --running;
        throw;
      }
      --running;
    });
    server.on_stream("fail_after", [](const count_request& r, stream_writer& out) -> asio::awaitable<void> {
      for (int i = 0; i < r.n; ++i) co_await out.write(counted{i});
      if (r.pause_ms == 1) throw comet::error(errc::busy, "the instrument is busy");
      throw std::runtime_error("the scan head jammed");
    });
    server.on("echo", [](const std::string&, const json::value& v) { return v; });
    start();
  }
  std::atomic<int> attempted{0}, written{0}, running{0}, saw_cancel{0};
};

// Reads a whole stream of counted items; returns how many, checking order.
asio::awaitable<int> read_all(stream_reader<counted>& s) {
  int n = 0;
  while (std::optional<counted> item = co_await s.next()) {
    if (item->i != n) throw std::runtime_error("item " + std::to_string(item->i) + " at " + std::to_string(n));
    ++n;
  }
  co_return n;
}

client_options streaming(std::size_t credit = 256) {
  client_options o;
  o.stream_credit = credit;
  return o;
}

}  // namespace

TEST_CASE("streams of 0, 1 and 1,000 items arrive in order and end", "[integration][stream]") {
  stream_host h;
  // Whatever the client's keep_alive says.
  for (const bool keep_alive : {false, true}) {
    client_options o = streaming();
    o.keep_alive = keep_alive;
    client c = h.make_client(o);
    for (const int n : {0, 1, 1000}) {
      INFO("keep_alive " << keep_alive << ", " << n << " items");
      const int got = run(h.pool.get_executor(), [&]() -> asio::awaitable<int> {
        stream_reader<counted> s = co_await c.open_stream<counted>("count", count_request{n});
        co_return co_await read_all(s);
      });
      CHECK(got == n);
    }
    // The connection goes on serving requests.
    CHECK(c.send_sync("echo", 5) == 5);
  }
  CHECK(wait_until([&] { return h.server.stats().streams_open == 0; }));
}

TEST_CASE("a stream of 1,000,000 items arrives whole", "[integration][stream][.large]") {
  stream_host h;
  client c = h.make_client();
  const int got = run(
      h.pool.get_executor(),
      [&]() -> asio::awaitable<int> {
        stream_reader<counted> s = co_await c.open_stream<counted>("count", count_request{1000000});
        co_return co_await read_all(s);
      },
      120s);
  CHECK(got == 1000000);
}

TEST_CASE("a reader that stops reading stalls the producer at its credit", "[integration][stream]") {
  stream_host h;
  client c = h.make_client(streaming(8));
  std::optional<stream_reader<counted>> s;
  s.emplace(run(h.pool.get_executor(), [&]() -> asio::awaitable<stream_reader<counted>> {
    co_return co_await c.open_stream<counted>("count", count_request{100});
  }));
  // Eight writes complete on the reader's credit; the ninth waits for more.
  REQUIRE(wait_until([&] { return h.attempted == 9; }));
  CHECK(h.written == 8);
  // Reading grants more, and the rest arrives.
  const int got = run(h.pool.get_executor(), [&]() -> asio::awaitable<int> { co_return co_await read_all(*s); });
  CHECK(got == 100);
  CHECK(h.written == 100);
}

TEST_CASE("closing a stream or destroying its reader cancels the host's handler", "[integration][stream]") {
  stream_host h;
  client c = h.make_client(streaming(4));
  for (const bool destroy : {false, true}) {
    INFO((destroy ? "destroyed" : "closed"));
    const int cancels = h.saw_cancel;
    {
      std::optional<stream_reader<json::value>> s;
      s.emplace(run(h.pool.get_executor(), [&]() -> asio::awaitable<stream_reader<json::value>> {
        co_return co_await c.open_stream("forever", json::value(nullptr));
      }));
      for (int i = 0; i < 5; ++i) {
        const std::optional<json::value> item = s->next_sync();
        REQUIRE(item);
        CHECK(*item == i);
      }
      if (!destroy) {
        s->close();
        CHECK_FALSE(s->next_sync());  // closed: the end
      }
    }
    CHECK(wait_until([&] { return h.saw_cancel == cancels + 1 && h.running == 0; }));
  }
  CHECK(wait_until([&] { return h.server.stats().streams_open == 0; }));
  CHECK(c.send_sync("echo", 1) == 1);  // the connection serves on
}

TEST_CASE("a reader's client closed mid-stream cancels the host's handler", "[integration][stream]") {
  stream_host h;
  client c = h.make_client(streaming(4));
  std::optional<stream_reader<json::value>> s;
  s.emplace(run(h.pool.get_executor(), [&]() -> asio::awaitable<stream_reader<json::value>> {
    co_return co_await c.open_stream("forever", json::value(nullptr));
  }));
  REQUIRE(s->next_sync());
  c.close();  // its connections close under the stream
  CHECK(wait_until([&] { return h.saw_cancel == 1 && h.running == 0; }));
}

TEST_CASE("a host stopped mid-stream ends it with shutting_down at once", "[integration][stream]") {
  host_options o = host_fixture::loopback();
  o.shutdown_timeout = 20s;
  stream_host h(o);
  client c = h.make_client(streaming(4));
  std::optional<stream_reader<json::value>> s;
  s.emplace(run(h.pool.get_executor(), [&]() -> asio::awaitable<stream_reader<json::value>> {
    co_return co_await c.open_stream("forever", json::value(nullptr));
  }));
  REQUIRE(s->next_sync());
  const auto began = std::chrono::steady_clock::now();
  std::future<void> stopped = h.server.async_stop(asio::use_future);
  const auto e = error_thrown_by([&] {
    for (int i = 0; i < 100; ++i) s->next_sync();  // what was buffered, then the end
  });
  CHECK(e.code() == errc::shutting_down);
  // The stop waits for the handler, which is cancelled at the stop's start,
  // not for shutdown_timeout.
  REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
  CHECK(std::chrono::steady_clock::now() - began < 10s);
  CHECK(h.saw_cancel == 1);
}

TEST_CASE("a handler's exception ends its stream with that error", "[integration][stream]") {
  stream_host h;
  client c = h.make_client();
  for (const int code_kind : {1, 0}) {
    INFO((code_kind ? "comet::error" : "std::exception"));
    int got = 0;
    const auto e = error_thrown_by([&] {
      run(h.pool.get_executor(), [&]() -> asio::awaitable<void> {
        stream_reader<counted> s = co_await c.open_stream<counted>("fail_after", count_request{3, code_kind});
        while (co_await s.next()) ++got;
      });
    });
    CHECK(got == 3);
    if (code_kind) {
      CHECK(e.code() == errc::busy);
      CHECK(std::string(e.what()).find("the instrument is busy") != std::string::npos);
    } else {
      CHECK(e.code() == errc::handler_failed);
      CHECK(std::string(e.what()).find("the scan head jammed") != std::string::npos);
    }
  }
}

TEST_CASE("streams and requests keep to their own routes", "[integration][stream]") {
  stream_host h;
  client c = h.make_client({.keep_alive = true});
  // A plain request for a stream action, a stream of a plain action, a
  // stream of no action at all.
  CHECK(error_thrown_by([&] { c.send_sync("count", json::value(nullptr)); }).code() == errc::bad_request);
  const auto not_a_stream = error_thrown_by([&] {
    run(h.pool.get_executor(), [&]() -> asio::awaitable<void> { co_await c.open_stream("echo", 1); });
  });
  CHECK(not_a_stream.code() == errc::no_handler);
  const auto nothing = error_thrown_by([&] {
    run(h.pool.get_executor(), [&]() -> asio::awaitable<void> { co_await c.open_stream("nowhere", 1); });
  });
  CHECK(nothing.code() == errc::no_handler);
  // A request that does not fit the handler's type.
  const auto mistyped = error_thrown_by([&] {
    run(h.pool.get_executor(), [&]() -> asio::awaitable<void> {
      stream_reader<counted> s = co_await c.open_stream<counted>("count", "ten");
      co_await s.next();
    });
  });
  CHECK(mistyped.code() == errc::bad_request);
  // One route table.
  CHECK(error_thrown_by([&] { h.server.on("count", [](const json::value& v) { return v; }); }).code() ==
        errc::usage_error);
  CHECK(error_thrown_by([&] {
          h.server.on_stream("echo", [](const json::value&, stream_writer&) -> asio::awaitable<void> { co_return; });
        }).code() == errc::usage_error);
}

TEST_CASE("a partial cancellation of next ends that wait, a terminal one the stream", "[integration][stream]") {
  stream_host h;
  // One thread runs the client, the signal and the waits: a cancellation
  // signal is not thread-safe.
  io_pool pool(1);
  client c(pool, h.at, streaming(4));
  std::optional<stream_reader<counted>> s;
  s.emplace(run(pool.get_executor(), [&]() -> asio::awaitable<stream_reader<counted>> {
    co_return co_await c.open_stream<counted>("count", count_request{3, 300});
  }));
  CHECK(s->next_sync()->i == 0);
  // The next item is 300 ms away: a partial cancellation ends the wait.
  asio::cancellation_signal signal;
  std::future<std::optional<counted>> waiting =
      s->async_next(asio::bind_cancellation_slot(signal.slot(), asio::use_future));
  // A signal emitted before the spawned wait has begun finds nothing to
  // cancel yet: it is emitted until the wait ends (long before the item).
  for (int i = 0; i < 500 && waiting.wait_for(0s) != std::future_status::ready; ++i) {
    asio::post(pool.get_executor(), [&] { signal.emit(asio::cancellation_type::partial); });
    waiting.wait_for(2ms);
  }
  REQUIRE(waiting.wait_for(5s) == std::future_status::ready);
  CHECK(error_thrown_by([&] { waiting.get(); }).code() == errc::cancelled);
  // The stream goes on.
  CHECK(s->next_sync()->i == 1);
  // A terminal one (the awaitable operators' loser) ends it on the host.
  const bool timer_won = run(pool.get_executor(), [&]() -> asio::awaitable<bool> {
    asio::steady_timer t(co_await asio::this_coro::executor, 20ms);
    auto winner = co_await (s->next() || t.async_wait(asio::use_awaitable));
    co_return winner.index() == 1;
  });
  CHECK(timer_won);
  CHECK_FALSE(s->next_sync());
  CHECK(wait_until([&] { return h.server.stats().streams_open == 0; }));
}

TEST_CASE("next_sync refuses a thread its client's executor needs", "[integration][stream]") {
  stream_host h;
  io_pool pool(1);
  client c(pool, h.at);
  std::optional<stream_reader<counted>> s;
  s.emplace(run(pool.get_executor(), [&]() -> asio::awaitable<stream_reader<counted>> {
    co_return co_await c.open_stream<counted>("count", count_request{2});
  }));
  std::promise<std::error_code> refused;
  asio::post(pool.get_executor(), [&] {
    try {
      s->next_sync();
      refused.set_value({});
    } catch (const comet::error& e) {
      refused.set_value(e.code());
    }
  });
  CHECK(refused.get_future().get() == errc::would_deadlock);
  CHECK(s->next_sync()->i == 0);  // from this thread it reads on
}

TEST_CASE("a connection's streams are bounded by max_streams", "[integration][stream]") {
  host_options o = host_fixture::loopback();
  o.max_streams = 2;
  stream_host h(o);
  client c = h.make_client({.keep_alive = true, .max_connections = 1});
  std::vector<stream_reader<json::value>> open;
  for (int i = 0; i < 2; ++i)
    open.push_back(run(h.pool.get_executor(), [&]() -> asio::awaitable<stream_reader<json::value>> {
      co_return co_await c.open_stream("forever", json::value(nullptr));
    }));
  const auto e = error_thrown_by([&] {
    run(h.pool.get_executor(), [&]() -> asio::awaitable<void> { co_await c.open_stream("forever", 0); });
  });
  CHECK(e.code() == errc::too_many_streams);
  CHECK(e.safe_to_retry());
  CHECK(h.server.stats().streams_open == 2);
  open.clear();  // closes both
  CHECK(wait_until([&] { return h.server.stats().streams_open == 0; }));
  auto again = run(h.pool.get_executor(), [&]() -> asio::awaitable<stream_reader<counted>> {
    co_return co_await c.open_stream<counted>("count", count_request{1});
  });
  CHECK(again.next_sync()->i == 0);
}

TEST_CASE("a connection with an open stream is not dropped as idle", "[integration][stream]") {
  host_options o = host_fixture::loopback();
  o.idle_timeout = 300ms;
  stream_host h(o);
  log_capture logs;
  client c = h.make_client(streaming(4));
  std::optional<stream_reader<counted>> s;
  s.emplace(run(h.pool.get_executor(), [&]() -> asio::awaitable<stream_reader<counted>> {
    co_return co_await c.open_stream<counted>("count", count_request{20});
  }));
  CHECK(s->next_sync()->i == 0);
  // A silent peer beside it is dropped at idle_timeout; the stream's is not.
  raw_peer idle(h.at);
  REQUIRE(logs.wait_for("was idle"));
  // The host logs before it closes the connection and counts it closed.
  CHECK(wait_until([&] { return h.server.stats().connections_open == 1; }));
  int n = 1;
  while (std::optional<counted> item = s->next_sync()) CHECK(item->i == n++);
  CHECK(n == 20);
}

TEST_CASE("a subscription gets what is published after it, numbered", "[integration][pubsub]") {
  stream_host h;
  client c = h.make_client();
  subscription<double> sub = run(h.pool.get_executor(), [&]() -> asio::awaitable<subscription<double>> {
    co_return co_await c.subscribe<double>("temperature");
  });
  CHECK(h.server.stats().subscriptions_open == 1);
  const std::uint64_t first = h.server.publish("temperature", 20.5);
  h.server.publish("humidity", 0.4);  // another topic
  h.server.publish("temperature", 21.0);
  std::optional<published<double>> a = sub.next_sync();
  std::optional<published<double>> b = sub.next_sync();
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->sequence == first);
  CHECK(a->value == 20.5);
  CHECK(b->sequence == first + 1);
  CHECK(b->value == 21.0);
  CHECK(sub.dropped() == 0);
  sub.close();
  CHECK(wait_until([&] { return h.server.stats().subscriptions_open == 0; }));
  CHECK(h.server.stats().items_published == 3);
}

TEST_CASE("1,000 subscribers to one topic each get every item", "[integration][pubsub][.large]") {
  stream_host h;
  constexpr int clients = 10, per_client = 100, items = 50;
  std::vector<client> cs;
  for (int i = 0; i < clients; ++i) cs.push_back(h.make_client());
  std::vector<subscription<int>> subs;
  for (auto& c : cs)
    for (int i = 0; i < per_client; ++i)
      subs.push_back(run(h.pool.get_executor(), [&]() -> asio::awaitable<subscription<int>> {
        co_return co_await c.subscribe<int>("fan");
      }));
  CHECK(h.server.stats().subscriptions_open == clients * per_client);
  for (int i = 0; i < items; ++i) h.server.publish("fan", i);
  std::atomic<int> complete{0};
  run(h.pool.get_executor(), [&]() -> asio::awaitable<void> {
    for (auto& s : subs) {
      std::uint64_t previous = 0;
      for (int i = 0; i < items; ++i) {
        std::optional<published<int>> p = co_await s.next();
        if (!p || p->value != i || (previous && p->sequence != previous + 1)) co_return;
        previous = p->sequence;
      }
      ++complete;
    }
  }, 60s);
  CHECK(complete == clients * per_client);
}

TEST_CASE("a subscriber that never reads does not slow the others", "[integration][pubsub]") {
  stream_host h;
  client c = h.make_client(streaming(16));
  subscribe_options stalled_end{.queue = 100};
  subscribe_options stalled_drop{.overflow = comet::drop_oldest, .queue = 100};
  auto subscribe = [&](subscribe_options o) {
    return run(h.pool.get_executor(), [&]() -> asio::awaitable<subscription<int>> {
      co_return co_await c.subscribe<int>("load", o);
    });
  };
  subscription<int> ends = subscribe(stalled_end);
  subscription<int> drops = subscribe(stalled_drop);
  subscription<int> reader = subscribe({});
  constexpr int items = 2000;
  for (int i = 0; i < items; ++i) h.server.publish("load", i);
  for (int i = 0; i < items; ++i) {
    std::optional<published<int>> p = reader.next_sync();
    REQUIRE(p);
    REQUIRE(p->value == i);
  }
  CHECK(reader.dropped() == 0);
  // The one that ends: what it had credit for, then slow_consumer.
  const auto e = error_thrown_by([&] {
    for (int i = 0; i <= items; ++i) ends.next_sync();
  });
  CHECK(e.code() == errc::slow_consumer);
  // The one that drops: the oldest went, the newest are there, counted.
  int last = -1, got = 0;
  while (last != items - 1) {
    std::optional<published<int>> p = drops.next_sync();
    REQUIRE(p);
    CHECK(p->value > last);
    last = p->value;
    ++got;
  }
  CHECK(got <= 16 + 100 + 1);
  CHECK(drops.dropped() == static_cast<std::uint64_t>(items - got));
  CHECK(h.server.stats().items_dropped >= drops.dropped());
}

TEST_CASE("a host stop ends subscriptions with shutting_down", "[integration][pubsub]") {
  stream_host h;
  client c = h.make_client();
  subscription<int> sub = run(h.pool.get_executor(), [&]() -> asio::awaitable<subscription<int>> {
    co_return co_await c.subscribe<int>("t");
  });
  h.server.publish("t", 1);
  CHECK(sub.next_sync()->value == 1);
  std::future<void> stopped = h.server.async_stop(asio::use_future);
  CHECK(error_thrown_by([&] { sub.next_sync(); }).code() == errc::shutting_down);
  CHECK(stopped.wait_for(10s) == std::future_status::ready);
}
