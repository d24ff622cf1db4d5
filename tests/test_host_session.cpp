// The host connection's rules (framework/src/host_session.hpp) without a
// socket: frames in, events to a recording driver, answers in, bytes out.
#include "host_session.hpp"

#include <catch2/catch.hpp>

#include <boost/json.hpp>

#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <vector>

using namespace comet;
namespace json = boost::json;

namespace {

// Records what the session asks; refuses as a host would when told to.
struct recording_driver final : host_session::driver {
  struct started {
    host_session::handle h;
    request_message request;
    std::optional<std::uint64_t> id;
    bool ordered;
    std::string traceparent;
  };
  std::vector<started> runs;
  std::vector<host_session::handle> cancelled;
  std::size_t responses = 0;
  // Actions answered inline (plain functions): the value is echoed.
  std::set<std::string> inline_actions;
  std::string required_token;
  bool stopping = false;  // the host began to stop: prepare refuses
  host_session* session = nullptr;

  std::variant<request_message, encoded_response> prepare(const frame_header& header,
                                                          std::string_view content) override {
    if (!required_token.empty() && header.auth_token != required_token)
      return error_response(errc::unauthorized, "this host requires an auth-token");
    if (stopping) return error_response(errc::shutting_down, "the host is shutting down");
    std::string why;
    auto r = decode_request(content, why);
    if (!r) return error_response(errc::bad_request, why);
    return std::move(*r);
  }
  void run(host_session::handle h, request_message& request, std::optional<std::uint64_t> id,
           bool ordered, std::string_view traceparent) override {
    if (inline_actions.count(request.action)) {
      encoded_response now{encode_response(request.value), std::nullopt};
      return session->answered(h, now);
    }
    runs.push_back({h, std::move(request), id, ordered, std::string(traceparent)});
  }
  void cancel(host_session::handle h) override { cancelled.push_back(h); }
  void responded(host_session::handle, const encoded_response&) override { ++responses; }

  struct stream_started {
    host_session::handle h;
    request_message request;
    std::uint64_t id;
    bool subscribe;
    std::string traceparent;
  };
  std::vector<stream_started> streams;
  std::vector<host_session::handle> streams_cancelled;
  std::vector<host_session::handle> credited_streams;
  std::set<std::string> stream_actions{"scan"};
  std::optional<encoded_response> admit_stream(const request_message& request, bool subscribe) override {
    if (subscribe)
      return request.action == "subscribe"
                 ? std::nullopt
                 : std::optional(error_response(errc::bad_request, "subscribe's action is subscribe"));
    if (!stream_actions.count(request.action))
      return error_response(errc::no_handler, "no stream handler for action '" + request.action + "'");
    return std::nullopt;
  }
  std::optional<std::uint64_t> run_stream(host_session::handle h, request_message& request,
                                          std::uint64_t id, bool subscribe,
                                          std::string_view traceparent) override {
    streams.push_back({h, std::move(request), id, subscribe, std::string(traceparent)});
    if (subscribe) return topic_sequence;
    return std::nullopt;
  }
  std::uint64_t topic_sequence = 16;
  void cancel_stream(host_session::handle h) override { streams_cancelled.push_back(h); }
  void credited(host_session::handle h) override { credited_streams.push_back(h); }
};

struct fixture {
  explicit fixture(host_session_limits limits = defaults()) : session(limits, driver, peer) {
    driver.session = &session;
  }
  static host_session_limits defaults() { return {1 << 20, 4, 1 << 20, 1 << 20}; }

  recording_driver driver;
  endpoint peer{"127.0.0.1", 9};
  host_session session;

