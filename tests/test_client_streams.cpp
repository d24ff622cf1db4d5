// The client's side of docs/protocol.md's "Streams and subscriptions" over
// real loopback sockets, against hosts written by hand with raw frames
// (fake_host.hpp): items and their end, errors and refusals, a COMET host,
// credit as the reader consumes, close and cancellation, a lost
// connection, subscriptions' sequence numbers and resubscribing.
#include <comet/comet.hpp>

#include "fake_host.hpp"
#include "processes.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/parallel_group.hpp>

#include <future>
#include <thread>

using namespace comet;
using namespace comet::test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

// A host's frame for stream `id`: begin (announcing the features when
// `features`, as the answer to a connection's first request), item (with a
// result, and a sequence for a subscription) or end (with an error
// response when `failure`).
struct frame_of {
  std::uint64_t id;
  stream_part part;
  std::optional<json::value> result{};
  std::optional<std::uint64_t> sequence{};
  std::optional<errc> failure{};
  std::optional<std::uint32_t> features{};

  std::string bytes() const {
    frame_header h;
    h.keep_alive = true;
    h.request_id = id;
    h.stream = part;
    h.sequence = sequence;
    h.features = features;
    if (features) h.window = 64;
    std::string content;
    if (result) content = encode_response(*result);
    if (failure) content = encode_error_response(*failure, "it failed here");
    return encode_frame(h, content);
  }
};

std::string begin_first(std::uint64_t id, std::optional<std::uint64_t> sequence = {}) {
  return frame_of{id, stream_part::begin, {}, sequence, {}, feature::all}.bytes();
}
std::string item(std::uint64_t id, const json::value& v, std::optional<std::uint64_t> seq = {}) {
  return frame_of{id, stream_part::item, v, seq}.bytes();
}
std::string end_of(std::uint64_t id, std::optional<errc> failure = {}) {
  return frame_of{id, stream_part::end, {}, {}, failure}.bytes();
}

// Runs `script` (the host's side, on its own thread) while the test runs
// the client; join() reports what failed there.
struct host_script {
  template <class F>
  explicit host_script(F f)
      : thread([this, f = std::move(f)]() mutable {
          try {
            f();
          } catch (const std::exception& e) {
            failure = e.what();
          }
        }) {}
  ~host_script() {
    if (thread.joinable()) thread.join();
  }
  void join() {
    thread.join();
    INFO("the host's script failed: " << failure);
    CHECK(failure.empty());
  }
  std::string failure;
  std::thread thread;
};

// Reads frames until one that is not a credit frame (or the end): the
// credit frames' grants are added to `credit`.
std::string next_non_credit(raw_peer& conn, std::uint64_t* credit = nullptr) {
  for (;;) {
    std::string f = conn.read_frame();
    if (f.empty()) return f;
    const auto h = header_of(f);
    if (h.kind != frame_kind::credit) return f;
    if (credit) *credit += h.credit.value_or(0);
  }
}

// open_stream / subscribe from the test's thread. (Through the untyped
// cores: use_future needs a default-constructible result, which a reader is
// not.)
template <class T = json::value>
stream_reader<T> open_from_test(const client& c, std::string action, json::value value,
                                send_options o = {}) {
  return stream_reader<T>(
      run(c.get_executor(), [&]() { return c.open_channel(action, value, o); }));
}
template <class T = json::value>
subscription<T> subscribe_from_test(const client& c, std::string topic, subscribe_options o = {}) {
  return subscription<T>(run(c.get_executor(), [&]() { return c.subscribe_channel(topic, o); }));
}

template <class T>
std::vector<T> read_all(stream_reader<T>& s) {
  std::vector<T> out;
  while (auto v = s.next_sync()) out.push_back(*v);
  return out;
}

}  // namespace

