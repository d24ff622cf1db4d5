// The host's streams and subscriptions over real sockets (issue 17;
// docs/protocol.md, "Streams and subscriptions"), driven by raw peers that
// write the frames by hand: the client's stream API is tested elsewhere.
// The largest cases are tagged [.large] and run by their own ctest entry,
// which the sanitizer builds leave out (tools/sanitize).
#include <comet/comet.hpp>

#include "hostile_peers.hpp"
#include "processes.hpp"
#include "support.hpp"

#include <atomic>
#include <cstdio>
#include <limits>
#include <map>
#include <set>

using namespace comet;
using namespace comet::test;

namespace {

std::string stream_open(std::uint64_t id, std::string_view action, const json::value& v,
                        std::optional<std::uint64_t> credit, bool first = false) {
  frame_header h;
  h.keep_alive = true;
  h.request_id = id;
  h.stream = stream_part::open;
  h.credit = credit;
  if (first) h.features = feature::all;
  return encode_frame(h, encode_request(action, v));
}

std::string stream_subscribe(std::uint64_t id, std::string_view topic, std::uint64_t credit,
                             bool first = false, std::string_view overflow = {}, std::size_t queue = 0) {
  json::object value{{"topic", topic}};
  if (!overflow.empty()) value["overflow"] = overflow;
  if (queue) value["queue"] = queue;
  frame_header h;
  h.keep_alive = true;
  h.request_id = id;
  h.stream = stream_part::subscribe;
  h.credit = credit;
  if (first) h.features = feature::all;
  return encode_frame(h, encode_request("subscribe", value));
}

std::string credit_frame(std::uint64_t id, std::uint64_t n) {
  frame_header h;
  h.keep_alive = true;
  h.kind = frame_kind::credit;
  h.request_id = id;
  h.credit = n;
  return encode_frame(h, "");
}

std::string cancel_frame(std::uint64_t id) {
  frame_header h;
  h.keep_alive = true;
  h.kind = frame_kind::cancel;
  h.request_id = id;
  return encode_frame(h, "");
}

struct frame {
  json::object header;
  std::string content;
  std::string part() const {
    const auto* p = header.if_contains("stream");
    return p ? std::string(p->as_string()) : std::string();
  }
  std::uint64_t id() const { return header.at("request-id").to_number<std::uint64_t>(); }
  std::uint64_t sequence() const { return header.at("sequence").to_number<std::uint64_t>(); }
  bool is_control() const { return header.contains("control"); }
  response_message response() const { return decode_response(content); }
};

frame next_frame(raw_peer& p) {
  const std::string bytes = p.read_frame();
  REQUIRE_FALSE(bytes.empty());
  auto s = split(bytes);
  return {std::move(s.header), std::move(s.content)};
}

// Stream handlers that count what they do, for the tests to observe.
struct counting_handlers {
  std::atomic<int> started{0}, finished{0}, cancelled{0};
  std::atomic<std::uint64_t> attempts{0}, written{0};