  // Feeds bytes; returns how many were used.
  std::size_t feed(std::string_view bytes) { return session.consume(bytes); }
  // What the session wants written, as if the socket took it all.
  std::string written() {
    std::string out(session.prepare_write());
    session.commit_write();
    return out;
  }
  void answer(std::size_t run_index, const json::value& result) {
    session.answered(driver.runs.at(run_index).h, {encode_response(result), std::nullopt});
  }
};

struct decoded {
  frame_header header;
  std::string content;
};

std::vector<decoded> frames_in(std::string_view bytes) {
  std::vector<decoded> out;
  frame_decoder d(1 << 20);
  while (!bytes.empty()) {
    REQUIRE(d.decode(bytes) == frame_decoder::status::complete);
    out.push_back({d.header(), std::string(d.content())});
    bytes.remove_prefix(d.frame_size());
    d.reset();
  }
  return out;
}

std::optional<errc> code_of(const decoded& f) { return decode_response(f.content).error; }

std::string request(std::optional<std::uint64_t> id, const json::value& v, bool keep_alive = true,
                    std::optional<std::uint32_t> features = std::nullopt,
                    std::string_view action = "work") {
  frame_header h;
  h.keep_alive = keep_alive;
  h.request_id = id;
  h.features = features;
  return encode_frame(h, encode_request(action, v));
}

std::string control(frame_kind kind, std::optional<std::uint64_t> id) {
  frame_header h;
  h.keep_alive = true;
  h.kind = kind;
  h.request_id = id;
  return encode_frame(h, "");
}

// The codec writes no kind it does not know: this one is written by hand.
std::string unknown_control() {
  const std::string_view header =
      R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", )"
      R"("content-length": 0, "keep-alive": true, "request-id": 1, "control": "pause"})";
  std::string out;
  out += static_cast<char>(header.size() >> 8);
  out += static_cast<char>(header.size() & 0xFF);
  out += header;
  return out;
}

std::string vector_bytes(const std::string& name) {
  std::string path = COMET_VECTORS_DIR;
  path += '/';
  path += name;
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_CASE("session: tagged requests run side by side and are answered as they complete",
          "[unit][host_session]") {
  fixture f;
  const std::string bytes = request(1, 1) + request(2, 2) + request(3, 3);
  CHECK(f.feed(bytes) == bytes.size());
  REQUIRE(f.driver.runs.size() == 3);
  CHECK_FALSE(f.driver.runs[0].ordered);
  f.answer(2, 3);
  f.answer(0, 1);
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 2);
  CHECK(out[0].header.request_id == 3u);
  CHECK(out[1].header.request_id == 1u);
  CHECK(out[0].header.keep_alive);
  CHECK(f.session.in_flight() == 1);
  CHECK(f.session.reading());
}

TEST_CASE("session: untagged requests run one at a time and are answered in order",
          "[unit][host_session]") {
  fixture f;
  f.feed(request(std::nullopt, 1) + request(std::nullopt, 2));
  REQUIRE(f.driver.runs.size() == 1);  // the second waits for the first
  CHECK(f.driver.runs[0].ordered);
  CHECK(f.session.in_flight() == 2);
  f.answer(0, 1);
  REQUIRE(f.driver.runs.size() == 2);
  f.answer(1, 2);
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 2);
  CHECK(decode_response(out[0].content).result == 1);
  CHECK(decode_response(out[1].content).result == 2);
  CHECK(f.session.idle());
}

TEST_CASE("session: an inline answer goes out at once, with the next ordered request started",
          "[unit][host_session]") {
  fixture f;
  f.driver.inline_actions = {"now"};
  f.feed(request(std::nullopt, 1, true, std::nullopt, "now") + request(std::nullopt, 2) +
         request(std::nullopt, 3, true, std::nullopt, "now"));
  REQUIRE(f.driver.runs.size() == 1);
  CHECK(frames_in(f.written()).size() == 1);
  f.answer(0, 2);
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 2);  // the slow one's answer, then the inline one behind it
  CHECK(decode_response(out[1].content).result == 3);
  CHECK(f.session.idle());
}

TEST_CASE("session: an old-style peer gets exactly today's answer frame", "[unit][host_session]") {
  fixture f;
  f.driver.inline_actions = {"echo"};
  f.feed(request(5, "x", true, std::nullopt, "echo") + request(6, "y", true, std::nullopt, "echo"));
  frame_header h;
  h.keep_alive = true;
  h.request_id = 5;
  std::string expected = encode_frame(h, encode_response("x"));
  h.request_id = 6;
  expected += encode_frame(h, encode_response("y"));
  CHECK(f.written() == expected);
}

TEST_CASE("session: a malformed frame ends reading, the answers before it still go out",
          "[unit][host_session]") {
  fixture f;
  f.driver.inline_actions = {"work"};
  const std::string good = request(std::nullopt, 1);
  const std::string bytes = good + std::string("\x00\x05{bad}", 7);
  CHECK(f.feed(bytes) == good.size());
  CHECK_FALSE(f.session.reading());
  CHECK(frames_in(f.written()).size() == 1);
  CHECK(f.session.done());
}

TEST_CASE("session: too_large is answered, then nothing more is read", "[unit][host_session]") {
  host_session_limits limits = fixture::defaults();
  limits.max_content_length = 10;
  fixture f(limits);
  const std::string bytes = request(1, "far more than ten bytes") + request(2, 2);
  CHECK(f.feed(bytes) == 0);
  CHECK(f.driver.runs.empty());
  CHECK_FALSE(f.session.reading());
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 1);
  CHECK(code_of(out[0]) == errc::too_large);
  CHECK(out[0].header.request_id == 1u);
  CHECK_FALSE(out[0].header.keep_alive);
}

TEST_CASE("session: an unauthorized request is answered and the connection closes",
          "[unit][host_session]") {
  fixture f;
  f.driver.required_token = "secret";
  f.feed(request(1, 1, true, feature::all) + request(2, 2));
  CHECK(f.driver.runs.empty());
  CHECK_FALSE(f.session.reading());
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 1);
  CHECK(code_of(out[0]) == errc::unauthorized);
  CHECK_FALSE(out[0].header.keep_alive);
  CHECK_FALSE(out[0].header.features);  // nothing announced to a peer that is not let in
  CHECK(f.session.done());
}