TEST_CASE("a stream opens, gives its items in order, and ends with nullopt",
          "[integration][client][streams]") {
  for (const bool keep_alive : {false, true}) {
    INFO("keep_alive " << keep_alive);
    fake_host host;
    frame_header opening;
    std::string content;
    host_script script([&] {
      raw_peer conn = host.next();
      const auto f = conn.read_frame();
      opening = header_of(f);
      content = f.substr(f.size() - opening.content_length);
      const auto id = id_of(f);
      conn.write(begin_first(id) + item(id, 0) + item(id, 1) + item(id, 2) + end_of(id));
      conn.closed_by_peer();  // until the client closes (the test's end)
    });
    io_pool pool(1);
    client_options o;
    o.keep_alive = keep_alive;
    client c(pool.get_executor(), host.at, o);
    auto s = open_from_test<int>(c, "scan", json::object{{"points", 3}});
    CHECK(read_all(s) == std::vector<int>{0, 1, 2});
    CHECK_FALSE(s.next_sync());  // still nullopt
    c.close();
    script.join();
    CHECK(opening.stream == stream_part::open);
    CHECK(opening.keep_alive);
    CHECK(opening.request_id);
    CHECK(opening.credit == std::optional<std::uint64_t>(256));
    CHECK(opening.features == std::optional<std::uint32_t>(feature::all));
    CHECK(json::parse(content) == json::parse(R"({"action": "scan", "value": {"points": 3}})"));
  }
}

TEST_CASE("an error end throws the host's error from next, after the items before it",
          "[integration][client][streams]") {
  fake_host host;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto id = id_of(conn.read_frame());
    conn.write(begin_first(id) + item(id, "a") + end_of(id, errc::handler_failed));
    conn.closed_by_peer();
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at);
  auto s = open_from_test<std::string>(c, "scan", 1);
  CHECK(s.next_sync() == std::optional<std::string>("a"));
  const auto e = error_thrown_by([&] { s.next_sync(); });
  CHECK(e.code() == errc::handler_failed);
  CHECK_THAT(e.what(), Catch::Contains("it failed here"));
  c.close();
  script.join();
}

TEST_CASE("a host's refusal fails open_stream with the host's code", "[integration][client][streams]") {
  fake_host host;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto id = id_of(conn.read_frame());
    frame_header h;
    h.keep_alive = true;
    h.request_id = id;
    h.features = feature::all;
    conn.write(encode_frame(h, encode_error_response(errc::no_handler, "no stream handler for 'scan'")));
    conn.closed_by_peer();
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at);
  const auto e = error_thrown_by([&] {
    open_from_test(c, "scan", 1);
  });
  CHECK(e.code() == errc::no_handler);
  CHECK_THAT(e.what(), Catch::Contains("no stream handler for 'scan'"));
  c.close();
  script.join();
}

TEST_CASE("a COMET host, which answers once and closes, gives unsupported, never a hang",
          "[integration][client][streams]") {
  fake_host host;
  host_script script([&] {
    raw_peer conn = host.next();
    conn.read_frame();
    frame_header h;  // as COMET answers: no id, no keep-alive, then it closes
    conn.write(encode_frame(h, encode_response("Error: unknown action")));
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at);
  const auto e = error_thrown_by([&] {
    open_from_test(c, "scan", 1);
  });
  CHECK(e.code() == errc::unsupported);
  CHECK_THAT(e.what(), Catch::Contains("cannot stream"));
  script.join();
  // Known now: the next stream fails at once, without a connection.
  const auto again = error_thrown_by([&] {
    subscribe_from_test(c, "temperature");
  });
  CHECK(again.code() == errc::unsupported);
  CHECK_FALSE(host.connection_waiting());
}

TEST_CASE("credit goes back to the host as the reader consumes, and stops when it stops",
          "[integration][client][streams]") {
  fake_host host;
  std::promise<void> granted;
  std::uint64_t initial = 0, credit = 0;
  frame_header last;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto open = conn.read_frame();
    initial = header_of(open).credit.value_or(0);
    const auto id = id_of(open);
    conn.write(begin_first(id) + item(id, 1) + item(id, 2) + item(id, 3) + item(id, 4));
    const auto f = conn.read_frame();  // the reader took two: credit for two
    const auto h = header_of(f);
    if (h.kind != frame_kind::credit || h.request_id != id)
      throw std::runtime_error("expected a credit frame for the stream");
    credit = h.credit.value_or(0);
    granted.set_value();
    conn.write(item(id, 5) + item(id, 6));  // spends it; the reader reads no more
    last = header_of(conn.read_frame());    // the next frame: the reader's close
  });
  io_pool pool(1);
  client_options o;
  o.stream_credit = 4;
  client c(pool.get_executor(), host.at, o);
  auto s = open_from_test<int>(c, "scan", 1);
  CHECK(s.next_sync() == 1);
  CHECK(s.next_sync() == 2);
  REQUIRE(granted.get_future().wait_for(10s) == std::future_status::ready);
  s.close();
  script.join();
  CHECK(initial == 4);
  CHECK(credit == 2);
  CHECK(last.kind == frame_kind::cancel);  // no credit came before it
  CHECK_FALSE(s.next_sync());
}

