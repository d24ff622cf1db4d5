#include <comet/codec.hpp>

#include "support.hpp"

#include <cmath>

using namespace comet;
using namespace comet::test;

namespace {

// Decodes one whole frame that must be complete. The decoder's content()
// points into `bytes`, which must outlive it.
frame_decoder decode_whole(const std::string& bytes) {
  frame_decoder d(16 * 1024 * 1024);
  REQUIRE(d.decode(bytes) == frame_decoder::status::complete);
  REQUIRE(d.frame_size() == bytes.size());
  return d;
}

}  // namespace

TEST_CASE("every captured COMET request decodes to its action and value", "[unit][codec]") {
  for (const auto& c : vector_index().as_array()) {
    const std::string name(c.at("name").as_string());
    INFO("vector " << name);
    const std::string bytes = vector_file(std::string(c.at("request_file").as_string()));
    auto d = decode_whole(bytes);
    CHECK(d.header().is_json());
    CHECK(d.header().byteorder == "little");
    CHECK(d.header().content_encoding == "utf-8");
    CHECK_FALSE(d.header().keep_alive);
    CHECK_FALSE(d.header().request_id);
    std::string why;
    auto request = decode_request(d.content(), why);
    REQUIRE(request);
    CHECK(request->action == c.at("action").as_string());
    CHECK(request->value == c.at("value"));
  }
}

TEST_CASE("every captured COMET response decodes to what COMET's client returned",
          "[unit][codec]") {
  for (const auto& c : vector_index().as_array()) {
    INFO("vector " << c.at("name").as_string());
    const std::string bytes = vector_file(std::string(c.at("response_file").as_string()));
    auto d = decode_whole(bytes);
    auto response = decode_response(d.content());
    CHECK_FALSE(response.error);
    CHECK(response.result == c.at("client_returned").at("result"));
  }
}

TEST_CASE("our encoder writes COMET's frames byte for byte", "[unit][codec]") {
  for (const auto& c : vector_index().as_array()) {
    INFO("vector " << c.at("name").as_string());
    const std::string action(c.at("action").as_string());
    CHECK(encode_frame({}, encode_request(action, c.at("value"))) ==
          vector_file(std::string(c.at("request_file").as_string())));
    CHECK(encode_frame({}, encode_response(c.at("client_returned").at("result"))) ==
          vector_file(std::string(c.at("response_file").as_string())));
  }
}

TEST_CASE("encode then decode is the identity for headers and content", "[unit][codec]") {
  frame_header h;
  h.keep_alive = true;
  h.request_id = 18446744073709551615ull;
  const std::string content = encode_request("Telegr\"am\n", json::parse(R"({"a":[1,2.5,"µ"]})"));
  const std::string frame = encode_frame(h, content);
  auto d = decode_whole(frame);
  CHECK(d.header().keep_alive);
  CHECK(d.header().request_id == h.request_id);
  CHECK(d.header().content_length == content.size());
  CHECK(d.content() == content);
  std::string why;
  auto r = decode_request(d.content(), why);
  REQUIRE(r);
  CHECK(r->action == "Telegr\"am\n");
  CHECK(r->value == json::parse(R"({"a":[1,2.5,"µ"]})"));
}

TEST_CASE("the decoder waits for whole frames fed a byte at a time", "[unit][codec]") {
  const std::string a = vector_file("telegram.request.bin");
  const std::string b = vector_file("unicode.request.bin");
  const std::string stream = a + b;
  frame_decoder d(1 << 20);
  std::size_t consumed = 0;
  std::vector<std::string> actions;
  for (std::size_t end = 1; end <= stream.size(); ++end) {
    std::string_view seen(stream.data() + consumed, end - consumed);
    auto st = d.decode(seen);
    REQUIRE(st != frame_decoder::status::malformed);
    if (st == frame_decoder::status::need_more) {
      CHECK(d.bytes_needed() > seen.size());
      continue;
    }
    std::string why;
    actions.push_back(decode_request(d.content(), why)->action);
    consumed += d.frame_size();
    d.reset();
  }
  CHECK(consumed == stream.size());
  CHECK(actions == std::vector<std::string>{"TelegramBot", "unicode"});
}

TEST_CASE("the decoder reports too_large before any content arrives", "[unit][codec]") {
  std::string frame = encode_frame({}, std::string(1000, 'x'));
  frame.resize(frame.size() - 1000);  // header only
  frame_decoder d(999);
  CHECK(d.decode(frame) == frame_decoder::status::too_large);
  CHECK(d.header().content_length == 1000);
  CHECK_THAT(d.error(), Catch::Contains("1000") && Catch::Contains("999"));
}