TEST_CASE("session: a request without keep-alive is answered, then the connection closes",
          "[unit][host_session]") {
  fixture f;
  const std::string first = request(std::nullopt, 1, false);
  CHECK(f.feed(first + request(std::nullopt, 2)) == first.size());
  REQUIRE(f.driver.runs.size() == 1);
  CHECK_FALSE(f.session.reading());
  CHECK_FALSE(f.session.done());
  f.answer(0, 1);
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 1);
  CHECK_FALSE(out[0].header.keep_alive);
  CHECK(f.session.done());
}

TEST_CASE("session: requests past the window are answered busy at once, never run",
          "[unit][host_session]") {
  fixture f;  // a window of 4
  std::string bytes;
  for (std::uint64_t id = 1; id <= 6; ++id) bytes += request(id, id);
  CHECK(f.feed(bytes) == bytes.size());
  CHECK(f.driver.runs.size() == 4);
  CHECK(f.session.reading());
  CHECK(f.session.wants_read());  // a full window does not stop reading
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 2);
  CHECK(out[0].header.request_id == 5u);
  CHECK(out[1].header.request_id == 6u);
  CHECK(code_of(out[0]) == errc::busy);
  CHECK(out[0].header.keep_alive);
  const auto message = decode_response(out[0].content).error_message;
  CHECK_THAT(message, Catch::Contains("window is full") && Catch::Contains("4 requests") &&
                          Catch::Contains("safe to send again"));
  // An answer frees a place.
  f.answer(0, 1);
  f.feed(request(7, 7));
  CHECK(f.driver.runs.size() == 5);
}

TEST_CASE("session: an ordered request past the window is answered busy in its turn",
          "[unit][host_session]") {
  host_session_limits limits = fixture::defaults();
  limits.max_in_flight = 1;
  fixture f(limits);
  f.feed(request(std::nullopt, 1) + request(std::nullopt, 2));
  REQUIRE(f.driver.runs.size() == 1);
  CHECK(f.written().empty());  // the busy answer waits for the one before it
  f.answer(0, 1);
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 2);
  CHECK(decode_response(out[0].content).result == 1);
  CHECK(code_of(out[1]) == errc::busy);
  CHECK(f.session.idle());
}

TEST_CASE("session: the byte budget refuses a request that would exceed it, one alone is admitted",
          "[unit][host_session]") {
  host_session_limits limits = fixture::defaults();
  limits.max_in_flight_bytes = 100;
  fixture f(limits);
  const json::value big = json::string(150, 'x');
  f.feed(request(1, big));  // over the budget alone: admitted
  CHECK(f.driver.runs.size() == 1);
  f.feed(request(2, 2));
  CHECK(f.driver.runs.size() == 1);
  CHECK(code_of(frames_in(f.written()).at(0)) == errc::busy);
  f.answer(0, big);
  (void)f.written();
  f.feed(request(3, json::string(40, 'y')) + request(4, json::string(40, 'z')));
  CHECK(f.driver.runs.size() == 2);  // 2 x ~70 bytes of content: the second does not fit
  CHECK(code_of(frames_in(f.written()).at(0)) == errc::busy);
}

TEST_CASE("session: reading stops only while answers pile up for a peer that does not read",
          "[unit][host_session]") {
  host_session_limits limits = fixture::defaults();
  limits.write_buffer_limit = 200;
  fixture f(limits);
  f.driver.inline_actions = {"work"};
  f.feed(request(1, json::string(300, 'a')));
  CHECK_FALSE(f.session.wants_read());
  CHECK(f.session.reading());
  const auto bytes = f.session.prepare_write();
  CHECK_FALSE(bytes.empty());
  CHECK_FALSE(f.session.wants_read());  // being written still counts
  f.session.commit_write();
  CHECK(f.session.wants_read());
}

TEST_CASE("session: the first request's features are answered with the window, once",
          "[unit][host_session]") {
  fixture f;
  f.driver.inline_actions = {"echo"};
  f.feed(vector_bytes("extensions/first_request.bin"));
  REQUIRE(f.driver.responses == 1);
  const auto first = frames_in(f.written());
  REQUIRE(first.size() == 1);
  CHECK(first[0].header.features == feature::all);
  CHECK(first[0].header.window == 4u);
  CHECK(first[0].header.window_bytes == std::uint64_t{1} << 20);
  CHECK(f.session.features() == feature::all);
  // Later answers carry nothing new, even to a request that lists features again.
  f.feed(request(2, 2, true, feature::cancel, "echo"));
  const auto later = frames_in(f.written());
  CHECK_FALSE(later.at(0).header.features);
  CHECK_FALSE(later.at(0).header.window);
}

TEST_CASE("session: the first answer is the protocol's vector byte for byte", "[unit][host_session]") {
  fixture f({1 << 20, 64, 64 * 1024 * 1024, 1 << 20});
  f.driver.inline_actions = {"echo"};
  f.feed(vector_bytes("extensions/first_request.bin"));
  CHECK(f.written() == vector_bytes("extensions/first_answer.bin"));
}