TEST_CASE("a stream's credit is bounded by stream_credit_bytes at the items' size",
          "[integration][client][streams]") {
  fake_host host;
  std::uint64_t credit = 0;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto id = id_of(conn.read_frame());
    const std::string big(1000, 'x');
    std::string items = begin_first(id);
    for (int i = 0; i < 8; ++i) items += item(id, json::value(big));
    conn.write(items);
    const auto f = next_non_credit(conn, &credit);  // every grant until the reader's close
    if (header_of(f).kind != frame_kind::cancel) throw std::runtime_error("expected the cancel");
  });
  io_pool pool(1);
  client_options o;
  o.stream_credit = 8;
  o.stream_credit_bytes = 4096;  // about four of these items
  client c(pool.get_executor(), host.at, o);
  auto s = open_from_test<std::string>(c, "scan", 1);
  for (int i = 0; i < 8; ++i) CHECK(s.next_sync()->size() == 1000);
  s.close();
  script.join();
  CHECK(credit >= 1);
  CHECK(credit <= 4);  // 8 would have let 8 KB in flight
}

TEST_CASE("close and destroying a reader send a cancel frame, and a closed reader gives nullopt",
          "[integration][client][streams]") {
  for (const bool destroy : {false, true}) {
    INFO("destroy " << destroy);
    fake_host host;
    frame_header cancel;
    std::uint64_t id = 0;
    host_script script([&] {
      raw_peer conn = host.next();
      id = id_of(conn.read_frame());
      conn.write(begin_first(id) + item(id, 1) + item(id, 2));
      cancel = header_of(next_non_credit(conn));
    });
    io_pool pool(1);
    client c(pool.get_executor(), host.at);
    {
      auto s = open_from_test<int>(c, "scan", 1);
      CHECK(s.next_sync() == 1);
      if (!destroy) {
        s.close();
        s.close();  // idempotent
        CHECK_FALSE(s.next_sync());  // item 2 was dropped
      }
    }
    script.join();
    CHECK(cancel.kind == frame_kind::cancel);
    CHECK(cancel.request_id == std::optional<std::uint64_t>(id));
  }
}

TEST_CASE("a lost connection ends a stream with connection_closed", "[integration][client][streams]") {
  fake_host host;
  std::promise<void> read_one;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto id = id_of(conn.read_frame());
    conn.write(begin_first(id) + item(id, 1));
    if (read_one.get_future().wait_for(10s) != std::future_status::ready)
      throw std::runtime_error("the reader did not get its item");
    conn.reset();
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at);
  auto s = open_from_test<int>(c, "scan", 1);
  CHECK(s.next_sync() == 1);
  read_one.set_value();
  CHECK(error_thrown_by([&] { s.next_sync(); }).code() == errc::connection_closed);
  script.join();
}