// docs/protocol.md, "Announced extensions": the frames byte for byte, both ways.
TEST_CASE("the announced extensions' frames are written and read byte for byte", "[unit][codec]") {
  frame_header first;
  first.keep_alive = true;
  first.request_id = 1;
  first.features = feature::all;
  const json::value one = 1;
  CHECK(encode_frame(first, encode_request("echo", one)) == vector_file("extensions/first_request.bin"));
  frame_header answer = first;
  answer.window = 64;
  answer.window_bytes = 64 * 1024 * 1024;
  CHECK(encode_frame(answer, encode_response(one)) == vector_file("extensions/first_answer.bin"));
  frame_header cancel;
  cancel.keep_alive = true;
  cancel.request_id = 7;
  cancel.kind = frame_kind::cancel;
  CHECK(encode_frame(cancel, "") == vector_file("extensions/cancel.bin"));
  frame_header notice;
  notice.keep_alive = true;
  notice.kind = frame_kind::going_away;
  notice.last_request_id = 12;
  CHECK(encode_frame(notice, "") == vector_file("extensions/going_away.bin"));

  const std::string request_bytes = vector_file("extensions/first_request.bin");
  auto d = decode_whole(request_bytes);
  CHECK(d.header().features == feature::all);
  CHECK(d.header().kind == frame_kind::message);
  CHECK_FALSE(d.header().window);
  const std::string answer_bytes = vector_file("extensions/first_answer.bin");
  auto a = decode_whole(answer_bytes);
  CHECK(a.header().window == 64u);
  CHECK(a.header().window_bytes == 64u * 1024 * 1024);
  const std::string cancel_bytes = vector_file("extensions/cancel.bin");
  auto c = decode_whole(cancel_bytes);
  CHECK(c.header().kind == frame_kind::cancel);
  CHECK(c.header().request_id == 7u);
  CHECK(c.content().empty());
  const std::string notice_bytes = vector_file("extensions/going_away.bin");
  auto n = decode_whole(notice_bytes);
  CHECK(n.header().kind == frame_kind::going_away);
  CHECK(n.header().last_request_id == 12u);
  CHECK_FALSE(n.header().request_id);
}

// docs/protocol.md, "Streams and subscriptions": the frames byte for byte, both ways.
TEST_CASE("stream and subscription frames are written and read byte for byte", "[unit][codec]") {
  struct expected_frame {
    const char* file;
    std::uint64_t id;
    stream_part part;
    frame_kind kind;
    std::optional<std::uint64_t> credit, sequence;
    std::string content;
  };
  const json::value points = json::object{{"points", 2}};
  const json::value x = json::object{{"x", 0.5}};
  const json::value topic = json::object{{"topic", "temperature"}, {"overflow", "drop-oldest"}};
  const std::vector<expected_frame> frames{
      {"stream_open.bin", 3, stream_part::open, frame_kind::message, 256, {}, encode_request("scan", points)},
      {"stream_begin.bin", 3, stream_part::begin, frame_kind::message, {}, {}, ""},
      {"stream_item.bin", 3, stream_part::item, frame_kind::message, {}, {}, encode_response(x)},
      {"stream_end.bin", 3, stream_part::end, frame_kind::message, {}, {}, ""},
      {"stream_end_error.bin", 3, stream_part::end, frame_kind::message, {}, {},
       encode_error_response(errc::shutting_down, "the host is shutting down")},
      {"credit.bin", 3, stream_part::none, frame_kind::credit, 128, {}, ""},
      {"subscribe.bin", 4, stream_part::subscribe, frame_kind::message, 256, {},
       encode_request("subscribe", topic)},
      {"subscribed.bin", 4, stream_part::begin, frame_kind::message, {}, 16, ""},
      {"published_item.bin", 4, stream_part::item, frame_kind::message, {}, 17, encode_response(21.5)},
  };
  for (const auto& f : frames) {
    INFO(f.file);
    frame_header h;
    h.keep_alive = true;
    h.request_id = f.id;
    h.stream = f.part;
    h.kind = f.kind;
    h.credit = f.credit;
    h.sequence = f.sequence;
    const std::string bytes = vector_file(std::string("extensions/") + f.file);
    CHECK(encode_frame(h, f.content) == bytes);
    auto d = decode_whole(bytes);
    CHECK(d.header().request_id == f.id);
    CHECK(d.header().stream == f.part);
    CHECK(d.header().kind == f.kind);
    CHECK(d.header().credit == f.credit);
    CHECK(d.header().sequence == f.sequence);
    CHECK(d.content() == f.content);
  }
}