TEST_CASE("session: features on a later request, or an untagged one, are not taken",
          "[unit][host_session]") {
  fixture f;
  f.driver.inline_actions = {"echo"};
  f.feed(request(std::nullopt, 1, true, feature::all, "echo"));
  f.feed(request(2, 2, true, feature::all, "echo"));
  for (const auto& frame : frames_in(f.written())) CHECK_FALSE(frame.header.features);
  CHECK(f.session.features() == 0);
  f.session.begin_drain();
  CHECK(f.written().empty());  // no going-away to a peer that did not announce it
}

TEST_CASE("session: a cancel cancels that handler, frees its place and drops its answer",
          "[unit][host_session]") {
  host_session_limits limits = fixture::defaults();
  limits.max_in_flight = 2;
  fixture f(limits);
  f.feed(request(1, 1, true, feature::all) + request(2, 2) + request(3, 3));
  REQUIRE(f.driver.runs.size() == 2);
  (void)f.written();  // request 3's busy answer
  // A control frame behind a full window is read.
  f.feed(control(frame_kind::cancel, 2));
  REQUIRE(f.driver.cancelled.size() == 1);
  CHECK(f.driver.cancelled[0] == f.driver.runs[1].h);
  CHECK(f.session.in_flight() == 1);
  f.feed(request(4, 4));  // the freed place is taken at once
  CHECK(f.driver.runs.size() == 3);
  // The cancelled handler's late answer is dropped; the others go out.
  f.answer(1, 2);
  CHECK(f.written().empty());
  f.answer(0, 1);
  f.answer(2, 4);
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 2);
  CHECK(out[0].header.request_id == 1u);
  CHECK(out[1].header.request_id == 4u);
  CHECK(f.session.idle());
}

TEST_CASE("session: cancels of unknown ids and control frames of unknown kinds are ignored",
          "[unit][host_session]") {
  fixture f;
  f.feed(request(1, 1, true, feature::all));
  const std::string bytes = control(frame_kind::cancel, 99) + control(frame_kind::cancel, std::nullopt) +
                            unknown_control() +
                            control(frame_kind::going_away, std::nullopt);
  CHECK(f.feed(bytes) == bytes.size());
  CHECK(f.driver.cancelled.empty());
  CHECK(f.written().empty());  // a control frame is never answered
  CHECK(f.session.reading());
  f.answer(0, 1);
  f.feed(control(frame_kind::cancel, 1));  // answered already
  CHECK(f.driver.cancelled.empty());
  CHECK(frames_in(f.written()).size() == 1);
}

TEST_CASE("session: a drain sends going-away, answers what it read, refuses what came after",
          "[unit][host_session]") {
  fixture f;
  f.feed(request(1, 1, true, feature::all) + request(2, 2));
  (void)f.written();
  f.session.begin_drain();
  f.session.begin_drain();  // once
  const auto notice = frames_in(f.written());
  REQUIRE(notice.size() == 1);
  CHECK(notice[0].header.kind == frame_kind::going_away);
  CHECK(notice[0].header.last_request_id == 2u);
  CHECK(notice[0].content.empty());
  CHECK(f.session.noticed());
  // Written by the peer before it read the notice: not run.
  f.feed(request(3, 3));
  CHECK(f.driver.runs.size() == 2);
  f.answer(0, 1);
  f.answer(1, 2);
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 3);
  CHECK(out[0].header.request_id == 3u);
  CHECK(code_of(out[0]) == errc::shutting_down);
  CHECK(decode_response(out[1].content).result == 1);
  CHECK_FALSE(out[1].header.keep_alive);  // answers during a drain say the connection closes
  CHECK(f.session.idle());
}

TEST_CASE("session: going-away carries the last request id read, and goes only to a peer that announced it",
          "[unit][host_session]") {
  fixture f;
  f.driver.inline_actions = {"echo"};
  frame_header h;
  h.keep_alive = true;
  h.request_id = 1;
  h.features = feature::going_away;
  f.feed(encode_frame(h, encode_request("echo", 1)));
  (void)f.written();
  f.session.begin_drain();
  const auto notice = frames_in(f.written());
  REQUIRE(notice.size() == 1);
  CHECK(notice[0].header.last_request_id == 1u);

  fixture g;
  g.driver.inline_actions = {"echo"};
  h.features = feature::cancel;  // going-away not announced
  g.feed(encode_frame(h, encode_request("echo", 1)));
  (void)g.written();
  g.session.begin_drain();
  CHECK(g.written().empty());
}

TEST_CASE("session: without the feature a drain sends no notice and answers say keep-alive false",
          "[unit][host_session]") {
  fixture f;
  f.feed(request(1, 1) + request(std::nullopt, 2));
  f.session.begin_drain();
  CHECK(f.written().empty());
  f.feed(request(3, 3));
  f.answer(0, 1);
  f.answer(1, 2);
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 3);
  CHECK(code_of(out[0]) == errc::shutting_down);
  for (const auto& frame : out) {
    CHECK_FALSE(frame.header.keep_alive);
    CHECK_FALSE(frame.header.features);
  }
}