TEST_CASE("partial cancellation of next ends only that wait, terminal ends the stream",
          "[integration][client][streams]") {
  fake_host host;
  std::promise<void> send_item;
  frame_header after;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto id = id_of(conn.read_frame());
    conn.write(begin_first(id));
    if (send_item.get_future().wait_for(10s) != std::future_status::ready)
      throw std::runtime_error("the test did not ask for the item");
    conn.write(item(id, 7));
    after = header_of(next_non_credit(conn));
  });
  io_pool pool(2);
  client c(pool.get_executor(), host.at);
  auto s = open_from_test<int>(c, "scan", 1);
  const auto ex = pool.get_executor();
  // A next() raced by a 200 ms timer that cancels it partially.
  const auto partial = run(ex, [&]() -> asio::awaitable<std::string> {
    namespace exp = asio::experimental;
    asio::steady_timer timer(ex, 200ms);
    auto next = [&]() -> asio::awaitable<std::optional<int>> {
      co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
      co_return co_await s.next();
    };
    // Named, not temporaries of the co_await (GCC 12).
    auto group = exp::make_parallel_group(asio::co_spawn(ex, next, asio::deferred),
                                          timer.async_wait(asio::deferred));
    auto raced = group.async_wait(exp::wait_for_one(asio::cancellation_type::partial),
                                  asio::use_awaitable);
    auto [order, e, got, timer_ec] = co_await std::move(raced);
    try {
      if (e) std::rethrow_exception(e);
    } catch (const comet::error& x) {
      co_return std::string(x.what()) + " (" + std::to_string(x.code().value()) + ")";
    }
    co_return "no error";
  });
  CHECK_THAT(partial, Catch::Contains("was cancelled"));
  CHECK_THAT(partial, !Catch::Contains("closed"));
  send_item.set_value();
  CHECK(s.next_sync() == 7);  // the stream went on
  // Terminal: `||` cancels the loser that way.
  const bool timer_won = run(ex, [&]() -> asio::awaitable<bool> {
    asio::steady_timer timer(ex, 200ms);
    auto outcome = co_await (s.next() || timer.async_wait(asio::use_awaitable));
    co_return outcome.index() == 1;
  });
  CHECK(timer_won);
  script.join();
  CHECK(after.kind == frame_kind::cancel);  // the stream ended on the host
  CHECK_FALSE(s.next_sync());
}

TEST_CASE("next_sync refuses to deadlock on a thread of the client's executor",
          "[integration][client][streams]") {
  fake_host host;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto id = id_of(conn.read_frame());
    conn.write(begin_first(id) + item(id, 1));
    conn.closed_by_peer();
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at);
  auto s = open_from_test<int>(c, "scan", 1);
  std::promise<errc> code;
  asio::post(pool.get_executor(), [&] {
    try {
      s.next_sync();
      code.set_value(errc::bad_request);
    } catch (const comet::error& e) {
      code.set_value(static_cast<errc>(e.code().value()));
    }
  });
  auto f = code.get_future();
  REQUIRE(f.wait_for(10s) == std::future_status::ready);
  CHECK(f.get() == errc::would_deadlock);
  CHECK(s.next_sync() == 1);  // from this thread it works
  s.close();
  c.close();
  script.join();
}

TEST_CASE("a subscription gives items with their sequence and counts the gaps as dropped",
          "[integration][client][streams]") {
  fake_host host;
  frame_header opening;
  std::string content;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto f = conn.read_frame();
    opening = header_of(f);
    content = f.substr(f.size() - opening.content_length);
    const auto id = *opening.request_id;
    // Three published before it; then it loses 4 (the host's drop-oldest), 7 and 8.
    conn.write(begin_first(id, 3) + item(id, 20.5, 5) + item(id, 21.0, 6) + item(id, 21.5, 9) + end_of(id));
    conn.closed_by_peer();
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at);
  auto sub = subscribe_from_test<double>(c, "temperature", {.overflow = drop_oldest, .queue = 8});
  std::vector<std::uint64_t> sequences;
  while (auto p = sub.next_sync()) sequences.push_back(p->sequence);
  CHECK(sequences == std::vector<std::uint64_t>{5, 6, 9});
  CHECK(sub.dropped() == 3);
  c.close();
  script.join();
  CHECK(opening.stream == stream_part::subscribe);
  CHECK(json::parse(content) ==
        json::parse(R"({"action": "subscribe", "value": {"topic": "temperature", "overflow": "drop-oldest", "queue": 8}})"));
}

