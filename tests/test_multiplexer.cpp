// The pooled connection's rules (framework/src/multiplexer.hpp) without a
// socket: requests in, bytes to write out, received bytes in, settled
// requests out.
#include "multiplexer.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <vector>

using namespace comet;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

struct fixture {
  fixture() {
    info.peer = {"127.0.0.1", 9};
    info.options.name = "Telegram";
  }
  peer_info info;
  peer_knowledge knowledge;
  std::vector<pooled_request*> settled;
  std::function<void(pooled_request&)> record = [this](pooled_request& r) { settled.push_back(&r); };

  std::size_t consume(multiplexer& m, std::string_view bytes) {
    return m.consume(bytes, multiplexer::settle_fn(record));
  }
  // A connection to a host known to keep connections open, connected.
  multiplexer open() {
    knowledge.support = peer_knowledge::keep_alive::yes;
    multiplexer m(info, knowledge);
    m.connected();
    return m;
  }
};

std::string content_of(std::string_view action, const json::value& v) {
  return encode_request(action, v);
}

// An answer as a comet-net host writes it.
std::string answer(std::optional<std::uint64_t> id, const json::value& result, bool keep_alive = true) {
  frame_header h;
  h.keep_alive = keep_alive;
  h.request_id = id;
  return encode_frame(h, encode_response(result));
}

std::string refusal(std::optional<std::uint64_t> id, errc code, bool keep_alive = false) {
  frame_header h;
  h.keep_alive = keep_alive;
  h.request_id = id;
  return encode_frame(h, encode_error_response(code, "refused"));
}

// The frames in `bytes`, decoded.
std::vector<frame_header> frames_in(std::string_view bytes) {
  std::vector<frame_header> out;
  frame_decoder d(1 << 20);
  while (!bytes.empty()) {
    REQUIRE(d.decode(bytes) == frame_decoder::status::complete);
    out.push_back(d.header());
    bytes.remove_prefix(d.frame_size());
    d.reset();
  }
  return out;
}

// Writes what is queued, as the driver does once the socket took it.
void write_queued(multiplexer& m) {
  (void)m.prepare_write();
  m.commit_write();
}

void add(multiplexer& m, pooled_request& r, std::uint64_t id,
         std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max()) {
  r.id = id;
  r.deadline = deadline;
  r.timeout = 300ms;
  m.add(r, content_of("echo", static_cast<std::int64_t>(id)));
}

}  // namespace

TEST_CASE("a new connection probes, then multiplexes once the host keeps it open", "[unit][multiplexer]") {
  fixture f;
  multiplexer m(f.info, f.knowledge);
  CHECK_FALSE(m.accepts(64));  // connecting, keep-alive support unknown
  pooled_request first;
  add(m, first, 1);
  CHECK(m.prepare_write().empty());  // nothing is written before the connection is up
  m.connected();
  CHECK(m.current() == multiplexer::state::probing);
  CHECK_FALSE(m.accepts(64));  // one request until the host answers
  const auto written = frames_in(m.prepare_write());
  REQUIRE(written.size() == 1);
  CHECK(written[0].keep_alive);
  CHECK(written[0].request_id == std::optional<std::uint64_t>(1));
  m.commit_write();

  const auto bytes = answer(1, 1);
  CHECK(f.consume(m, bytes) == bytes.size());
  REQUIRE(f.settled.size() == 1);
  CHECK(f.settled[0] == &first);
  CHECK(*first.result == 1);
  CHECK(m.current() == multiplexer::state::open);
  CHECK(f.knowledge.support == peer_knowledge::keep_alive::yes);
  CHECK(m.accepts(64));
  CHECK_FALSE(m.awaits_answers());
}

TEST_CASE("a host that answers without keep-alive is a COMET host: one message per connection",
          "[unit][multiplexer]") {
  fixture f;
  multiplexer m(f.info, f.knowledge);
  pooled_request r;
  add(m, r, 1);
  m.connected();
  write_queued(m);
  const auto bytes = answer(std::nullopt, "ok", /*keep_alive=*/false);  // COMET echoes no id
  f.consume(m, bytes);
  REQUIRE(f.settled.size() == 1);
  CHECK(*r.result == "ok");
  CHECK(m.current() == multiplexer::state::closed);
  CHECK(f.knowledge.support == peer_knowledge::keep_alive::no);
}