TEST_CASE("a stream part a reader does not know reads as unknown, and a misspelt one fails",
          "[unit][codec]") {
  std::string error;
  const auto future = parse_frame_header(
      R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 0, "keep-alive": true, "request-id": 3, "stream": "pause"})",
      error);
  REQUIRE(future);
  CHECK(future->stream == stream_part::unknown);
  const auto escaped = parse_frame_header(
      R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 0, "keep-alive": true, "request-id": 3, "stream": "it\u0065m"})",
      error);
  REQUIRE(escaped);
  CHECK(escaped->stream == stream_part::item);  // the full parser reads every spelling
  CHECK_FALSE(parse_frame_header(
      R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 0, "stream": 1})",
      error));
  CHECK(error == "JSON header \"stream\" is not a string");
  CHECK_FALSE(parse_frame_header(
      R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": 0, "credit": -1})",
      error));
  CHECK(error == "JSON header \"credit\" is not a non-negative integer");
}

TEST_CASE("feature names a reader does not know are ignored, and so are control kinds",
          "[unit][codec]") {
  std::string error;
  const auto h = parse_frame_header(
      R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,)"
      R"("features":["streams-v9","going-away",""],"control":"rebalance","window":3})",
      error);
  REQUIRE(h);
  CHECK(h->features == feature::going_away);
  CHECK(h->kind == frame_kind::unknown_control);
  CHECK(h->window == 3u);
  const auto empty = parse_frame_header(
      R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,"features":[]})",
      error);
  REQUIRE(empty);
  CHECK(empty->features == 0u);  // announced, and none spoken
  const auto none = parse_frame_header(
      R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0})", error);
  REQUIRE(none);
  CHECK_FALSE(none->features);  // not announced at all
}

TEST_CASE("the decoder rejects malformed headers with a reason", "[unit][codec]") {
  auto with_header = [](std::string json) {
    std::string f(2, '\0');
    f[0] = static_cast<char>(json.size() >> 8);
    f[1] = static_cast<char>(json.size() & 0xFF);
    return f + json;
  };
  struct bad {
    std::string header;
    std::string reason;
  };
  const std::vector<bad> cases{
      {"not json", "not a JSON object: it starts with 'n'"},
      {"[1,2]", "not a JSON object: it starts with '['"},
      {" [1]", "not an object"},
      {"{not json}", "not valid JSON"},
      {R"({"content-type":"text/json","content-encoding":"utf-8","content-length":1})",
       "byteorder"},
      {R"({"byteorder":"little","content-encoding":"utf-8","content-length":1})", "content-type"},
      {R"({"byteorder":"little","content-type":"text/json","content-length":1})",
       "content-encoding"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8"})",
       "content-length"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":-1})",
       "non-negative integer"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":1.5})",
       "non-negative integer"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":"7"})",
       "non-negative integer"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":1,"keep-alive":1})",
       "keep-alive"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,"features":"cancel"})",
       "\"features\" is not an array of strings"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,"features":["cancel",1]})",
       "\"features\" is not an array of strings"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,"features":[["cancel"]]})",
       "\"features\" is not an array of strings"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,"features":[{"a":1}]})",
       "\"features\" is not an array of strings"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,"control":7})",
       "\"control\" is not a string"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,"last-request-id":-2})",
       "\"last-request-id\" is not a non-negative integer"},
      {R"({"byteorder":"little","content-type":"text/json","content-encoding":"utf-8","content-length":0,"window":true})",
       "\"window\" is not a non-negative integer"},
  };
  for (const auto& c : cases) {
    INFO(c.header);
    frame_decoder d(1 << 20);
    CHECK(d.decode(with_header(c.header)) == frame_decoder::status::malformed);
    CHECK_THAT(d.error(), Catch::Contains(c.reason));
  }
  // A TLS ClientHello seems to declare a 5,635-byte header: refused at once
  // by its first bytes instead of waited for.
  frame_decoder tls(1 << 20);
  CHECK(tls.decode(std::string("\x16\x03\x01\x02\x00\x01", 6)) == frame_decoder::status::malformed);
  CHECK_THAT(tls.error(), Catch::Contains("byte 0x01") && Catch::Contains("the peer uses TLS"));
  frame_decoder zero(1 << 20);
  CHECK(zero.decode(std::string(2, '\0')) == frame_decoder::status::malformed);
}