TEST_CASE("a subscription with resubscribe subscribes again after a lost connection, without it ends",
          "[integration][client][streams]") {
  for (const bool resubscribe : {true, false}) {
    INFO("resubscribe " << resubscribe);
    fake_host host;
    std::string again;
    std::promise<void> read_one;
    host_script script([&] {
      {
        raw_peer conn = host.next();
        const auto id = id_of(conn.read_frame());
        conn.write(begin_first(id, 0) + item(id, "one", 1));
        if (read_one.get_future().wait_for(10s) != std::future_status::ready)
          throw std::runtime_error("the reader did not get its item");
        conn.reset();
      }
      if (!resubscribe) return;
      raw_peer conn = host.next();
      const auto f = conn.read_frame();
      again = f.substr(f.size() - header_of(f).content_length);
      const auto id = id_of(f);
      // 2 and 3 were published while it subscribed again.
      conn.write(begin_first(id, 3) + item(id, "four", 4) + end_of(id));
      conn.closed_by_peer();
    });
    io_pool pool(1);
    client c(pool.get_executor(), host.at);
    auto sub = subscribe_from_test<std::string>(c, "news", {.resubscribe = resubscribe});
    CHECK(sub.next_sync()->value == "one");
    read_one.set_value();
    if (resubscribe) {
      const auto p = sub.next_sync();
      REQUIRE(p);
      CHECK(p->value == "four");
      CHECK(p->sequence == 4);
      CHECK(sub.dropped() == 2);
      CHECK_FALSE(sub.next_sync());
      CHECK(json::parse(again) == json::parse(R"({"action": "subscribe", "value": {"topic": "news", "overflow": "end"}})"));
    } else {
      CHECK(error_thrown_by([&] { sub.next_sync(); }).code() == errc::connection_closed);
    }
    c.close();
    script.join();
  }
}

TEST_CASE("an idle stream pool holds nothing: run returns once the stream ended",
          "[integration][client][streams]") {
  fake_host host;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto id = id_of(conn.read_frame());
    conn.write(begin_first(id) + item(id, 1) + end_of(id));
  });
  asio::io_context io;
  client c(io.get_executor(), host.at);  // kept: its idle stream pool holds nothing
  std::vector<int> got;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        const std::string action = "scan";  // named: see GCC 12's temporaries
        auto s = co_await c.open_stream<int>(action, 1);
        while (auto v = co_await s.next()) got.push_back(*v);
      },
      asio::detached);
  auto ran = std::async(std::launch::async, [&] { io.run(); });
  REQUIRE(ran.wait_for(10s) == std::future_status::ready);
  CHECK(got == std::vector<int>{1});
  script.join();
}

// --- comet-send --stream and --subscribe ------------------------------------

TEST_CASE("comet-send --stream prints each item as a line of JSON and exits 0 at the end",
          "[cli][client][streams]") {
  fake_host host;
  std::string content;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto f = conn.read_frame();
    content = f.substr(f.size() - header_of(f).content_length);
    const auto id = id_of(f);
    conn.write(begin_first(id) + item(id, json::object{{"tick", 0}}) +
               item(id, json::object{{"tick", 1}}) + item(id, json::object{{"tick", 2}}) + end_of(id));
    conn.closed_by_peer();
  });
  const auto to = host.at.ip + ":" + std::to_string(host.at.port);
  const auto r = run_cli("comet-send", {"--to", to, "--stream", "--action", "ticks", "--value",
                                        R"({"count": 3, "interval": 0})"});
  script.join();
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "{\"tick\": 0}\n{\"tick\": 1}\n{\"tick\": 2}\n");
  CHECK(json::parse(content) == json::parse(R"({"action": "ticks", "value": {"count": 3, "interval": 0}})"));
}

