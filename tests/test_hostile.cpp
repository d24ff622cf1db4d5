// Hostile input over real sockets (issue 5): garbage, broken frames, bad
// content, resets. Each case checks the documented answer (docs/protocol.md:
// a frame that cannot be parsed closes that connection with no answer; bad
// content gets bad_request), then that the host still answers someone else
// and has let go of the connection.
#include <comet/host.hpp>

#include "hostile_peers.hpp"

#include <random>
#include <string>
#include <vector>

using namespace comet;
using namespace comet::test;
using namespace std::string_literals;

namespace {

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
    log_capture log;
    const auto received = f.server.stats().bytes_received;
    raw_peer p(f.at, peer_timeout);
    const auto peer = "127.0.0.1:" + std::to_string(p.socket().local_endpoint().port());
    p.write(std::string_view(frame).substr(0, cut));
    // The host has read the part-frame before the reset arrives...
    REQUIRE(wait_until([&] { return f.server.stats().bytes_received >= received + cut; }));
    p.reset();
    // ...and sees the reset while it waits for the rest.
    CHECK(log.wait_for(peer + " closed the connection mid-frame"));
    require_alive(f);
  }
  {
    // The answer (8 MiB) is more than the kernel buffers for a peer that
    // does not read (at most about 4 MiB here): the host is mid-write when
    // the reset arrives.
    log_capture log;
    const auto served = f.server.stats().requests_served;
    raw_peer p(f.at, peer_timeout);
    const auto peer = "127.0.0.1:" + std::to_string(p.socket().local_endpoint().port());
    p.write(request_frame("echo", json::string(8 << 20, 'w')));
    // Counted when the answer is queued, just before its write starts.
    REQUIRE(wait_until([&] { return f.server.stats().requests_served == served + 1; }));
    p.reset();
    CHECK(log.wait_for("cannot answer " + peer));
    require_alive(f);
  }
}
