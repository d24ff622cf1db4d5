// The pooled connection's rules (framework/src/multiplexer.hpp) without a
// socket: requests in, bytes to write out, received bytes in, settled
// requests out.
#include "multiplexer.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <fstream>
#include <iterator>
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
  // Brings `m` past its first request (id 1, `first`), answered by `reply`.
  void agree(multiplexer& m, const std::string& reply);
  pooled_request first;
};

// A byte-exact vector of docs/protocol.md, "Announced extensions".
std::string extension_vector(std::string_view name) {
  std::string path = COMET_VECTORS_DIR;
  path.append("/extensions/").append(name);
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

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
  m.commit_write(m.prepare_write().size());
}

// The first answer of a comet-net host that speaks `features`.
std::string announcing_answer(std::uint64_t id, std::uint32_t features,
                              std::optional<std::uint64_t> window = std::nullopt,
                              std::optional<std::uint64_t> window_bytes = std::nullopt) {
  frame_header h;
  h.keep_alive = true;
  h.request_id = id;
  h.features = features;
  h.window = window;
  h.window_bytes = window_bytes;
  return encode_frame(h, encode_response(id));
}

// A control frame written by hand: the codec writes only the kinds it knows.
std::string control_frame(std::string_view kind, std::optional<std::uint64_t> id) {
  std::string header = R"({"byteorder": "little", "content-type": "text/json", )"
                       R"("content-encoding": "utf-8", "content-length": 0, "keep-alive": true)";
  if (id) header.append(", \"request-id\": ").append(std::to_string(*id));
  header.append(", \"control\": \"").append(kind).append("\"}");
  std::string out(2, '\0');
  out[0] = static_cast<char>(header.size() >> 8);
  out[1] = static_cast<char>(header.size() & 0xFF);
  out.append(header);
  return out;
}

std::string going_away(std::optional<std::uint64_t> last) {
  frame_header h;
  h.keep_alive = true;
  h.kind = frame_kind::going_away;
  h.last_request_id = last;
  return encode_frame(h, {});
}

std::vector<std::uint64_t> ids_in(std::string_view bytes) {
  std::vector<std::uint64_t> ids;
  for (const auto& h : frames_in(bytes)) ids.push_back(h.request_id.value_or(0));
  return ids;
}

void add(multiplexer& m, pooled_request& r, std::uint64_t id,
         std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max()) {
  r.id = id;
  r.deadline = deadline;
  r.timeout = 300ms;
  m.add(r, content_of("echo", static_cast<std::int64_t>(id)));
}