TEST_CASE("session: once shut, late answers are dropped and nothing is written",
          "[unit][host_session]") {
  fixture f;
  f.feed(request(std::nullopt, 1) + request(std::nullopt, 2) + request(3, 3));
  REQUIRE(f.driver.runs.size() == 2);
  f.session.shut();
  f.answer(0, 1);
  f.answer(1, 3);
  CHECK(f.written().empty());
  CHECK(f.session.outstanding() == 0);
  CHECK_FALSE(f.session.reading());
}

TEST_CASE("session: untagged requests still waiting when a drain begins are answered shutting_down",
          "[unit][host_session]") {
  fixture f;
  f.feed(request(std::nullopt, 1) + request(std::nullopt, 2) + request(std::nullopt, 3));
  REQUIRE(f.driver.runs.size() == 1);
  f.session.begin_drain();
  CHECK(f.session.in_flight() == 1);
  f.answer(0, 1);
  CHECK(f.driver.runs.size() == 1);  // the waiting ones never ran
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 3);
  CHECK(decode_response(out[0].content).result == 1);
  CHECK(code_of(out[1]) == errc::shutting_down);
  CHECK(code_of(out[2]) == errc::shutting_down);
  for (const auto& frame : out) CHECK_FALSE(frame.header.keep_alive);
  CHECK(f.session.idle());
}

TEST_CASE("session: a shutting_down refusal from the host starts the drain", "[unit][host_session]") {
  fixture f;
  f.feed(request(1, 1, true, feature::all));
  (void)f.written();
  f.driver.stopping = true;  // before the driver told the session
  f.feed(request(2, 2));
  CHECK(f.session.draining());
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 2);
  CHECK(out[0].header.kind == frame_kind::going_away);
  CHECK(out[0].header.last_request_id == 2u);
  CHECK(code_of(out[1]) == errc::shutting_down);
  CHECK_FALSE(out[1].header.keep_alive);
}

TEST_CASE("session: a drain that began before the first request sends the notice after its answer",
          "[unit][host_session]") {
  fixture f;
  f.session.begin_drain();  // a connection accepted as the host stops
  CHECK(f.written().empty());
  // The peer's first request says what it speaks, with more written behind it.
  f.feed(request(5, 5, true, feature::all) + request(6, 6));
  const auto out = frames_in(f.written());
  REQUIRE(out.size() == 3);
  CHECK(out[0].header.request_id == 5u);
  CHECK(code_of(out[0]) == errc::shutting_down);
  CHECK(out[0].header.features == feature::all);  // the answer that tells what the host speaks
  CHECK(out[1].header.kind == frame_kind::going_away);
  CHECK(out[1].header.last_request_id == 5u);
  CHECK(out[2].header.request_id == 6u);  // read after it: refused, and the peer drops it
  CHECK(code_of(out[2]) == errc::shutting_down);
  CHECK(f.driver.runs.empty());
  CHECK(f.session.noticed());
}

// --- Streams (issue 17) -----------------------------------------------------

namespace {

std::string stream_request(std::uint64_t id, stream_part part, const json::value& v,
                           std::optional<std::uint64_t> credit,
                           std::optional<std::uint32_t> features = std::nullopt,
                           std::string_view action = "scan", bool keep_alive = true) {
  frame_header h;
  h.keep_alive = keep_alive;
  h.request_id = id;
  h.features = features;
  h.stream = part;
  h.credit = credit;
  return encode_frame(h, encode_request(action, v));
}

std::string credit_frame(std::optional<std::uint64_t> id, std::optional<std::uint64_t> n) {
  frame_header h;
  h.keep_alive = true;
  h.kind = frame_kind::credit;
  h.request_id = id;
  h.credit = n;
  return encode_frame(h, "");
}

std::string item_content(int i) { return encode_response(json::value(i)); }

// A session whose peer announced every feature with a first echo request.
struct streaming_fixture : fixture {
  explicit streaming_fixture(host_session_limits limits = defaults()) : fixture(limits) {
    driver.inline_actions.insert("echo");
    feed(request(1, "hello", true, feature::all, "echo"));
    written();
  }
};

std::string part_of(const decoded& f) {
  return f.header.stream == stream_part::none ? std::string() : std::string(stream_part_name(f.header.stream));
}

}  // namespace