  void add_to(host& h) {
    // {"n": N, "pad": P}: N items {"i": k, "pad": "xxx..."}.
    h.on_stream("count", [this](const json::value& v, stream_writer& out) -> asio::awaitable<void> {
      ++started;
      const auto n = v.at("n").to_number<std::uint64_t>();
      const auto* pad = v.as_object().if_contains("pad");
      const std::string padding(pad ? pad->to_number<std::size_t>() : 0, 'x');
      try {
        for (std::uint64_t i = 0; i < n; ++i) {
          ++attempts;
          json::value item = json::object{{"i", i}, {"pad", padding}};
          co_await out.write(std::move(item));
          ++written;
        }
      } catch (const comet::error& e) {
        if (e.code() == errc::cancelled) ++cancelled;
        ++finished;
        throw;
      }
      ++finished;
    });
    // {"n": N, "pause_ms": P}: N items, P ms of the handler's own time before each.
    h.on_stream("slow", [this](const json::value& v, stream_writer& out) -> asio::awaitable<void> {
      ++started;
      asio::steady_timer t(co_await asio::this_coro::executor);
      try {
        for (std::int64_t i = 0; i < v.at("n").as_int64(); ++i) {
          t.expires_after(std::chrono::milliseconds(v.at("pause_ms").as_int64()));
          co_await t.async_wait(asio::use_awaitable);
          json::value item = i;
          co_await out.write(std::move(item));
          ++written;
        }
      } catch (const boost::system::system_error&) {
        ++cancelled;  // its timer's wait, cancelled
        throw;
      }
    });
    h.on_stream("fail", [](const json::value&, stream_writer& out) -> asio::awaitable<void> {
      json::value item = 1;
      co_await out.write(std::move(item));
      throw comet::error(errc::bad_request, "the scan's range is empty");
    });
  }
};

struct stream_host : host_fixture {
  explicit stream_host(counting_handlers& handlers, host_options o = loopback())
      : host_fixture(2, std::move(o)) {
    add_echo(server);
    handlers.add_to(server);
    start();
  }
};

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

json::value count_of(std::uint64_t n, std::size_t pad = 0) {
  return json::object{{"n", n}, {"pad", pad}};
}

}  // namespace

TEST_CASE("a stream of 0 items is its begin and a clean end, of 1 one item between", "[integration][streams]") {
  counting_handlers handlers;
  stream_host f(handlers);
  raw_peer p(f.at);
  p.write(stream_open(1, "count", count_of(0), 4, true));
  auto begin = next_frame(p);
  CHECK(begin.part() == "begin");
  CHECK(begin.id() == 1);
  CHECK(begin.content.empty());
  CHECK(begin.header.at("features").as_array().size() == feature::names.size());
  auto end = next_frame(p);
  CHECK(end.part() == "end");
  CHECK(end.content.empty());

  p.write(stream_open(2, "count", count_of(1), 4));
  CHECK(next_frame(p).part() == "begin");
  auto item = next_frame(p);
  CHECK(item.part() == "item");
  CHECK(item.id() == 2);
  CHECK(item.response().result.at("i") == 0);
  CHECK(next_frame(p).part() == "end");
  REQUIRE(wait_until([&] { return f.server.stats().streams_open == 0; }));
}

TEST_CASE("a stream handler's exception ends its stream with that error", "[integration][streams]") {
  counting_handlers handlers;
  stream_host f(handlers);
  raw_peer p(f.at);
  p.write(stream_open(1, "fail", nullptr, 4, true));
  CHECK(next_frame(p).part() == "begin");
  CHECK(next_frame(p).part() == "item");
  auto end = next_frame(p);
  CHECK(end.part() == "end");
  const auto r = end.response();
  REQUIRE(r.error);
  CHECK(*r.error == errc::bad_request);
  CHECK(r.error_message == "the scan's range is empty");
  // The connection goes on.
  p.write(tagged(2, "echo", 2));
  CHECK(next_frame(p).response().result == 2);
}

TEST_CASE("stream requests a host refuses get one ordinary answer", "[integration][streams]") {
  counting_handlers handlers;
  stream_host f(handlers);
  SECTION("no stream handler, or a unary action opened as a stream") {
    raw_peer p(f.at);
    p.write(stream_open(1, "nothing", nullptr, 4, true));
    auto a = next_frame(p);
    CHECK(a.part().empty());
    CHECK(a.response().error == errc::no_handler);
    p.write(stream_open(2, "echo", 1, 4));
    CHECK(next_frame(p).response().error == errc::no_handler);
  }
  SECTION("a plain request for a stream action") {
    raw_peer p(f.at);
    p.write(tagged(1, "count", count_of(1), feature::all));
    CHECK(next_frame(p).response().error == errc::bad_request);
  }
  SECTION("a connection that did not agree the feature") {
    raw_peer p(f.at);
    p.write(tagged(1, "echo", 1));
    CHECK(next_frame(p).response().result == 1);
    p.write(stream_open(2, "count", count_of(1), 4));
    CHECK(next_frame(p).response().error == errc::bad_request);
  }
  SECTION("a subscribe without a topic") {
    raw_peer p(f.at);
    frame_header h;
    h.keep_alive = true;
    h.request_id = 1;
    h.features = feature::all;
    h.stream = stream_part::subscribe;
    p.write(encode_frame(h, encode_request("subscribe", json::object{{"overflow", "end"}})));
    CHECK(next_frame(p).response().error == errc::bad_request);
  }
  CHECK(handlers.started == 0);
}