void fixture::agree(multiplexer& m, const std::string& reply) {
  add(m, first, 1);
  write_queued(m);
  REQUIRE(consume(m, reply) == reply.size());
  REQUIRE(settled.size() == 1);
  settled.clear();
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
  CHECK(written[0].features == std::optional<std::uint32_t>(feature::all));  // announced
  write_queued(m);

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
  const auto first_write = m.prepare_write();
  CHECK(frames_in(first_write).size() == 3);  // one write for all three
  pooled_request d;
  add(m, d, 4);
  CHECK(m.prepare_write().empty());  // a write is in progress: d waits for it
  m.commit_write(first_write.size());
  const auto second_write = m.prepare_write();
  CHECK(frames_in(second_write).size() == 1);
  m.commit_write(second_write.size());

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
  CHECK(m.cancel(slow) == multiplexer::cancelled_as::abandoned);  // no "cancel" agreed
  CHECK(m.cancel(slow) == multiplexer::cancelled_as::kept);
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
  write_queued(m);
  CHECK(m.cancel(abandoned) == multiplexer::cancelled_as::abandoned);
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
  pooled_request a, b, unwritten;
  add(m, a, 1);
  add(m, b, 2);
  write_queued(m);
  add(m, unwritten, 3);
  f.consume(m, std::string("\x00\x05hello", 7));
  REQUIRE(f.settled.size() == 3);
  CHECK(unwritten.replay);  // never reached the host
  f.settled.pop_back();
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

TEST_CASE("the first request of a connection announces the features byte for byte",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request r1, r2;
  add(m, r1, 1);
  const auto bytes = m.prepare_write();
  CHECK(bytes == extension_vector("first_request.bin"));
  m.commit_write(bytes.size());
  add(m, r2, 2);
  const auto later = frames_in(m.prepare_write());
  REQUIRE(later.size() == 1);
  CHECK_FALSE(later[0].features);  // only the first request announces them
  CHECK_FALSE(m.agreed());         // nothing is agreed before the host answers
}

TEST_CASE("the host's answer sets the agreed features and its window caps what the connection takes",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  SECTION("window") {
    f.agree(m, announcing_answer(1, feature::all, 2));
    CHECK(m.agreed() == std::optional<std::uint32_t>(feature::all));
    pooled_request a, b;
    CHECK(m.accepts(64));
    add(m, a, 2);
    CHECK(m.accepts(64));
    add(m, b, 3);
    CHECK_FALSE(m.accepts(64));  // the host's window of 2, below our 64
    write_queued(m);
    f.consume(m, answer(2, 2));
    CHECK(m.accepts(64));
  }
  SECTION("window-bytes") {
    f.agree(m, announcing_answer(1, feature::cancel, std::nullopt, 50));
    CHECK(m.agreed() == std::optional<std::uint32_t>(feature::cancel));
    pooled_request a;
    CHECK(m.accepts(64, 1000));  // alone, even a request past the budget goes
    add(m, a, 2);                // 30 content bytes
    REQUIRE(a.content_size == 30);
    CHECK(m.accepts(64, 20));
    CHECK_FALSE(m.accepts(64, 21));  // 30 + 21 would pass 50
  }
  SECTION("a host that lists no features agrees none, and its window is ours") {
    f.agree(m, answer(1, 1));
    CHECK(m.agreed() == std::optional<std::uint32_t>(0));
    std::vector<pooled_request> many(63);
    for (std::size_t i = 0; i < many.size(); ++i) add(m, many[i], 2 + i);
    CHECK(m.accepts(64));
    pooled_request last;
    add(m, last, 100);
    CHECK_FALSE(m.accepts(64));
  }
}

TEST_CASE("write status follows the bytes each write handed to the socket", "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request a, b, c;
  add(m, a, 1);
  add(m, b, 2);
  add(m, c, 3);
  const std::string all(m.prepare_write());
  const auto sizes = [&] {
    std::vector<std::size_t> out;
    frame_decoder d(1 << 20);
    std::string_view rest = all;
    while (!rest.empty()) {
      REQUIRE(d.decode(rest) == frame_decoder::status::complete);
      out.push_back(d.frame_size());
      rest.remove_prefix(d.frame_size());
      d.reset();
    }
    return out;
  }();
  REQUIRE(sizes.size() == 3);

  SECTION("a short write leaves the rest to be written first") {
    m.commit_write(sizes[0] - 5);
    CHECK(m.prepare_write() == std::string_view(all).substr(sizes[0] - 5));
  }
  SECTION("a lost connection replays what was not all written and fails what was") {
    m.write_failed(sizes[0] + 3);  // a whole, b in part, c not at all
    m.fail(error(errc::connection_closed, "closed"), multiplexer::settle_fn(f.record));
    REQUIRE(f.settled.size() == 3);
    CHECK_FALSE(a.replay);
    REQUIRE(a.failure);
    CHECK(a.failure->code() == errc::connection_closed);  // it may have run
    for (auto* r : {&b, &c}) {
      CHECK(r->replay);
      REQUIRE(r->failure);  // what the send ends with once it stops replaying
      CHECK(r->failure->code() == errc::unread);
      CHECK(r->failure->safe_to_retry());
      CHECK_THAT(r->failure->what(),
                 Catch::StartsWith("closed") &&
                     Catch::EndsWith("; this request was not yet written, so it is safe to send again"));
    }
  }
  SECTION("a write in progress when the connection is lost may have reached the host") {
    pooled_request d;
    add(m, d, 4);  // waiting behind the write
    m.fail(error(errc::connection_closed, "closed"), multiplexer::settle_fn(f.record));
    REQUIRE(f.settled.size() == 4);
    for (auto* r : {&a, &b, &c}) {
      CHECK_FALSE(r->replay);
      CHECK((r->failure && r->failure->code() == errc::connection_closed));
    }
    CHECK(d.replay);
  }
}

TEST_CASE("requests on a connection that never came up fail with its reason, not replayed",
          "[unit][multiplexer]") {
  fixture f;
  f.knowledge.support = peer_knowledge::keep_alive::yes;
  multiplexer m(f.info, f.knowledge);
  pooled_request a;
  add(m, a, 1);
  m.fail(error(errc::peer_offline, "offline"), multiplexer::settle_fn(f.record));
  REQUIRE(a.failure);
  CHECK(a.failure->code() == errc::peer_offline);
  CHECK_FALSE(a.replay);
}

TEST_CASE("cancelling an unwritten request drops its bytes, so total cancellation holds",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request a, b, c, d;
  add(m, a, 1);
  write_queued(m);
  add(m, b, 2);
  add(m, c, 3);
  add(m, d, 4);
  // Total cancellation alone: honoured for the waiting request only.
  CHECK(m.cancel(b, /*only_if_unwritten=*/true) == multiplexer::cancelled_as::dropped);
  CHECK(m.cancel(a, /*only_if_unwritten=*/true) == multiplexer::cancelled_as::kept);
  CHECK(m.in_flight() == 3);  // a, c, d
  CHECK(m.cancel(d) == multiplexer::cancelled_as::dropped);
  const auto next = m.prepare_write();
  CHECK(ids_in(next) == std::vector<std::uint64_t>{3});  // no trace of b or d
  // A request in a write in progress is no longer droppable.
  CHECK(m.cancel(c, /*only_if_unwritten=*/true) == multiplexer::cancelled_as::kept);
  // The offsets moved with the dropped bytes: c is written once its write is.
  m.write_failed(next.size());
  m.fail(error(errc::connection_closed, "closed"), multiplexer::settle_fn(f.record));
  REQUIRE(f.settled.size() == 2);
  CHECK((c.failure && c.failure->code() == errc::connection_closed && !c.replay));
}

TEST_CASE("the request that announces the features is not dropped: its answer says what the host speaks",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request a;
  add(m, a, 1);
  CHECK(m.cancel(a, /*only_if_unwritten=*/true) == multiplexer::cancelled_as::kept);
  CHECK(m.cancel(a) == multiplexer::cancelled_as::abandoned);
  write_queued(m);
  f.consume(m, announcing_answer(1, feature::all));
  CHECK(f.settled.empty());  // its answer is dropped, its features are kept
  CHECK(m.agreed() == std::optional<std::uint32_t>(feature::all));
}

TEST_CASE("cancelling a written request queues exactly a cancel frame when the host agreed cancel",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  SECTION("agreed") {
    f.agree(m, announcing_answer(1, feature::all));
    pooled_request r;
    add(m, r, 7);
    write_queued(m);
    CHECK(m.cancel(r) == multiplexer::cancelled_as::on_wire);
    CHECK_FALSE(m.awaits_answers());  // the entry is gone at once
    const auto bytes = m.prepare_write();
    CHECK(bytes == extension_vector("cancel.bin"));
    m.commit_write(bytes.size());
    // A late answer for the cancelled id is read and dropped.
    const auto late = answer(7, "late");
    CHECK(f.consume(m, late) == late.size());
    CHECK(f.settled.empty());
    CHECK(m.current() == multiplexer::state::open);
  }
  SECTION("being written") {
    f.agree(m, announcing_answer(1, feature::cancel));
    pooled_request r;
    add(m, r, 7);
    const auto in_write = m.prepare_write();
    CHECK(m.cancel(r) == multiplexer::cancelled_as::on_wire);
    m.commit_write(in_write.size());
    CHECK(m.prepare_write() == extension_vector("cancel.bin"));
  }
  SECTION("not agreed") {
    f.agree(m, announcing_answer(1, feature::going_away));
    pooled_request r;
    add(m, r, 7);
    write_queued(m);
    CHECK(m.cancel(r) == multiplexer::cancelled_as::abandoned);
    CHECK(m.prepare_write().empty());
    CHECK(m.awaits_answers());  // its late answer is still due
  }
  SECTION("a host that lists no features") {
    f.agree(m, answer(1, 1));
    pooled_request r;
    add(m, r, 7);
    write_queued(m);
    CHECK(m.cancel(r) == multiplexer::cancelled_as::abandoned);
    CHECK(m.prepare_write().empty());
  }
  SECTION("before the host answered the first request") {
    pooled_request r;
    add(m, r, 7);
    write_queued(m);
    CHECK(m.cancel(r) == multiplexer::cancelled_as::abandoned);
    CHECK(m.prepare_write().empty());
  }
}

TEST_CASE("a going-away notice ends the requests the host did not read as unread and keeps the others",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all));
  pooled_request r11, r12, r13, r14, r15;
  add(m, r11, 11);
  add(m, r12, 12);
  add(m, r13, 13);
  write_queued(m);
  add(m, r14, 14);  // in a write
  const auto in_write = m.prepare_write();
  add(m, r15, 15);  // waiting
  const auto notice = extension_vector("going_away.bin");  // last-request-id 12
  CHECK(f.consume(m, notice) == notice.size());
  REQUIRE(f.settled.size() == 3);
  for (auto* r : {&r13, &r14, &r15}) {
    REQUIRE(r->failure);
    CHECK(r->failure->code() == errc::unread);
    CHECK(r->failure->safe_to_retry());
    // Sent again by the pool, on another connection (the host may only be
    // closing an old one); the failure is what the send ends with if no
    // host takes it.
    CHECK(r->replay);
    CHECK(r->going_away);
    CHECK_THAT(r->failure->what(), Catch::Contains("Telegram at 127.0.0.1:9 is going away and did not "
                                                   "read this request; it is safe to send again"));
  }
  CHECK_FALSE(m.accepts(64));
  CHECK(m.current() == multiplexer::state::closing);
  m.commit_write(in_write.size());
  CHECK(m.prepare_write().empty());  // nothing more is written: 15's frame is gone
  // An answer for a request it already ended is dropped; the others come.
  f.consume(m, answer(13, "late") + answer(11, "a"));
  REQUIRE(f.settled.size() == 4);
  CHECK(f.settled[3] == &r11);
  CHECK(m.current() == multiplexer::state::closing);
  f.consume(m, answer(12, "b"));
  REQUIRE(f.settled.size() == 5);
  CHECK(*r12.result == "b");
  CHECK(m.current() == multiplexer::state::closed);
}