TEST_CASE("session: a stream opens with begin, spends credit per item and ends with a clean end",
          "[unit][host_session]") {
  fixture f;
  // The request that opens it is the first, announcing the features.
  f.feed(stream_request(3, stream_part::open, 7, 2, feature::all));
  REQUIRE(f.driver.streams.size() == 1);
  const auto h = f.driver.streams[0].h;
  CHECK(f.driver.streams[0].id == 3);
  CHECK_FALSE(f.driver.streams[0].subscribe);
  CHECK(f.driver.streams[0].request.action == "scan");
  CHECK(f.session.in_flight() == 0);  // not in the window
  CHECK(f.session.outstanding() == 1);
  CHECK(f.session.open_streams() == 1);
  CHECK_FALSE(f.session.idle());
  auto begin = frames_in(f.written());
  REQUIRE(begin.size() == 1);
  CHECK(part_of(begin[0]) == "begin");
  CHECK(begin[0].header.request_id == 3u);
  CHECK(begin[0].header.content_length == 0);
  CHECK(begin[0].header.features == feature::all);  // the first request's answer
  CHECK(begin[0].header.window == 4u);
  CHECK_FALSE(begin[0].header.sequence);  // a stream's begin has none

  CHECK(f.session.stream_credit(h) == 2);
  f.session.stream_item(h, item_content(0), std::nullopt);
  f.session.stream_item(h, item_content(1), std::nullopt);
  CHECK_FALSE(f.session.stream_writable(h));
  f.session.stream_item(h, item_content(2), std::nullopt);  // no credit: not written
  auto items = frames_in(f.written());
  REQUIRE(items.size() == 2);
  CHECK(part_of(items[1]) == "item");
  CHECK(items[1].header.request_id == 3u);
  CHECK_FALSE(items[1].header.sequence);
  CHECK(decode_response(items[1].content).result == 1);

  f.feed(credit_frame(3, 5));
  CHECK(f.driver.credited_streams == std::vector<host_session::handle>{h});
  CHECK(f.session.stream_credit(h) == 5);
  CHECK(f.session.stream_writable(h));

  f.session.stream_finished(h, std::nullopt);
  auto end = frames_in(f.written());
  REQUIRE(end.size() == 1);
  CHECK(part_of(end[0]) == "end");
  CHECK(end[0].content.empty());
  CHECK(f.session.idle());
  CHECK(f.session.open_streams() == 0);
  // Its id is free again: credit for it is ignored.
  f.feed(credit_frame(3, 5));
  CHECK(f.driver.credited_streams.size() == 1);
}

TEST_CASE("session: a stream that ends with an error carries it in its end", "[unit][host_session]") {
  streaming_fixture f;
  f.feed(stream_request(5, stream_part::open, 1, 0));
  REQUIRE(f.driver.streams.size() == 1);
  const auto h = f.driver.streams[0].h;
  f.written();
  CHECK_FALSE(f.session.stream_writable(h));  // no credit in the request
  f.session.stream_finished(h, error_response(errc::handler_failed, "it broke"));
  auto end = frames_in(f.written());
  REQUIRE(end.size() == 1);
  CHECK(part_of(end[0]) == "end");
  CHECK(code_of(end[0]) == errc::handler_failed);
  CHECK(f.session.idle());
}

TEST_CASE("session: a subscription's items carry their sequence", "[unit][host_session]") {
  streaming_fixture f;
  f.feed(stream_request(4, stream_part::subscribe, json::parse(R"({"topic": "t"})"), 8, std::nullopt,
                        "subscribe"));
  REQUIRE(f.driver.streams.size() == 1);
  CHECK(f.driver.streams[0].subscribe);
  const auto h = f.driver.streams[0].h;
  f.session.stream_item(h, item_content(21), 17);
  auto out = frames_in(f.written());
  REQUIRE(out.size() == 2);
  CHECK(part_of(out[0]) == "begin");
  CHECK_FALSE(out[0].header.features);  // not the first request
  CHECK(out[0].header.sequence == 16u);  // the topic's, when it registered
  CHECK(out[1].header.sequence == 17u);
}

TEST_CASE("session: stream requests that break the rules are answered once, bad_request or no_handler",
          "[unit][host_session]") {
  SECTION("the connection did not agree the stream feature") {
    fixture f;
    f.driver.inline_actions.insert("echo");
    f.feed(request(1, "hello", true, feature::cancel, "echo"));
    f.written();
    f.feed(stream_request(2, stream_part::open, 1, 4));
    auto out = frames_in(f.written());
    REQUIRE(out.size() == 1);
    CHECK(part_of(out[0]).empty());
    CHECK(code_of(out[0]) == errc::bad_request);
  }
  SECTION("a first request that announces nothing") {
    fixture f;
    f.feed(stream_request(2, stream_part::open, 1, 4));
    auto out = frames_in(f.written());
    REQUIRE(out.size() == 1);
    CHECK(code_of(out[0]) == errc::bad_request);
  }
  streaming_fixture f;
  SECTION("untagged") {
    frame_header h;
    h.keep_alive = true;
    h.stream = stream_part::open;
    h.credit = 4;
    f.feed(encode_frame(h, encode_request("scan", 1)));
    auto out = frames_in(f.written());
    REQUIRE(out.size() == 1);
    CHECK(code_of(out[0]) == errc::bad_request);
  }
  SECTION("not keep-alive: answered, then nothing more is read") {
    f.feed(stream_request(2, stream_part::open, 1, 4, std::nullopt, "scan", false));
    auto out = frames_in(f.written());
    REQUIRE(out.size() == 1);
    CHECK(code_of(out[0]) == errc::bad_request);
    CHECK_FALSE(f.session.reading());
  }
  SECTION("an action without a stream handler") {
    f.feed(stream_request(2, stream_part::open, 1, 4, std::nullopt, "nothing"));
    auto out = frames_in(f.written());
    REQUIRE(out.size() == 1);
    CHECK(code_of(out[0]) == errc::no_handler);
  }
  SECTION("the parts only a host sends, and unknown ones") {
    for (const auto part : {stream_part::begin, stream_part::item, stream_part::end}) {
      f.feed(stream_request(2, part, 1, 4));
      auto out = frames_in(f.written());
      REQUIRE(out.size() == 1);
      CHECK(part_of(out[0]).empty());
      CHECK(code_of(out[0]) == errc::bad_request);
    }
    const std::string_view header =
        R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", )"
        R"("content-length": 30, "keep-alive": true, "request-id": 2, "stream": "rewind"})";
    std::string frame;
    frame += static_cast<char>(header.size() >> 8);
    frame += static_cast<char>(header.size() & 0xFF);
    frame += header;
    frame += encode_request("scan", 1);
    REQUIRE(frame.size() == 2 + header.size() + encode_request("scan", 1).size());
    f.feed(frame);
    auto out = frames_in(f.written());
    REQUIRE(out.size() == 1);
    CHECK(code_of(out[0]) == errc::bad_request);
  }
  SECTION("an id that is an open stream already") {
    f.feed(stream_request(2, stream_part::open, 1, 4));
    f.feed(stream_request(2, stream_part::open, 1, 4));
    auto out = frames_in(f.written());
    REQUIRE(out.size() == 2);
    CHECK(part_of(out[0]) == "begin");
    CHECK(code_of(out[1]) == errc::bad_request);
  }
  CHECK(f.driver.streams.size() <= 1);
  CHECK(f.session.in_flight() == 0);
}