TEST_CASE("a stream of 100,000 items, credit granted as they are read", "[integration][streams][.large]") {
  counting_handlers handlers;
  stream_host f(handlers);
  raw_peer p(f.at);
  constexpr std::uint64_t total = 100000;
  const auto began = std::chrono::steady_clock::now();
  p.write(stream_open(1, "count", count_of(total), 256, true));
  REQUIRE(next_frame(p).part() == "begin");
  std::uint64_t got = 0;
  bool in_order = true;
  for (;;) {
    auto fr = next_frame(p);
    if (fr.part() == "end") {
      CHECK(fr.content.empty());
      break;
    }
    REQUIRE(fr.part() == "item");
    in_order = in_order && fr.response().result.at("i").to_number<std::uint64_t>() == got;
    if (++got % 128 == 0) p.write(credit_frame(1, 128));
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - began;
  std::fprintf(stderr, "streams: 100,000 items in %.3f s, %.0f items/s\n", took.count(),
               static_cast<double>(total) / took.count());
  CHECK(got == total);
  CHECK(in_order);
  REQUIRE(wait_until([&] { return handlers.finished == 1; }));
  CHECK(handlers.cancelled == 0);
}

TEST_CASE("credit is honoured: a reader that grants 10 gets 10 and the handler waits, and a cancel ends it",
          "[integration][streams]") {
  counting_handlers handlers;
  stream_host f(handlers);
  raw_peer p(f.at);
  p.write(stream_open(1, "count", count_of(1000), 10, true));
  REQUIRE(next_frame(p).part() == "begin");
  for (int i = 0; i < 10; ++i) CHECK(next_frame(p).part() == "item");
  // The handler is parked in its eleventh write.
  REQUIRE(wait_until([&] { return handlers.attempts == 11; }));
  CHECK(handlers.written == 10);
  p.write(tagged(2, "echo", "between"));
  auto a = next_frame(p);
  CHECK(a.id() == 2);
  CHECK(a.response().result == "between");

  // More credit: exactly that many more.
  p.write(credit_frame(1, 3));
  for (int i = 0; i < 3; ++i) {
    auto item = next_frame(p);
    CHECK(item.part() == "item");
    CHECK(item.response().result.at("i") == 10 + i);
  }
  REQUIRE(wait_until([&] { return handlers.attempts == 14; }));
  CHECK(f.server.stats().streams_open == 1);

  // A cancel ends it: the handler's write throws cancelled, nothing more is written.
  p.write(cancel_frame(1));
  REQUIRE(wait_until([&] { return handlers.cancelled == 1; }));
  REQUIRE(wait_until([&] { return f.server.stats().streams_open == 0; }));
  p.write(tagged(3, "echo", "after"));
  auto b = next_frame(p);
  CHECK(b.id() == 3);  // not the stream's end
  CHECK(b.part().empty());
  CHECK(handlers.written == 13);
}

TEST_CASE("a reader that grants much and reads nothing stalls the handler at the write buffer",
          "[integration][streams]") {
  counting_handlers handlers;
  auto o = host_fixture::loopback();
  o.write_buffer_limit = 1 << 20;
  stream_host f(handlers, o);
  raw_peer p(f.at);
  const long before = rss_kib();
  constexpr std::size_t pad = 1000;
  p.write(stream_open(1, "count", count_of(10'000'000, pad), std::uint64_t{1} << 32, true));
  // It stops writing: the count stays put over a few samples.
  std::uint64_t last = 0;
  int same = 0;
  REQUIRE(wait_until([&] {
    const std::uint64_t now = handlers.written;
    same = now == last && now > 0 ? same + 1 : 0;
    last = now;
    return same >= 50;  // 100 ms unchanged
  }, 20s));
  const long after = rss_kib();
  std::fprintf(stderr, "streams: a stalled reader: the handler wrote %llu items of ~1 KB; host RSS grew %ld KiB\n",
               static_cast<unsigned long long>(last), after - before);
  // The write buffer (1 MiB) and the sockets' buffers, not the 10 GB asked for.
  CHECK(last * pad < 64u * 1024 * 1024);
  CHECK(after - before < 128 * 1024);
  CHECK(handlers.attempts == last + 1);
  // Reading again drains it, and a cancel stops it.
  p.write(cancel_frame(1));
  REQUIRE(wait_until([&] { return handlers.cancelled == 1; }));
}

TEST_CASE("a peer that closes mid-stream cancels the handler", "[integration][streams]") {
  counting_handlers handlers;
  stream_host f(handlers);
  {
    raw_peer p(f.at);
    p.write(stream_open(1, "count", count_of(1000), 1, true));
    REQUIRE(next_frame(p).part() == "begin");
    REQUIRE(wait_until([&] { return handlers.attempts == 2; }));
    SECTION("closed") {}
    SECTION("reset") { p.reset(); }
  }
  REQUIRE(wait_until([&] { return handlers.cancelled == 1; }));
  REQUIRE(wait_until([&] { return f.server.stats().connections_open == 0; }));
  // The connection is forgotten when it closes; its cancelled handler ends
  // on its own strand a moment later, and the gauge follows it there.
  CHECK(wait_until([&] { return f.server.stats().streams_open == 0; }));
}

TEST_CASE("a host stopped mid-stream ends it with shutting_down at once and stops promptly",
          "[integration][streams]") {
  counting_handlers handlers;
  stream_host f(handlers);
  raw_peer p(f.at);
  p.write(stream_open(1, "count", count_of(1000), 1, true));
  p.write(stream_subscribe(2, "t", 10));
  REQUIRE(next_frame(p).part() == "begin");
  REQUIRE(next_frame(p).part() == "item");
  REQUIRE(next_frame(p).part() == "begin");
  REQUIRE(wait_until([&] { return handlers.attempts == 2; }));
  const auto began = std::chrono::steady_clock::now();
  auto stopped = f.server.async_stop(asio::use_future);
  std::set<std::uint64_t> ended;
  for (int i = 0; i < 2; ++i) {
    auto end = next_frame(p);
    CHECK(end.part() == "end");
    CHECK(end.response().error == errc::shutting_down);
    ended.insert(end.id());
  }
  CHECK(ended == std::set<std::uint64_t>{1, 2});
  auto notice = next_frame(p);
  CHECK(notice.header.at("control") == "going-away");
  REQUIRE(stopped.wait_for(10s) == std::future_status::ready);
  const auto took = std::chrono::steady_clock::now() - began;
  CHECK(took < std::chrono::milliseconds(2000));  // well within shutdown_timeout (5 s)
  CHECK(handlers.cancelled == 1);
  CHECK(f.server.stats().subscriptions_open == 0);
}

TEST_CASE("streams past max_streams are refused too_many_streams, outside the window",
          "[integration][streams]") {
  counting_handlers handlers;
  auto o = host_fixture::loopback();
  o.max_streams = 2;
  o.max_in_flight = 1;
  stream_host f(handlers, o);
  raw_peer p(f.at);
  p.write(stream_open(1, "count", count_of(10), 0, true));
  p.write(stream_subscribe(2, "t", 0));
  p.write(stream_open(3, "count", count_of(10), 0));
  p.write(tagged(4, "echo", 4));
  CHECK(next_frame(p).part() == "begin");
  CHECK(next_frame(p).part() == "begin");
  auto refused = next_frame(p);
  CHECK(refused.id() == 3);
  CHECK(refused.part().empty());
  CHECK(refused.response().error == errc::too_many_streams);
  auto answer = next_frame(p);
  CHECK(answer.id() == 4);
  CHECK(answer.response().result == 4);
  // One ends: another opens.
  p.write(cancel_frame(1));
  REQUIRE(wait_until([&] { return handlers.finished == 1; }));
  p.write(stream_open(5, "count", count_of(1), 1));
  CHECK(next_frame(p).part() == "begin");
  CHECK(next_frame(p).id() == 5);
}

TEST_CASE("a subscriber gets what is published after its begin, numbered per topic",
          "[integration][streams]") {
  counting_handlers handlers;
  stream_host f(handlers);
  CHECK(f.server.publish("temperature", 20.5) == 1);  // before: not delivered
  raw_peer p(f.at);
  p.write(stream_subscribe(1, "temperature", 10, true));
  auto begin = next_frame(p);
  REQUIRE(begin.part() == "begin");
  CHECK(begin.sequence() == 1);  // the topic's last, when it registered
  CHECK(f.server.stats().subscriptions_open == 1);
  CHECK(f.server.publish("temperature", 21.5) == 2);
  CHECK(f.server.publish("other", 1) == 1);
  CHECK(f.server.publish("temperature", json::object{{"c", 22}}) == 3);
  auto a = next_frame(p);
  CHECK(a.part() == "item");
  CHECK(a.sequence() == 2);
  CHECK(a.response().result == 21.5);
  auto b = next_frame(p);
  CHECK(b.sequence() == 3);
  CHECK(b.response().result.at("c") == 22);
  // The client's cancel unsubscribes, with nothing more written.
  p.write(cancel_frame(1));
  REQUIRE(wait_until([&] { return f.server.stats().subscriptions_open == 0; }));
  f.server.publish("temperature", 0);
  p.write(tagged(2, "echo", 2));
  CHECK(next_frame(p).id() == 2);
  CHECK(f.server.stats().items_published == 5);
}

TEST_CASE("1,000 subscribers to one topic over 4 connections each get every item in order",
          "[integration][streams][.large]") {
  counting_handlers handlers;
  auto o = host_fixture::loopback();
  o.max_streams = 1000;
  stream_host f(handlers, o);
  constexpr int connections = 4, per_connection = 250, items = 100;
  std::vector<std::unique_ptr<raw_peer>> peers;
  for (int c = 0; c < connections; ++c) {
    peers.push_back(std::make_unique<raw_peer>(f.at));
    std::string all;
    for (int s = 1; s <= per_connection; ++s) all += stream_subscribe(s, "fan", items, s == 1);
    peers.back()->write(all);
  }
  for (auto& p : peers)
    for (int s = 0; s < per_connection; ++s) REQUIRE(next_frame(*p).part() == "begin");
  REQUIRE(f.server.stats().subscriptions_open == 1000);
  const auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < items; ++i) f.server.publish("fan", i);
  std::size_t delivered = 0;
  bool in_order = true;
  for (auto& p : peers) {
    std::map<std::uint64_t, std::uint64_t> last;
    for (int n = 0; n < per_connection * items; ++n) {
      auto fr = next_frame(*p);
      REQUIRE(fr.part() == "item");
      auto& seen = last[fr.id()];
      in_order = in_order && fr.sequence() == seen + 1;
      seen = fr.sequence();
      ++delivered;
    }
    CHECK(last.size() == per_connection);
  }
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - began;
  std::fprintf(stderr, "streams: %zu deliveries to 1,000 subscribers in %.3f s, %.0f deliveries/s\n",
               delivered, took.count(), static_cast<double>(delivered) / took.count());
  CHECK(in_order);
  CHECK(delivered == 1000u * items);
}