TEST_CASE("a going-away notice without a last request id ends every request unread",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request a, b;
  add(m, a, 1);
  add(m, b, 2);
  write_queued(m);
  // From a host that announced nothing: honoured all the same.
  f.consume(m, going_away(std::nullopt));
  REQUIRE(f.settled.size() == 2);
  CHECK((a.failure && a.failure->code() == errc::unread));
  CHECK((b.failure && b.failure->code() == errc::unread));
  CHECK(m.current() == multiplexer::state::closed);
}

TEST_CASE("control frames of unknown kinds, and cancels from a host, are ignored",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  pooled_request r;
  add(m, r, 1);
  write_queued(m);
  // None is taken for an answer, not even the untagged one beside a
  // single pending request (which a COMET host's answer would be).
  const std::string frames = control_frame("pause", std::nullopt) + control_frame("pause", 1) +
                             control_frame("cancel", 1);
  CHECK(f.consume(m, frames) == frames.size());
  CHECK(f.settled.empty());
  CHECK(m.current() == multiplexer::state::open);
  f.consume(m, answer(1, "ok"));
  REQUIRE(f.settled.size() == 1);
  CHECK(*r.result == "ok");
}

TEST_CASE("a request past its deadline is taken off the wire as a cancelled one is",
          "[unit][multiplexer]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all));
  const auto now = std::chrono::steady_clock::now();
  pooled_request written, waiting, later;
  add(m, written, 7, now + 10ms);
  write_queued(m);
  add(m, waiting, 8, now + 10ms);
  add(m, later, 9, now + 1s);
  CHECK(m.expire(now + 20ms, multiplexer::settle_fn(f.record)) == now + 1s);
  REQUIRE(f.settled.size() == 2);
  CHECK((written.failure && written.failure->code() == errc::request_timeout));
  CHECK((waiting.failure && waiting.failure->code() == errc::request_timeout));
  CHECK(m.in_flight() == 1);
  // Queued now: 9's request (8's was dropped from before it) and 7's cancel.
  const auto frames = frames_in(m.prepare_write());
  REQUIRE(frames.size() == 2);
  CHECK(frames[0].request_id == std::optional<std::uint64_t>(9));
  CHECK(frames[0].kind == frame_kind::message);
  CHECK(frames[1].request_id == std::optional<std::uint64_t>(7));
  CHECK(frames[1].kind == frame_kind::cancel);
}