TEST_CASE("requests decode the same whatever their spelling", "[unit][codec]") {
  // The canonical spelling is read by a fast path; every other spelling by
  // the full parser. Both must agree with a plain JSON reading.
  const std::vector<std::string> contents{
      R"({"action": "echo", "value": 1})",
      R"({"action": "echo", "value": {"x": "}", "y": [1, 2]}})",
      R"({"action": "a\u00e9", "value": 1})",
      "{\"action\": \"\xc3\xa9t\xc3\xa9\", \"value\": \"\xc3\xa9\"}",
      R"({"action": "a\"b", "value": null})",
      R"({"action": "a", "value": 1, "extra": 2})",
      R"({"action": "a", "value": 1, "value": 2})",
      R"({"action": "a", "value": 1 })",
      R"({"value": [true], "action": "b"})",
      R"({"action":"c","value":"x"})",
      R"({"action": "", "value": ""})",
  };
  for (const auto& content : contents) {
    INFO(content);
    std::string why;
    const auto request = decode_request(content, why);
    REQUIRE(request);
    const json::object expected = json::parse(content).as_object();
    CHECK(request->action == expected.at("action").as_string());
    CHECK(request->value == expected.at("value"));
  }
  std::string why;
  CHECK_FALSE(decode_request(R"({"action": "a", "value": 1, })", why));
  CHECK_FALSE(decode_request(R"({"action": "a", "value": })", why));
  CHECK_FALSE(decode_request(R"({"action": "a", "value": 1)", why));
}

TEST_CASE("request content errors are explained", "[unit][codec]") {
  std::string why;
  CHECK_FALSE(decode_request("{nope", why));
  CHECK_THAT(why, Catch::Contains("not valid JSON"));
  CHECK_FALSE(decode_request("[1]", why));
  CHECK_THAT(why, Catch::Contains("not a JSON object"));
  CHECK_FALSE(decode_request(R"({"value": 1})", why));
  CHECK_THAT(why, Catch::Contains("no \"action\""));
  CHECK_FALSE(decode_request(R"({"action": 5})", why));
  CHECK_THAT(why, Catch::Contains("not a string"));
  CHECK_FALSE(decode_request("{\"action\": \"\xff\xfe\"}", why));
  CHECK_THAT(why, Catch::Contains("not valid JSON"));
  const std::string deep = std::string(100, '[') + std::string(100, ']');
  CHECK_FALSE(decode_request(R"({"action": "a", "value": )" + deep + "}", why));
  CHECK_THAT(why, Catch::Contains("not valid JSON"));
  const std::string nested = std::string(30, '[') + std::string(30, ']');
  CHECK(decode_request(R"({"action": "a", "value": )" + nested + "}", why));
  // The limit is the content's, however it is spelt: 64 levels in all.
  const auto levels = [](int n) { return std::string(n, '[') + std::string(n, ']'); };
  for (const std::string& spelling :
       {std::string(R"({"action": "a", "value": )"), std::string(R"({ "value": )")}) {
    const std::string tail = spelling.find("action") == std::string::npos ? R"(, "action": "a"})" : "}";
    INFO(spelling);
    CHECK(decode_request(spelling + levels(63) + tail, why));
    CHECK_FALSE(decode_request(spelling + levels(64) + tail, why));
  }
  auto no_value = decode_request(R"({"action": "a"})", why);
  REQUIRE(no_value);
  CHECK(no_value->value.is_null());
}

TEST_CASE("error responses stay readable for COMET and carry a code", "[unit][codec]") {
  const std::string content = encode_error_response(errc::no_handler, "no handler answered 'x'");
  CHECK(content ==
        R"({"result": "Error: no handler answered 'x'", "error": {"code": "no_handler", "message": "no handler answered 'x'"}})");
  auto r = decode_response(content);
  REQUIRE(r.error);
  CHECK(*r.error == errc::no_handler);
  CHECK(r.error_message == "no handler answered 'x'");
  CHECK(r.result == "Error: no handler answered 'x'");
  CHECK(errc_from_wire("something_new") == errc::remote_error);
  CHECK_THROWS_AS(decode_response(R"({"answer": 1})"), comet::error);
  CHECK_THROWS_AS(decode_response("nope"), comet::error);
}