TEST_CASE("a subscriber that grants no credit does not hold up the others, and overflows",
          "[integration][streams]") {
  counting_handlers handlers;
  stream_host f(handlers);
  raw_peer reader(f.at), stalled(f.at);
  reader.write(stream_subscribe(1, "t", 1000, true));
  REQUIRE(next_frame(reader).part() == "begin");
  SECTION("overflow end: slow_consumer") {
    stalled.write(stream_subscribe(1, "t", 0, true, "end", 10));
    REQUIRE(next_frame(stalled).part() == "begin");
    for (int i = 0; i < 20; ++i) f.server.publish("t", i);
    for (int i = 0; i < 20; ++i) CHECK(next_frame(reader).sequence() == static_cast<std::uint64_t>(i + 1));
    auto end = next_frame(stalled);
    CHECK(end.part() == "end");
    CHECK(end.response().error == errc::slow_consumer);
    REQUIRE(wait_until([&] { return f.server.stats().subscriptions_open == 1; }));
  }
  SECTION("drop-oldest: the newest stay, the others are counted") {
    stalled.write(stream_subscribe(1, "t", 0, true, "drop-oldest", 5));
    REQUIRE(next_frame(stalled).part() == "begin");
    for (int i = 0; i < 20; ++i) f.server.publish("t", i);
    for (int i = 0; i < 20; ++i) CHECK(next_frame(reader).sequence() == static_cast<std::uint64_t>(i + 1));
    CHECK(f.server.stats().items_dropped == 15);
    stalled.write(credit_frame(1, 100));
    for (std::uint64_t s = 16; s <= 20; ++s) {
      auto item = next_frame(stalled);
      CHECK(item.sequence() == s);
      CHECK(item.response().result == static_cast<std::int64_t>(s - 1));
    }
    CHECK(f.server.stats().subscriptions_open == 2);
  }
}