TEST_CASE("comet-send --stream exits with the error's status, and 8 against a host that cannot stream",
          "[cli][client][streams]") {
  for (const bool comet_host : {false, true}) {
    fake_host host;
    host_script script([&] {
      raw_peer conn = host.next();
      const auto id = id_of(conn.read_frame());
      if (comet_host) {
        frame_header h;  // one answer, no id, then it closes
        conn.write(encode_frame(h, encode_response("Error: unknown action")));
        return;
      }
      conn.write(begin_first(id) + item(id, 1) + end_of(id, errc::handler_failed));
      conn.closed_by_peer();
    });
    const auto to = host.at.ip + ":" + std::to_string(host.at.port);
    const auto r = run_cli("comet-send", {"--to", to, "--stream", "--action", "scan"});
    script.join();
    INFO(r.err);
    if (comet_host) {
      CHECK(r.status == 8);
      CHECK(r.out.empty());
      CHECK_THAT(r.err, Catch::Contains("cannot stream"));
    } else {
      CHECK(r.status == 5);
      CHECK(r.out == "1\n");
      CHECK_THAT(r.err, Catch::Contains("it failed here"));
    }
  }
}

TEST_CASE("comet-send --subscribe prints what is published, with --sequence and --count",
          "[cli][client][streams]") {
  fake_host host;
  std::string content;
  frame_header after;
  host_script script([&] {
    raw_peer conn = host.next();
    const auto f = conn.read_frame();
    content = f.substr(f.size() - header_of(f).content_length);
    const auto id = id_of(f);
    conn.write(begin_first(id) + item(id, 21.5, 3) + item(id, 22.5, 5) + item(id, 23.5, 6));
    const auto next = next_non_credit(conn);  // its close after two: a cancel (or EOF)
    if (!next.empty()) after = header_of(next);
  });
  const auto to = host.at.ip + ":" + std::to_string(host.at.port);
  const auto r = run_cli("comet-send",
                         {"--to", to, "--subscribe", "temperature", "--count", "2", "--sequence"});
  script.join();
  INFO(r.err);
  CHECK(r.status == 0);
  CHECK(r.out == "{\"sequence\": 3, \"value\": 21.5}\n{\"sequence\": 5, \"value\": 22.5}\n");
  CHECK_THAT(r.err, Catch::Contains("1 items published on the topic were lost"));
  CHECK(after.kind == frame_kind::cancel);
  CHECK(json::parse(content) ==
        json::parse(R"({"action": "subscribe", "value": {"topic": "temperature", "overflow": "end"}})"));
}

TEST_CASE("comet-send refuses --stream and --subscribe combinations that make no sense",
          "[cli][client][streams]") {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--to", "127.0.0.1:9", "--stream", "--subscribe", "t"},
           {"--to", "127.0.0.1:9", "--subscribe", "t", "--action", "a"},
           {"--to", "127.0.0.1:9", "--stream", "--action", "a", "--repeat", "2"},
           {"--to", "127.0.0.1:9", "--action", "a", "--count", "2"},
           {"--to", "127.0.0.1:9", "--subscribe", "t", "--count", "0"}}) {
    const auto r = run_cli("comet-send", args);
    INFO(r.err);
    CHECK(r.status == 2);
  }
  const auto help = run_cli("comet-send", {"--help"});
  CHECK_THAT(help.out, Catch::Contains("--subscribe"));
  CHECK_THAT(help.out, Catch::Contains("JSON Lines"));
}