TEST_CASE("JSON text is spelt as Python's json.dumps spells it", "[unit][codec]") {
  auto py = [](std::string_view json_text) { return to_json_text(json::parse(json_text)); };
  CHECK(py(R"({"a":1,"b":[true,false,null],"c":{}})") ==
        R"({"a": 1, "b": [true, false, null], "c": {}})");
  CHECK(py("[]") == "[]");
  CHECK(py("2.5") == "2.5");
  CHECK(py("1.0") == "1.0");
  CHECK(py("100.0") == "100.0");
  CHECK(py("0.0001") == "0.0001");
  CHECK(py("0.00001") == "1e-05");
  CHECK(py("1e16") == "1e+16");
  CHECK(py("123456789012345.6") == "123456789012345.6");
  CHECK(py("-0.5") == "-0.5");
  CHECK(py("18446744073709551615") == "18446744073709551615");
  CHECK(py(R"("tab\tquote\"back\\nl\nctl\u0001 µ")") ==
        "\"tab\\tquote\\\"back\\\\nl\\nctl\\u0001 µ\"");
}

TEST_CASE("numbers are read as Python reads them, to the last bit", "[unit][codec]") {
  // Python's repr of these doubles; Boost.JSON 1.81's own parser reads each
  // one unit in the last place off.
  const std::vector<std::pair<std::string, double>> cases{
      {"46.803017420987636", 46.803017420987636},
      {"94.17241521181185", 94.17241521181185},
      {"926.1024924743651", 926.1024924743651},
      {"-3.156233559702614e-80", -3.156233559702614e-80},
      {"1.9162297225132058e+173", 1.9162297225132058e+173},
      {"0.1", 0.1},
      {"1e400", std::numeric_limits<double>::infinity()},
      {"0e4047", 0.0},  // Boost.JSON 1.81 reads NaN (the fuzzer found it)
      {"-1e-400", -0.0},
      {"-0.000e4047", -0.0},
      {"5e-4000", 0.0},
      {"-5e+4000", -std::numeric_limits<double>::infinity()},
      {"123456789012345678901234567890", 123456789012345678901234567890.0}};
  for (const auto& [text, expected] : cases) {
    INFO(text);
    std::string why;
    const auto v = parse_json("[" + text + "]", why);
    REQUIRE(v);
    REQUIRE(v->as_array()[0].is_double());
    CHECK(v->as_array()[0].as_double() == expected);
    CHECK(std::signbit(v->as_array()[0].as_double()) == std::signbit(expected));
  }
  // Written back as the same text.
  std::string why;
  const auto v = parse_json(R"({"a": [46.803017420987636, 94.17241521181185], "b": -1, "c": 18446744073709551615})", why);
  REQUIRE(v);
  CHECK(to_json_text(*v) == R"({"a": [46.803017420987636, 94.17241521181185], "b": -1, "c": 18446744073709551615})");
  CHECK_FALSE(parse_json("[1] x", why));
  CHECK_THAT(why, Catch::Contains("extra"));
  CHECK_FALSE(parse_json(std::string(65, '[') + std::string(65, ']'), why));
  CHECK(parse_json(std::string(64, '[') + std::string(64, ']'), why));
  CHECK(parse_json("  {\"k\": \"v\"}  \n", why) == json::parse(R"({"k": "v"})"));
}

TEST_CASE("canonical and free-form headers parse alike", "[unit][codec]") {
  const std::string canonical =
      R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": )";
  struct sample {
    std::string tail;  // after the prefix
    bool valid;
    std::size_t length;
    bool keep_alive;
    std::optional<std::uint64_t> id;
  };
  const std::vector<sample> samples{
      {"54}", true, 54, false, std::nullopt},
      {"0, \"keep-alive\": true}", true, 0, true, std::nullopt},
      {"7, \"keep-alive\": true, \"request-id\": 18446744073709551615}", true, 7, true,
       18446744073709551615ull},
      {"7, \"request-id\": 3, \"keep-alive\": false}", true, 7, false, 3},
      {"7, \"extra\": [1, {\"content-length\": \"x\"}]}", true, 7, false, std::nullopt},
      {"054}", false, 0, false, std::nullopt},
      {"-1}", false, 0, false, std::nullopt},
      {"99999999999999999999999}", false, 0, false, std::nullopt},
      {"5} ", true, 5, false, std::nullopt},
      {"5}x", false, 0, false, std::nullopt},
      {"5", false, 0, false, std::nullopt},
  };
  for (const auto& s : samples) {
    // The same header, once as written and once respaced so that only the
    // full parser can read it.
    for (const std::string& text : {canonical + s.tail, "{ " + canonical.substr(1) + s.tail}) {
      INFO(text);
      std::string why;
      const auto h = parse_frame_header(text, why);
      REQUIRE(h.has_value() == s.valid);
      if (!h) continue;
      CHECK(h->content_length == s.length);
      CHECK(h->keep_alive == s.keep_alive);
      CHECK(h->request_id == s.id);
    }
  }
}