TEST_CASE("hostile stream frames: credit for unknown ids, huge credit, host-only parts",
          "[integration][streams][hostile]") {
  counting_handlers handlers;
  stream_host f(handlers);
  raw_peer p(f.at);
  p.write(tagged(1, "echo", 1, feature::all));
  CHECK(next_frame(p).response().result == 1);
  p.write(credit_frame(99, 5));
  p.write(credit_frame(1, 5));  // answered already
  p.write(cancel_frame(77));
  for (const auto part : {stream_part::begin, stream_part::item, stream_part::end}) {
    frame_header h;
    h.keep_alive = true;
    h.request_id = 10 + static_cast<int>(part);
    h.stream = part;
    p.write(encode_frame(h, encode_request("count", count_of(1))));
    auto a = next_frame(p);
    CHECK(a.part().empty());
    CHECK(a.response().error == errc::bad_request);
  }
  // Huge credit, twice: capped, and the stream works.
  p.write(stream_open(20, "count", count_of(3), std::numeric_limits<std::uint64_t>::max()));
  p.write(credit_frame(20, std::numeric_limits<std::uint64_t>::max()));
  p.write(credit_frame(20, std::numeric_limits<std::uint64_t>::max()));
  CHECK(next_frame(p).part() == "begin");
  for (int i = 0; i < 3; ++i) CHECK(next_frame(p).part() == "item");
  CHECK(next_frame(p).part() == "end");
  p.write(tagged(21, "echo", 21));
  CHECK(next_frame(p).response().result == 21);
  CHECK(handlers.started == 1);
  raw_peer other(f.at);
  other.write(request_frame("echo", "alive"));
  CHECK(next_frame(other).response().result == "alive");
}