TEST_CASE("answers are matched by request id in any order, and split anywhere", "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  CHECK(m.current() == multiplexer::state::open);
  pooled_request a, b, c;
  add(m, a, 1);
  add(m, b, 2);
  add(m, c, 3);
  CHECK(frames_in(m.prepare_write()).size() == 3);  // one write for all three
  pooled_request d;
  add(m, d, 4);
  CHECK(m.prepare_write().empty());  // a write is in progress: d waits for it
  m.commit_write();
  CHECK(frames_in(m.prepare_write()).size() == 1);
  m.commit_write();

  const std::string bytes = answer(3, "c") + answer(1, "a") + answer(4, "d") + answer(2, "b");
  std::string buffered;
  for (char ch : bytes) {  // byte by byte: every split point
    buffered += ch;
    buffered.erase(0, f.consume(m, buffered));
  }
  CHECK(buffered.empty());
  REQUIRE(f.settled.size() == 4);
  CHECK(f.settled[0] == &c);
  CHECK(f.settled[1] == &a);
  CHECK(f.settled[2] == &d);
  CHECK(f.settled[3] == &b);
  CHECK(*b.result == "b");
}

TEST_CASE("an abandoned request's late answer is dropped and the connection stays usable",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request slow, quick;
  add(m, slow, 1);
  add(m, quick, 2);
  write_queued(m);
  CHECK(m.abandon(slow));
  CHECK_FALSE(m.abandon(slow));
  CHECK(m.has_live_requests());
  f.consume(m, answer(2, "quick"));
  REQUIRE(f.settled.size() == 1);
  CHECK(f.settled[0] == &quick);
  CHECK(m.only_abandoned());
  CHECK(m.awaits_answers());  // the late answer is still due
  f.consume(m, answer(1, "late"));
  CHECK(f.settled.size() == 1);  // dropped
  CHECK_FALSE(slow.result);
  CHECK_FALSE(m.awaits_answers());
  CHECK(m.current() == multiplexer::state::open);
  CHECK(m.accepts(64));
}

TEST_CASE("requests past their deadline time out, and the others keep theirs", "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  const auto now = std::chrono::steady_clock::now();
  pooled_request early, late, abandoned;
  add(m, early, 1, now + 100ms);
  add(m, late, 2, now + 500ms);
  add(m, abandoned, 3, now + 50ms);
  m.abandon(abandoned);
  CHECK(m.earliest_deadline() == now + 100ms);  // an abandoned request holds no deadline
  const auto left = m.expire(now + 200ms, multiplexer::settle_fn(f.record));
  CHECK(left == now + 500ms);
  REQUIRE(f.settled.size() == 1);
  CHECK(f.settled[0] == &early);
  REQUIRE(early.failure);
  CHECK(early.failure->code() == errc::request_timeout);
  CHECK_THAT(early.failure->what(), Catch::Contains("300 ms"));
  CHECK(m.in_flight() == 1);  // the late one; the abandoned one past its deadline is forgotten
}

TEST_CASE("after a too_large refusal the requests written behind it are replayed",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request before, huge, after;
  add(m, before, 1);
  add(m, huge, 2);
  add(m, after, 3);
  write_queued(m);
  f.consume(m, answer(1, "ok") + refusal(2, errc::too_large));
  REQUIRE(f.settled.size() == 2);
  CHECK(*before.result == "ok");
  REQUIRE(huge.failure);
  CHECK(huge.failure->code() == errc::too_large);
  CHECK(f.knowledge.refused_size == huge.content_size);
  CHECK(m.current() == multiplexer::state::closing);
  // The host closes: the request behind the refused one was never read.
  m.fail(error(errc::connection_closed, "closed"), multiplexer::settle_fn(f.record));
  REQUIRE(f.settled.size() == 3);
  CHECK(after.replay);
  CHECK_FALSE(after.failure);
  CHECK(m.current() == multiplexer::state::closed);
}

TEST_CASE("a frame that cannot be read fails every request with protocol_error",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request a, b;
  add(m, a, 1);
  add(m, b, 2);
  f.consume(m, std::string("\x00\x05hello", 7));
  REQUIRE(f.settled.size() == 2);
  for (auto* r : f.settled) {
    REQUIRE(r->failure);
    CHECK(r->failure->code() == errc::protocol_error);
    CHECK_THAT(r->failure->what(), Catch::Contains("Telegram at 127.0.0.1:9 sent a bad frame"));
  }
  CHECK(m.current() == multiplexer::state::closed);
  CHECK_FALSE(m.accepts(64));
}

TEST_CASE("a host's error answer settles its request with the host's code", "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request r;
  add(m, r, 7);
  write_queued(m);
  f.consume(m, refusal(7, errc::no_handler, /*keep_alive=*/true));
  REQUIRE(r.failure);
  CHECK(r.failure->code() == errc::no_handler);
  CHECK(m.current() == multiplexer::state::open);  // an ordinary error answer keeps the connection
}