// --- Streams and subscriptions (docs/protocol.md) ---------------------------

namespace {

// What a connection reported for one stream.
struct recorded_stream : pooled_stream {
  int begun = 0;
  std::optional<std::uint64_t> begun_at;
  std::vector<std::pair<std::optional<std::uint64_t>, json::value>> items;
  bool ended = false;
  std::optional<error> failure;
  std::optional<error> replayed;

  void stream_begun(std::optional<std::uint64_t> sequence) override {
    ++begun;
    begun_at = sequence;
  }
  void stream_item(std::optional<std::uint64_t> sequence, json::value value, std::size_t) override {
    items.emplace_back(sequence, std::move(value));
  }
  void stream_ended(std::optional<error> why) override {
    ended = true;
    failure = std::move(why);
  }
  void stream_replay(const error& why) override { replayed = why; }
  errc code() const { return static_cast<errc>(failure->code().value()); }
};

// A host's frame for a stream: begin, item (with a result) or end (with an
// error response, if `failure`).
std::string stream_frame(std::uint64_t id, stream_part part, std::optional<json::value> result = {},
                         std::optional<std::uint64_t> sequence = {},
                         std::optional<errc> failure = {}) {
  frame_header h;
  h.keep_alive = true;
  h.request_id = id;
  h.stream = part;
  h.sequence = sequence;
  std::string content;
  if (result) content = encode_response(*result);
  if (failure) content = encode_error_response(*failure, "the handler failed");
  return encode_frame(h, content);
}

void add_stream(multiplexer& m, recorded_stream& s, std::uint64_t id,
                stream_part kind = stream_part::open, std::uint64_t credit = 256) {
  s.id = id;
  m.add_stream(s, kind, content_of("scan", json::object{{"points", 2}}), credit);
}

}  // namespace