TEST_CASE("comet-host streams ticks and publishes to its subscribers", "[cli][streams]") {
  running_host h;
  const auto colon = h.address.rfind(':');
  const endpoint at{h.address.substr(0, colon),
                    static_cast<std::uint16_t>(std::stoi(h.address.substr(colon + 1)))};
  raw_peer p(at);
  p.write(stream_open(1, "ticks", json::parse(R"({"count": 3, "interval": 0.01})"), 10, true));
  CHECK(next_frame(p).part() == "begin");
  for (int i = 1; i <= 3; ++i) {
    auto item = next_frame(p);
    CHECK(item.part() == "item");
    CHECK(item.response().result == json::object{{"tick", i}});
  }
  CHECK(next_frame(p).part() == "end");
  p.write(stream_open(2, "ticks", json::parse(R"({"count": -1})"), 10));
  CHECK(next_frame(p).part() == "begin");
  auto refused = next_frame(p);
  CHECK(refused.part() == "end");
  CHECK(refused.response().error == errc::bad_request);

  p.write(stream_subscribe(3, "lab", 10));
  CHECK(next_frame(p).sequence() == 0);  // the begin: nothing published yet
  raw_peer publisher(at);
  publisher.write(request_frame("publish", json::parse(R"({"topic": "lab", "value": {"t": 21.5}})")));
  CHECK(next_frame(publisher).response().result == 1);
  auto item = next_frame(p);
  CHECK(item.sequence() == 1);
  CHECK(item.response().result.at("t") == 21.5);
  raw_peer bad(at);
  bad.write(request_frame("publish", json::parse(R"({"value": 1})")));
  CHECK(next_frame(bad).response().error == errc::bad_request);
  CHECK(h.stop() == 0);
}

