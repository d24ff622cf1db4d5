// Hostile peers over real sockets (issue 5): garbage, broken frames, bad
// content, floods, slow and resetting peers. Each case checks the documented
// answer (docs/protocol.md: a frame that cannot be parsed closes that
// connection with no answer; bad content gets bad_request) and then that the
// host still answers someone else and has let go of the connection.
//
// Cases for limits the host does not have yet are tagged [.][pending]:
// Catch hides them, so CI skips them until the limit exists.
#include <comet/host.hpp>

#include "support.hpp"

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

using namespace comet;
using namespace comet::test;
using namespace std::string_literals;

namespace {

constexpr auto peer_timeout = 3s;

struct echo_host : host_fixture {
  explicit echo_host(host_options o = loopback()) : host_fixture(2, std::move(o)) {
    server.on("echo", [](const std::string&, const json::value& v) { return v; });
    start();
  }
};

response_message answer_of(const std::string& frame) {
  REQUIRE_FALSE(frame.empty());
  return decode_response(split(frame).content);
}

// Another client gets its answer, and the host holds no connection it was
// given before (so nothing hostile leaked).
void require_alive(echo_host& f) {
  {
    raw_peer p(f.at, peer_timeout);
    p.write(request_frame("echo", "alive"));
    auto r = answer_of(p.read_frame());
    REQUIRE_FALSE(r.error);
    REQUIRE(r.result == "alive");
  }
  for (int i = 0; i < 300 && f.server.stats().connections_open != 0; ++i)
    std::this_thread::sleep_for(10ms);
  REQUIRE(f.server.stats().connections_open == 0);
}

// The host closed the connection (FIN or reset) without writing anything.
bool closed_without_answer(raw_peer& p) {
  boost::system::error_code ended_by;
  const std::string got = p.read_to_eof(ended_by);
  INFO("received " << got.size() << " bytes; the read ended with: " << ended_by.message());
  return got.empty() && (ended_by == asio::error::eof || ended_by == asio::error::connection_reset);
}

// Sends `bytes` and half-closes, so a host waiting for more sees EOF. The host
// may drop the connection before everything is written; that is fine here.
void send_and_half_close(raw_peer& p, std::string_view bytes) {
  boost::system::error_code ignored;
  p.write(bytes, ignored);
  p.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

void require_error_answer(raw_peer& p, errc expected) {
  auto r = answer_of(p.read_frame());
  REQUIRE(r.error);
  CHECK(*r.error == expected);
  CHECK(p.closed_by_peer());
}

std::string frame_with_header(std::string_view header, std::string_view content = {}) {
  std::string out;
  out += static_cast<char>(header.size() >> 8);
  out += static_cast<char>(header.size() & 0xFF);
  out += header;
  out += content;
  return out;
}

// A header as COMET writes it, with each value spelled as given (raw JSON).
std::string header_text(std::string_view length, std::string_view byteorder = R"("little")") {
  return std::string(R"({"byteorder": )") + std::string(byteorder) +
         R"(, "content-type": "text/json", "content-encoding": "utf-8", "content-length": )" +
         std::string(length) + "}";
}

std::string nested_arrays(std::size_t depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

std::string nested_objects(std::size_t depth) {
  std::string out;
  for (std::size_t i = 0; i < depth; ++i) out += R"({"a": )";
  out += "1";
  out.append(depth, '}');
  return out;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(gen() & 0xFF);
  return out;
}

}  // namespace

TEST_CASE("garbage closes the connection without an answer", "[integration][hostile]") {
  echo_host f;
  const std::vector<std::string> garbage{
      "GET / HTTP/1.1\r\nHost: comet\r\n\r\n",                       // a web client
      "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s + random_bytes(32, 1),  // a TLS ClientHello
      "\x00\x10"s + random_bytes(16, 2),  // a short header of noise
      random_bytes(70000, 3),
      std::string(5000, '\0'),
      std::string(5000, '\xff'),
  };
  for (std::size_t i = 0; i < garbage.size(); ++i) {
    INFO("garbage #" << i);
    raw_peer p(f.at, peer_timeout);
    send_and_half_close(p, garbage[i]);
    CHECK(closed_without_answer(p));
    require_alive(f);
  }
}

TEST_CASE("a frame cut short by EOF gets no answer", "[integration][hostile]") {
  echo_host f;
  const std::string frame = request_frame("echo", "cut");
  const std::size_t content_start = frame.size() - encode_request("echo", "cut").size();
  for (std::size_t cut : {std::size_t{1}, std::size_t{2}, std::size_t{3}, content_start / 2,
                          content_start - 1, content_start, frame.size() - 1}) {
    INFO("cut after " << cut << " of " << frame.size() << " bytes");
    raw_peer p(f.at, peer_timeout);
    send_and_half_close(p, std::string_view(frame).substr(0, cut));
    CHECK(closed_without_answer(p));
    require_alive(f);
  }
}

TEST_CASE("a content-length that is not a non-negative integer gets no answer",
          "[integration][hostile]") {
  echo_host f;
  for (const char* length : {"-1", "-9223372036854775808", "3.5", "1e3", "1.0", R"("12")",
                             "null", "true", "[12]", "{}", "99999999999999999999999"}) {
    INFO("content-length " << length);
    raw_peer p(f.at, peer_timeout);
    p.write(frame_with_header(header_text(length)));
    CHECK(closed_without_answer(p));
    require_alive(f);
  }
}

TEST_CASE("a zero content-length is empty content: bad_request", "[integration][hostile]") {
  echo_host f;
  raw_peer p(f.at, peer_timeout);
  p.write(frame_with_header(header_text("0")));
  require_error_answer(p, errc::bad_request);
  require_alive(f);
}

TEST_CASE("a huge content-length gets too_large without sending content",
          "[integration][hostile]") {
  echo_host f;
  for (const char* length : {"18446744073709551615", "9223372036854775807", "16777217"}) {
    INFO("content-length " << length);
    raw_peer p(f.at, peer_timeout);
    p.write(frame_with_header(header_text(length)));
    require_error_answer(p, errc::too_large);
    require_alive(f);
  }
}

TEST_CASE("a JSON header that is not a valid header gets no answer", "[integration][hostile]") {
  echo_host f;
  const std::string all = header_text("2");
  auto without = [&](std::string_view key_and_value) {
    std::string h = all;
    h.erase(h.find(key_and_value), key_and_value.size());
    return h;
  };
  const std::vector<std::string> headers{
      "hello",
      "{",
      R"({"byteorder": })",
      all + "x",  // trailing bytes after the object
      "[]",
      R"("text/json")",
      "42",
      "null",
      without(R"("byteorder": "little", )"),
      without(R"("content-type": "text/json", )"),
      without(R"("content-encoding": "utf-8", )"),
      without(R"(, "content-length": 2)"),
      header_text("2", "1"),     // byteorder not a string
      header_text("2", "null"),
      R"({"byteorder": "little", "content-type": null, "content-encoding": "utf-8", "content-length": 2})",
      header_text("2").insert(1, R"("keep-alive": "yes", )"),
      header_text("2").insert(1, R"("request-id": -1, )"),
      nested_arrays(10000),
      header_text("2").insert(1, R"("deep": )" + nested_arrays(10000) + ", "),
      header_text("2", "\"\xff\""),              // invalid UTF-8
      header_text("2", "\"\xc0\xaf\""),          // overlong encoding
      header_text("2", "\"\xed\xa0\x80\""),      // UTF-16 surrogate
      header_text("2", "\"\xe2\x82\""),          // truncated sequence
      header_text("2").insert(1, "\"\x80\": 1, "),  // lone continuation byte in a key
  };
  for (std::size_t i = 0; i < headers.size(); ++i) {
    INFO("header #" << i << ": " << headers[i].substr(0, 120));
    raw_peer p(f.at, peer_timeout);
    p.write(frame_with_header(headers[i], "{}"));
    CHECK(closed_without_answer(p));
    require_alive(f);
  }
}

TEST_CASE("content that is not a request gets bad_request", "[integration][hostile]") {
  echo_host f;
  const std::vector<std::string> contents{
      "not json",
      "{",
      R"({"action": "echo", "value": 1} trailing)",
      "[]",
      R"("echo")",
      "5",
      "null",
      "true",
      R"({"value": 1})",
      R"({"action": 7, "value": 1})",
      R"({"action": null})",
      R"({"action": ["echo"]})",
      R"({"action": {"name": "echo"}})",
      nested_arrays(10000),
      nested_objects(10000),
      R"({"action": "echo", "value": )" + nested_arrays(10000) + "}",
      R"({"action": "echo", "value": )" + nested_objects(10000) + "}",
      "{\"action\": \"ec\xff\", \"value\": 1}",           // invalid UTF-8
      "{\"action\": \"echo\", \"value\": \"\xc0\xaf\"}",  // overlong encoding
      "{\"action\": \"echo\", \"value\": \"\xed\xa0\x80\"}",  // UTF-16 surrogate
      "{\"action\": \"echo\", \"value\": \"\xe2\x82\"}",  // truncated sequence
      "{\"action\": \"echo\", \"value\": {\"\x80\": 1}}",  // lone continuation byte in a key
      "{\"action\": \"echo\", \"value\": \"a\x00z\"}"s,  // raw control byte
  };
  for (std::size_t i = 0; i < contents.size(); ++i) {
    INFO("content #" << i << ": " << contents[i].substr(0, 120));
    raw_peer p(f.at, peer_timeout);
    p.write(encode_frame({}, contents[i]));
    require_error_answer(p, errc::bad_request);
    require_alive(f);
  }
}

TEST_CASE("the largest header and modest nesting are served", "[integration][hostile]") {
  echo_host f;
  const std::string content = encode_request("echo", json::parse(nested_arrays(30)));
  std::string header = header_text(std::to_string(content.size()));
  header.insert(header.size() - 1, max_json_header_size - header.size(), ' ');
  raw_peer p(f.at, peer_timeout);
  p.write(frame_with_header(header, content));
  auto r = answer_of(p.read_frame());
  REQUIRE_FALSE(r.error);
  CHECK(r.result == json::parse(nested_arrays(30)));
  require_alive(f);
}

TEST_CASE("a malformed frame after a good one on a keep-alive connection",
          "[integration][hostile]") {
  echo_host f;
  raw_peer p(f.at, peer_timeout);
  p.write(request_frame("echo", "first", /*keep_alive=*/true) + "\x00\x03{]}"s);
  CHECK(answer_of(p.read_frame()).result == "first");
  CHECK(closed_without_answer(p));
  require_alive(f);
}

TEST_CASE("a half-closed peer still gets its answer", "[integration][hostile]") {
  echo_host f;
  raw_peer p(f.at, peer_timeout);
  send_and_half_close(p, request_frame("echo", "half"));
  CHECK(answer_of(p.read_frame()).result == "half");
  CHECK(p.closed_by_peer());
  require_alive(f);
}

TEST_CASE("a peer that resets mid-frame or before reading its answer",
          "[integration][hostile]") {
  echo_host f;
  const std::string frame = request_frame("echo", json::string(1000, 'r'));
  for (std::size_t cut : {std::size_t{1}, std::size_t{20}, frame.size() - 10}) {
    INFO("reset after " << cut << " bytes");
    raw_peer p(f.at, peer_timeout);
    p.write(std::string_view(frame).substr(0, cut));
    std::this_thread::sleep_for(20ms);  // let the host start reading
    p.reset();
    require_alive(f);
  }
  {
    // The answer (4 MiB) cannot all be buffered by the kernel: the host is
    // mid-write when the reset arrives.
    raw_peer p(f.at, peer_timeout);
    p.write(request_frame("echo", json::string(4 << 20, 'w')));
    std::this_thread::sleep_for(50ms);
    p.reset();
    require_alive(f);
  }
}

TEST_CASE("a flood of 200 connections opening and closing at once", "[integration][hostile]") {
  echo_host f;
  asio::io_context io;
  std::vector<tcp::socket> sockets;
  const tcp::endpoint to(asio::ip::make_address(f.at.ip), f.at.port);
  for (int i = 0; i < 200; ++i) {
    sockets.emplace_back(io);
    sockets.back().connect(to);
  }
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    if (i % 2) sockets[i].set_option(asio::socket_base::linger(true, 0));  // half of them reset
    sockets[i].close();
  }
  require_alive(f);
}

TEST_CASE("200 concurrent connections are all answered", "[integration][hostile]") {
  echo_host f;
  asio::io_context io;
  const tcp::endpoint to(asio::ip::make_address(f.at.ip), f.at.port);
  std::vector<std::unique_ptr<raw_peer>> peers;
  for (int i = 0; i < 200; ++i) {
    tcp::socket s(io);
    s.connect(to);
    peers.push_back(std::make_unique<raw_peer>(std::move(s)));
  }
  for (std::size_t i = 0; i < peers.size(); ++i) peers[i]->write(request_frame("echo", i));
  std::size_t right = 0;
  for (std::size_t i = 0; i < peers.size(); ++i) {
    const std::string frame = peers[i]->read_frame();
    if (!frame.empty() && answer_of(frame).result == i) ++right;
  }
  CHECK(right == peers.size());
  peers.clear();
  require_alive(f);
}

TEST_CASE("slow and stalled peers do not delay the others", "[integration][hostile]") {
  echo_host f;
  raw_peer stalled(f.at, peer_timeout);  // half a frame, then nothing, for the whole test
  stalled.write(request_frame("echo", "never").substr(0, 30));

  // The slow peer sends its request one byte at a time (about 1.5 s in all).
  std::atomic<bool> slow_done{false};
  std::string slow_answer;
  std::string slow_failure;
  std::thread slow([&] {
    try {
      raw_peer p(f.at, 5s);
      const std::string frame = request_frame("echo", "slow");
      for (char c : frame) {
        p.write(std::string_view(&c, 1));
        std::this_thread::sleep_for(12ms);
      }
      slow_answer = p.read_frame();
    } catch (const std::exception& e) {
      slow_failure = e.what();
    }
    slow_done = true;
  });

  int served = 0;
  while (!slow_done) {
    const auto begun = std::chrono::steady_clock::now();
    {
      raw_peer p(f.at, peer_timeout);
      p.write(request_frame("echo", served));
      CHECK(answer_of(p.read_frame()).result == served);
    }
    CHECK(std::chrono::steady_clock::now() - begun < 500ms);
    ++served;
    std::this_thread::sleep_for(20ms);
  }
  slow.join();
  CHECK(slow_failure.empty());
  CHECK(served >= 10);
  CHECK(answer_of(slow_answer).result == "slow");
  stalled.socket().close();
  require_alive(f);
}

TEST_CASE("a peer that sends requests and never reads is throttled", "[integration][hostile]") {
  // Backpressure: once the answers back up, the host must stop reading from
  // this peer, so the peer's writes block instead of the host buffering them.
  echo_host f;
  raw_peer greedy(f.at, 1s);
  const std::string frame =
      request_frame("echo", json::string(256 << 10, 'g'), /*keep_alive=*/true);
  constexpr std::size_t bound = 64u << 20;
  std::size_t written = 0;
  boost::system::error_code ec;
  while (written < bound) {
    greedy.write(frame, ec);
    if (ec) break;
    written += frame.size();
  }
  INFO("wrote " << written / 1024 << " KiB before the write ended with: " << ec.message());
  CHECK(written < bound);
  CHECK((ec == asio::error::timed_out || ec == asio::error::would_block));
  {
    raw_peer p(f.at, peer_timeout);
    p.write(request_frame("echo", "meanwhile"));
    CHECK(answer_of(p.read_frame()).result == "meanwhile");
  }
  greedy.reset();
  require_alive(f);
}

// --- Pending: limits the host does not have yet (issue 5) -------------------
// Each test names the host_options setting it needs in a comment; to enable
// one, set that option and remove "[.][pending]" from its tags.

TEST_CASE("a peer that sends half a frame and stalls is dropped after the read timeout",
          "[integration][hostile][.][pending]") {
  host_options o = host_fixture::loopback();
  // o.read_timeout = 300ms;
  echo_host f(o);
  raw_peer p(f.at, 2s);
  p.write(request_frame("echo", "stalled").substr(0, 40));
  const auto begun = std::chrono::steady_clock::now();
  CHECK(closed_without_answer(p));
  CHECK(std::chrono::steady_clock::now() - begun < 2s);
  require_alive(f);
}

TEST_CASE("a connection that sends nothing is dropped after the idle timeout",
          "[integration][hostile][.][pending]") {
  host_options o = host_fixture::loopback();
  // o.idle_timeout = 300ms;
  echo_host f(o);
  raw_peer p(f.at, 2s);
  CHECK(closed_without_answer(p));
  require_alive(f);
}

TEST_CASE("connections past the maximum are closed at once; the open ones are served",
          "[integration][hostile][.][pending]") {
  host_options o = host_fixture::loopback();
  // o.max_connections = 8;
  echo_host f(o);
  std::vector<std::unique_ptr<raw_peer>> held;
  for (int i = 0; i < 8; ++i) held.push_back(std::make_unique<raw_peer>(f.at, peer_timeout));
  for (int i = 0; i < 100 && f.server.stats().connections_open != 8; ++i)
    std::this_thread::sleep_for(10ms);

  raw_peer extra(f.at, 1s);
  CHECK(extra.closed_by_peer());

  held[0]->write(request_frame("echo", "held"));
  CHECK(answer_of(held[0]->read_frame()).result == "held");
  held.clear();
  require_alive(f);
}

TEST_CASE("a handler past its deadline gets timeout and is cancelled",
          "[integration][hostile][.][pending]") {
  host_options o = host_fixture::loopback();
  // o.handler_timeout = 200ms;
  host_fixture g(2, o);
  std::atomic<bool> cancelled{false};
  g.server.on("stuck", [&](const std::string&, const json::value&) -> asio::awaitable<json::value> {
    asio::steady_timer t(co_await asio::this_coro::executor, 10s);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    cancelled = ec == asio::error::operation_aborted;
    co_return 1;
  });
  g.start();
  raw_peer p(g.at, 3s);
  p.write(request_frame("stuck", 1));
  auto r = answer_of(p.read_frame());
  REQUIRE(r.error);
  CHECK(*r.error == errc::timeout);
  for (int i = 0; i < 100 && !cancelled; ++i) std::this_thread::sleep_for(10ms);
  CHECK(cancelled);
}