TEST_CASE("a stream's opening request is written byte for byte and does not count toward the window",
          "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all, /*window=*/1));
  CHECK(m.takes_streams());
  pooled_request busy;
  add(m, busy, 2);
  write_queued(m);
  CHECK_FALSE(m.accepts(64));  // the host's window of 1 is full
  recorded_stream s;
  add_stream(m, s, 3);
  CHECK(m.prepare_write() == extension_vector("stream_open.bin"));
  m.commit_write(extension_vector("stream_open.bin").size());
  CHECK(m.streams() == 1);
  CHECK_FALSE(m.accepts(64));  // still the request's window, not the stream's
  CHECK(m.awaits_answers());
  CHECK(m.has_live_requests());
}

TEST_CASE("a stream may be a connection's first request: it announces the features and probes",
          "[unit][multiplexer][streams]") {
  fixture f;
  multiplexer m(f.info, f.knowledge);
  recorded_stream s;
  add_stream(m, s, 1, stream_part::subscribe, 16);
  m.connected();
  const auto bytes = m.prepare_write();
  const auto written = frames_in(bytes);
  REQUIRE(written.size() == 1);
  CHECK(written[0].stream == stream_part::subscribe);
  CHECK(written[0].credit == std::optional<std::uint64_t>(16));
  CHECK(written[0].request_id == std::optional<std::uint64_t>(1));
  CHECK(written[0].features == std::optional<std::uint32_t>(feature::all));
  m.commit_write(bytes.size());
  // The host's begin answers the first request: it carries the features.
  frame_header h;
  h.keep_alive = true;
  h.request_id = 1;
  h.stream = stream_part::begin;
  h.features = feature::all;
  h.sequence = 16;  // a subscription's: 16 were published before it
  const std::string begin = encode_frame(h, {});
  CHECK(f.consume(m, begin) == begin.size());
  CHECK(s.begun == 1);
  CHECK(s.begun_at == std::optional<std::uint64_t>(16));
  CHECK(m.current() == multiplexer::state::open);
  CHECK(f.knowledge.support == peer_knowledge::keep_alive::yes);
  CHECK(m.agreed() == std::optional<std::uint32_t>(feature::all));
  const auto items = stream_frame(1, stream_part::item, 21.5, 17) + stream_frame(1, stream_part::item, 22.0, 19);
  f.consume(m, items);
  REQUIRE(s.items.size() == 2);
  CHECK(s.items[0].first == std::optional<std::uint64_t>(17));
  CHECK(s.items[0].second == 21.5);
  CHECK(s.items[1].first == std::optional<std::uint64_t>(19));
  CHECK(f.settled.empty());
}