TEST_CASE("handler_timeout bounds a stream handler's own time between writes, not its waits for credit",
          "[integration][streams]") {
  counting_handlers handlers;
  auto o = host_fixture::loopback();
  o.handler_timeout = 300ms;
  o.idle_timeout = 300ms;
  stream_host f(handlers, o);
  raw_peer p(f.at);
  // No credit: it waits past both timeouts, and neither ends it (the wait is
  // long on purpose: what is checked is that nothing happens meanwhile).
  p.write(stream_open(1, "slow", json::parse(R"({"n": 3, "pause_ms": 10})"), 0, true));
  CHECK(next_frame(p).part() == "begin");
  REQUIRE(wait_until([&] { return handlers.started == 1; }));
  std::this_thread::sleep_for(1s);
  CHECK(f.server.stats().connections_open == 1);
  p.write(credit_frame(1, 3));
  for (int i = 0; i < 3; ++i) CHECK(next_frame(p).response().result == i);
  CHECK(next_frame(p).content.empty());  // a clean end

  // Its own time between writes past the deadline: it ends timeout, cancelled.
  p.write(stream_open(2, "slow", json::parse(R"({"n": 3, "pause_ms": 5000})"), 10));
  CHECK(next_frame(p).part() == "begin");
  auto end = next_frame(p);
  CHECK(end.part() == "end");
  CHECK(end.response().error == errc::timeout);
  REQUIRE(wait_until([&] { return handlers.cancelled == 1; }));
  REQUIRE(wait_until([&] { return f.server.stats().streams_open == 0; }));
}

TEST_CASE("a stream ends when its connection stops reading after a malformed frame",
          "[integration][streams][hostile]") {
  counting_handlers handlers;
  stream_host f(handlers);
  raw_peer p(f.at);
  p.write(stream_open(1, "count", count_of(10), 0, true));
  CHECK(next_frame(p).part() == "begin");
  REQUIRE(wait_until([&] { return handlers.attempts == 1; }));
  const std::string garbage = "{not json";
  std::string bad;
  bad += '\0';
  bad += static_cast<char>(garbage.size());
  bad += garbage;
  p.write(bad);
  auto end = next_frame(p);
  CHECK(end.part() == "end");
  CHECK(end.response().error == errc::bad_request);
  CHECK(p.closed_by_peer());
  REQUIRE(wait_until([&] { return handlers.cancelled == 1; }));
}