TEST_CASE("session: streams are outside the window and bounded by max_streams",
          "[unit][host_session]") {
  auto limits = fixture::defaults();
  limits.max_in_flight = 1;
  limits.max_streams = 2;
  streaming_fixture f(limits);
  f.feed(stream_request(2, stream_part::open, 1, 4));
  f.feed(stream_request(3, stream_part::subscribe, json::parse(R"({"topic": "t"})"), 4, std::nullopt,
                        "subscribe"));
  f.feed(stream_request(4, stream_part::open, 1, 4));
  f.feed(request(5, 5));  // the window's one request still runs
  auto out = frames_in(f.written());
  REQUIRE(out.size() == 3);
  CHECK(part_of(out[0]) == "begin");
  CHECK(part_of(out[1]) == "begin");
  CHECK(part_of(out[2]).empty());  // an ordinary answer
  CHECK(out[2].header.request_id == 4u);
  CHECK(code_of(out[2]) == errc::too_many_streams);
  CHECK(f.driver.streams.size() == 2);
  REQUIRE(f.driver.runs.size() == 1);
  CHECK(f.session.in_flight() == 1);
  // One ends: another may open.
  f.session.stream_finished(f.driver.streams[0].h, std::nullopt);
  f.feed(stream_request(6, stream_part::open, 1, 4));
  CHECK(f.driver.streams.size() == 3);
}

TEST_CASE("session: a cancel ends a stream with nothing more written, not even its end",
          "[unit][host_session]") {
  streaming_fixture f;
  f.feed(stream_request(2, stream_part::open, 1, 10));
  const auto h = f.driver.streams.at(0).h;
  f.session.stream_item(h, item_content(0), std::nullopt);
  f.written();
  f.feed(control(frame_kind::cancel, 2));
  CHECK(f.driver.streams_cancelled == std::vector<host_session::handle>{h});
  CHECK(f.driver.cancelled.empty());
  CHECK_FALSE(f.session.stream_live(h));
  CHECK_FALSE(f.session.stream_writable(h));
  f.session.stream_item(h, item_content(1), std::nullopt);
  f.feed(credit_frame(2, 3));  // ignored: it is not open any more
  CHECK(f.driver.credited_streams.empty());
  CHECK(f.session.outstanding() == 1);  // until its handler finishes
  CHECK(f.session.open_streams() == 1);
  f.session.stream_finished(h, error_response(errc::cancelled, "cancelled"));
  CHECK(f.written().empty());
  CHECK(f.session.idle());
  // A second cancel of the same id is one for a request not running.
  f.feed(control(frame_kind::cancel, 2));
  CHECK(f.driver.streams_cancelled.size() == 1);
}

TEST_CASE("session: credit for unknown ids is ignored, and credit is capped at 2^32",
          "[unit][host_session]") {
  streaming_fixture f;
  f.feed(credit_frame(99, 10));
  f.feed(credit_frame(std::nullopt, 10));
  f.feed(stream_request(2, stream_part::open, 1, std::numeric_limits<std::uint64_t>::max()));
  const auto h = f.driver.streams.at(0).h;
  CHECK(f.session.stream_credit(h) == host_session::max_credit);
  f.feed(credit_frame(2, std::numeric_limits<std::uint64_t>::max()));
  f.feed(credit_frame(2, std::numeric_limits<std::uint64_t>::max()));
  CHECK(f.session.stream_credit(h) == host_session::max_credit);
  f.feed(credit_frame(2, std::nullopt));  // a credit frame without credit
  f.feed(credit_frame(2, 0));
  CHECK(f.session.stream_credit(h) == host_session::max_credit);
  CHECK(f.driver.credited_streams.size() == 2);
  f.feed(unknown_control());
  CHECK(f.written().size() > 0);  // the begin only
  CHECK(f.written().empty());
  CHECK(f.session.reading());
}