TEST_CASE("a stream's begin, items and end reach it while other answers interleave",
          "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all));
  recorded_stream s;
  add_stream(m, s, 2);
  pooled_request r;
  add(m, r, 3);
  write_queued(m);
  const std::string bytes = stream_frame(2, stream_part::begin) + stream_frame(2, stream_part::item, 1) +
                            answer(3, "three") + stream_frame(2, stream_part::item, json::object{{"x", 0.5}}) +
                            stream_frame(2, stream_part::end);
  std::string buffered;
  for (char ch : bytes) {  // split anywhere
    buffered += ch;
    buffered.erase(0, f.consume(m, buffered));
  }
  CHECK(s.begun == 1);
  REQUIRE(s.items.size() == 2);
  CHECK(s.items[0].second == 1);
  CHECK(s.items[1].second == json::object{{"x", 0.5}});
  CHECK_FALSE(s.items[0].first);  // a stream's items have no sequence
  CHECK(s.ended);
  CHECK_FALSE(s.failure);
  REQUIRE(f.settled.size() == 1);
  CHECK(*r.result == "three");
  CHECK(m.streams() == 0);
  CHECK_FALSE(m.awaits_answers());
  // A late frame for the id is dropped.
  f.consume(m, stream_frame(2, stream_part::item, 9));
  CHECK(s.items.size() == 2);
}

TEST_CASE("a stream's error end, and the host's refusal, end it with the host's code",
          "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all));
  recorded_stream ended, refused;
  add_stream(m, ended, 2);
  add_stream(m, refused, 3);
  write_queued(m);
  f.consume(m, stream_frame(2, stream_part::begin) +
                   stream_frame(2, stream_part::end, std::nullopt, std::nullopt, errc::handler_failed) +
                   refusal(3, errc::too_many_streams, /*keep_alive=*/true));
  REQUIRE(ended.ended);
  REQUIRE(ended.failure);
  CHECK(ended.code() == errc::handler_failed);
  REQUIRE(refused.ended);
  REQUIRE(refused.failure);
  CHECK(refused.code() == errc::too_many_streams);
  CHECK(refused.begun == 0);
  CHECK(m.current() == multiplexer::state::open);
  CHECK_FALSE(f.knowledge.no_streams);
}

TEST_CASE("the byte-exact end with an error ends the stream with shutting_down",
          "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all));
  pooled_request r2;
  add(m, r2, 2);  // ids 2 and 3: the vector's stream is 3
  recorded_stream s;
  add_stream(m, s, 3);
  write_queued(m);
  f.consume(m, extension_vector("stream_begin.bin") + extension_vector("stream_item.bin") +
                   extension_vector("stream_end_error.bin"));
  CHECK(s.begun == 1);
  REQUIRE(s.items.size() == 1);
  CHECK(s.items[0].second == json::object{{"x", 0.5}});
  REQUIRE(s.failure);
  CHECK(s.code() == errc::shutting_down);
}

TEST_CASE("an ordinary answer to a stream's request means the host does not stream: unsupported",
          "[unit][multiplexer][streams]") {
  SECTION("a COMET host: no id, no keep-alive, then it closes") {
    fixture f;
    multiplexer m(f.info, f.knowledge);
    recorded_stream s;
    add_stream(m, s, 1);
    m.connected();
    write_queued(m);
    f.consume(m, answer(std::nullopt, "Error: no such action", /*keep_alive=*/false));
    REQUIRE(s.ended);
    REQUIRE(s.failure);
    CHECK(s.code() == errc::unsupported);
    CHECK_THAT(s.failure->what(), Catch::Contains("cannot stream"));
    CHECK(m.current() == multiplexer::state::closed);
    CHECK(f.knowledge.support == peer_knowledge::keep_alive::no);
    CHECK(f.knowledge.no_streams);
  }
  SECTION("an older comet-net host: it answers as a plain request, agreeing no stream") {
    fixture f;
    multiplexer m(f.info, f.knowledge);
    recorded_stream s;
    add_stream(m, s, 1);
    m.connected();
    write_queued(m);
    f.consume(m, announcing_answer(1, feature::cancel | feature::going_away));
    REQUIRE(s.failure);
    CHECK(s.code() == errc::unsupported);
    CHECK(f.knowledge.no_streams);
    CHECK_FALSE(m.takes_streams());
    CHECK(m.current() == multiplexer::state::open);  // requests still go on it
  }
}

TEST_CASE("streams behind a first answer that did not agree stream fail unsupported, unwritten ones unsent",
          "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();  // known to keep connections: streams may follow the first request at once
  pooled_request r;
  add(m, r, 1);
  recorded_stream written, queued;
  add_stream(m, written, 2);
  write_queued(m);
  add_stream(m, queued, 3);
  f.consume(m, announcing_answer(1, feature::cancel));
  REQUIRE(written.failure);
  CHECK(written.code() == errc::unsupported);
  REQUIRE(queued.failure);
  CHECK(queued.code() == errc::unsupported);
  CHECK(m.prepare_write().empty());  // the unwritten open was dropped
  CHECK(m.streams() == 0);
  // The host's late plain answer to the written one is dropped.
  f.consume(m, answer(2, "plain"));
  CHECK(f.settled.size() == 1);
}

TEST_CASE("credit grants are credit frames byte for byte, only once stream was agreed",
          "[unit][multiplexer][streams]") {
  fixture f;
  multiplexer m(f.info, f.knowledge);
  recorded_stream first;
  add_stream(m, first, 1);
  m.connected();
  write_queued(m);
  CHECK_FALSE(m.grant(first, 10));  // what the host speaks is not known yet
  CHECK(m.prepare_write().empty());
  frame_header h;
  h.keep_alive = true;
  h.request_id = 1;
  h.stream = stream_part::begin;
  h.features = feature::all;
  f.consume(m, encode_frame(h, {}));
  pooled_request r2;
  add(m, r2, 2);
  recorded_stream s;
  add_stream(m, s, 3);
  write_queued(m);
  CHECK(m.grant(s, 128));
  CHECK(m.prepare_write() == extension_vector("credit.bin"));
  m.commit_write(extension_vector("credit.bin").size());
  recorded_stream stranger;
  stranger.id = 9;
  CHECK_FALSE(m.grant(stranger, 1));  // not listed
}