TEST_CASE("session: items stop at the write buffer limit until the peer reads",
          "[unit][host_session]") {
  auto limits = fixture::defaults();
  limits.write_buffer_limit = 1000;
  streaming_fixture f(limits);
  f.feed(stream_request(2, stream_part::open, 1, 1000));
  const auto h = f.driver.streams.at(0).h;
  int n = 0;
  while (f.session.stream_writable(h)) f.session.stream_item(h, item_content(n++), std::nullopt);
  CHECK(n > 3);
  CHECK(n < 20);
  CHECK(f.session.stream_credit(h) == 1000u - n);
  std::string_view out = f.session.prepare_write();
  CHECK_FALSE(out.empty());
  CHECK_FALSE(f.session.stream_writable(h));  // still being written
  f.session.commit_write();
  CHECK(f.session.stream_writable(h));
}

TEST_CASE("session: a drain ends every open stream with shutting_down before the going-away notice",
          "[unit][host_session]") {
  streaming_fixture f;
  f.feed(stream_request(2, stream_part::open, 1, 10));
  f.feed(stream_request(3, stream_part::subscribe, json::parse(R"({"topic": "t"})"), 10, std::nullopt,
                        "subscribe"));
  f.written();
  f.session.begin_drain();
  auto out = frames_in(f.written());
  REQUIRE(out.size() == 3);
  CHECK(part_of(out[0]) == "end");
  CHECK(part_of(out[1]) == "end");
  CHECK(out[0].header.keep_alive);
  CHECK(code_of(out[0]) == errc::shutting_down);
  CHECK(code_of(out[1]) == errc::shutting_down);
  CHECK(out[2].header.kind == frame_kind::going_away);
  CHECK(f.driver.streams_cancelled.size() == 2);
  // The drain waits for the handlers.
  CHECK_FALSE(f.session.idle());
  f.session.stream_item(f.driver.streams[0].h, item_content(0), std::nullopt);
  f.session.stream_finished(f.driver.streams[0].h, std::nullopt);
  f.session.stream_finished(f.driver.streams[1].h, std::nullopt);
  CHECK(f.written().empty());
  CHECK(f.session.idle());
  // And refuses new ones.
  f.feed(stream_request(4, stream_part::open, 1, 10));
  out = frames_in(f.written());
  REQUIRE(out.size() == 1);
  CHECK(code_of(out[0]) == errc::shutting_down);
}

TEST_CASE("session: once shut, streams write nothing and finish quietly", "[unit][host_session]") {
  streaming_fixture f;
  f.feed(stream_request(2, stream_part::open, 1, 10));
  const auto h = f.driver.streams.at(0).h;
  f.session.shut();
  CHECK_FALSE(f.session.stream_writable(h));
  f.session.stream_item(h, item_content(0), std::nullopt);
  f.session.stream_finished(h, std::nullopt);
  CHECK(f.written().empty());
  CHECK(f.session.outstanding() == 0);
}

// docs/api.md, "Tracing": the driver gets each request's traceparent,
// checked; an ordered request that waits its turn keeps its own.
TEST_CASE("session: each request runs with its own traceparent, checked, even after waiting its turn",
          "[unit][host_session][trace]") {
  fixture f;
  const std::string valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const auto traced = [](std::optional<std::uint64_t> id, std::string traceparent) {
    frame_header h;
    h.keep_alive = true;
    h.request_id = id;
    h.traceparent = std::move(traceparent);
    return encode_frame(h, encode_request("work", 0));
  };
  // Untagged: the second and third wait for the first.
  f.feed(traced(std::nullopt, "") + traced(std::nullopt, valid) + traced(std::nullopt, "00-nope"));
  REQUIRE(f.driver.runs.size() == 1);
  CHECK(f.driver.runs[0].traceparent.empty());
  f.answer(0, 1);
  REQUIRE(f.driver.runs.size() == 2);
  CHECK(f.driver.runs[1].traceparent == valid);
  f.answer(1, 2);
  REQUIRE(f.driver.runs.size() == 3);
  CHECK(f.driver.runs[2].traceparent.empty());  // not valid: ignored
  f.answer(2, 3);
  // A tagged one, and a later version, cut to its first 55 characters.
  f.feed(traced(7, valid + "-more") + traced(8, "01" + valid.substr(2) + "-more"));
  REQUIRE(f.driver.runs.size() == 5);
  CHECK(f.driver.runs[3].traceparent.empty());  // version 00 is exactly 55 characters
  CHECK(f.driver.runs[4].traceparent == "01" + valid.substr(2));
  f.answer(3, 4);
  f.answer(4, 5);
  for (const auto& answer : frames_in(f.written())) CHECK(answer.header.traceparent.empty());
}