TEST_CASE("closing a stream drops its unwritten request, or cancels it on the wire, and forgets its id",
          "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all));
  recorded_stream written, unwritten;
  add_stream(m, written, 2);
  write_queued(m);
  add_stream(m, unwritten, 3);
  pooled_request after;
  add(m, after, 4);
  CHECK(m.close_stream(unwritten) == multiplexer::cancelled_as::dropped);
  const auto bytes = m.prepare_write();
  CHECK(ids_in(bytes) == std::vector<std::uint64_t>{4});  // only the request behind it
  m.commit_write(bytes.size());
  f.consume(m, stream_frame(2, stream_part::begin));
  CHECK(m.close_stream(written) == multiplexer::cancelled_as::on_wire);
  const auto frames = frames_in(m.prepare_write());
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].kind == frame_kind::cancel);
  CHECK(frames[0].request_id == std::optional<std::uint64_t>(2));
  write_queued(m);
  CHECK(m.close_stream(written) == multiplexer::cancelled_as::kept);
  f.consume(m, stream_frame(2, stream_part::item, 1) + stream_frame(2, stream_part::end));
  CHECK(written.items.empty());  // late frames are dropped
  CHECK_FALSE(written.ended);    // it is no longer reported
  CHECK(unwritten.begun == 0);
  CHECK(m.streams() == 0);
}

TEST_CASE("a stream closed before the host's first answer is read until it, then cancelled",
          "[unit][multiplexer][streams]") {
  fixture f;
  multiplexer m(f.info, f.knowledge);
  recorded_stream s;
  add_stream(m, s, 1);
  m.connected();
  write_queued(m);
  CHECK(m.close_stream(s) == multiplexer::cancelled_as::abandoned);
  CHECK(m.awaits_answers());          // its answer says what the host speaks
  CHECK_FALSE(m.has_live_requests());  // but nobody waits for it
  frame_header h;
  h.keep_alive = true;
  h.request_id = 1;
  h.stream = stream_part::begin;
  h.features = feature::all;
  f.consume(m, encode_frame(h, {}));
  CHECK(s.begun == 0);
  CHECK(m.agreed() == std::optional<std::uint32_t>(feature::all));
  const auto frames = frames_in(m.prepare_write());
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].kind == frame_kind::cancel);
  CHECK(frames[0].request_id == std::optional<std::uint64_t>(1));
  CHECK_FALSE(m.awaits_answers());
}

TEST_CASE("without cancel agreed, a closed stream is only forgotten", "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::stream));
  recorded_stream s;
  add_stream(m, s, 2);
  write_queued(m);
  CHECK(m.close_stream(s) == multiplexer::cancelled_as::dropped);
  CHECK(m.prepare_write().empty());  // no cancel frame
  CHECK_FALSE(m.awaits_answers());
}

TEST_CASE("a lost connection ends its streams with the error, and replays an unwritten open",
          "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all));
  recorded_stream open, unwritten;
  add_stream(m, open, 2);
  write_queued(m);
  f.consume(m, stream_frame(2, stream_part::begin));
  add_stream(m, unwritten, 3);
  m.fail(error(errc::connection_closed, "lost"), multiplexer::settle_fn(f.record));
  REQUIRE(open.failure);
  CHECK(open.code() == errc::connection_closed);
  CHECK_FALSE(open.replayed);
  CHECK_FALSE(unwritten.ended);
  REQUIRE(unwritten.replayed);
  CHECK(unwritten.replayed->code() == errc::unread);
  CHECK(m.current() == multiplexer::state::closed);
}

TEST_CASE("a going-away notice ends the streams the host did not read as unread and keeps the others",
          "[unit][multiplexer][streams]") {
  fixture f;
  auto m = f.open();
  f.agree(m, announcing_answer(1, feature::all));
  recorded_stream read, unread;
  add_stream(m, read, 2);
  add_stream(m, unread, 3);
  write_queued(m);
  f.consume(m, stream_frame(2, stream_part::begin) + going_away(2));
  REQUIRE(unread.failure);
  CHECK(unread.code() == errc::unread);
  CHECK_FALSE(read.ended);
  CHECK(m.current() == multiplexer::state::closing);
  CHECK_FALSE(m.takes_streams());
  CHECK_FALSE(m.grant(read, 1));  // nothing more is written
  f.consume(m, stream_frame(2, stream_part::end, std::nullopt, std::nullopt, errc::shutting_down));
  REQUIRE(read.failure);
  CHECK(read.code() == errc::shutting_down);
  CHECK(m.current() == multiplexer::state::closed);
}
