// libFuzzer target over everything that parses peer bytes: the incremental
// frame_decoder (fed the input as a stream, in pseudo-random chunk splits,
// compared with decoding it in one piece), parse_frame_header,
// decode_request and decode_response, and the to_json_text writer on what
// they accept (re-encoded text must parse back to the same value).
//
// The input itself is the byte stream, so the captured vectors in
// tests/vectors/ are meaningful seeds; the split is derived from a hash of it.
#include <comet/codec.hpp>

#include "json_match.hpp"

#include <boost/json/parse.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace json = boost::json;
using comet::frame_decoder;
using comet::frame_header;
using comet::fuzz::has_non_finite;
using comet::fuzz::json_match;

// A finding: print what broke and abort, which libFuzzer reports as a crash.
#define FUZZ_CHECK(condition)                                                   \
  do {                                                                          \
    if (!(condition)) {                                                         \
      std::fprintf(stderr, "codec_fuzzer: check failed at line %d: %s\n",       \
                   __LINE__, #condition);                                       \
      std::abort();                                                             \
    }                                                                           \
  } while (0)

// Same bound as the codec's own parser, so this parse accepts what it does.
constexpr std::size_t max_json_depth = 64;

std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ull;
  return h;
}

// splitmix64: a small deterministic generator for chunk sizes.
struct chunk_sizes {
  std::uint64_t state;
  std::size_t next() {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    static constexpr std::size_t spans[] = {1, 2, 7, 64, 4096};
    return 1 + static_cast<std::size_t>(z % spans[(z >> 32) % std::size(spans)]);
  }
};

struct decoded_frame {
  frame_header header;
  std::string content;
};

struct stream_outcome {
  std::vector<decoded_frame> frames;
  frame_decoder::status end = frame_decoder::status::need_more;
  std::string error;
};

bool same_header(const frame_header& a, const frame_header& b) {
  return a.byteorder == b.byteorder && a.content_type == b.content_type &&
         a.content_encoding == b.content_encoding && a.content_length == b.content_length &&
         a.keep_alive == b.keep_alive && a.request_id == b.request_id &&
         a.auth_token == b.auth_token;
}

// Decodes `input` as a connection would: buffer what arrived, decode, consume
// each complete frame and go on until the stream ends or breaks.
// `sizes` null means the whole input arrives at once.
stream_outcome decode_stream(std::string_view input, std::size_t limit, chunk_sizes* sizes) {
  stream_outcome out;
  frame_decoder decoder(limit);
  std::string buffered;
  std::size_t offered = 0;
  for (;;) {
    const auto status = decoder.decode(buffered);
    switch (status) {
      case frame_decoder::status::complete: {
        const auto& h = decoder.header();
        FUZZ_CHECK(decoder.frame_size() <= buffered.size());
        FUZZ_CHECK(decoder.content().size() == h.content_length);
        FUZZ_CHECK(h.content_length <= limit);
        FUZZ_CHECK(decoder.content().data() + decoder.content().size() ==
                   buffered.data() + decoder.frame_size());
        out.frames.push_back({h, std::string(decoder.content())});
        buffered.erase(0, decoder.frame_size());
        decoder.reset();
        continue;
      }
      case frame_decoder::status::need_more:
        FUZZ_CHECK(decoder.bytes_needed() > buffered.size());
        break;
      case frame_decoder::status::too_large:
        FUZZ_CHECK(decoder.header().content_length > limit);
        [[fallthrough]];
      case frame_decoder::status::malformed:
        FUZZ_CHECK(!decoder.error().empty());
        out.end = status;
        out.error = decoder.error();
        return out;
    }
    if (offered == input.size()) return out;
    const std::size_t n = sizes ? std::min(sizes->next(), input.size() - offered)
                                : input.size() - offered;
    buffered.append(input.substr(offered, n));
    offered += n;
  }
}

void check_json_text_round_trip(const json::value& v) {
  if (has_non_finite(v)) return;  // written as Python does (Infinity, NaN): not JSON
  const std::string text = comet::to_json_text(v);
  json::parse_options options;
  options.max_depth = max_json_depth;
  boost::system::error_code ec;
  const json::value again = json::parse(text, ec, {}, options);
  FUZZ_CHECK(!ec);
  FUZZ_CHECK(json_match(v, again));
}

// Boost.JSON's own reading of `content` as an object, the oracle for the
// codec's fast paths: null when it is not a JSON object within the depth.
// Where it reads a number as NaN or infinity its reading is not trusted
// (Boost.JSON 1.81 reads 0e4047 as NaN; the codec reads 0, as Python does),
// so a value holding one is not compared.
const json::object* oracle_object(std::string_view content, json::value& storage) {
  json::parse_options options;
  options.max_depth = max_json_depth;
  boost::system::error_code ec;
  storage = json::parse(content, ec, {}, options);
  if (ec || !storage.is_object()) return nullptr;
  return &storage.get_object();
}

void check_request(std::string_view content) {
  std::string why;
  auto request = comet::decode_request(content, why);
  // Whatever path read it, the codec agrees with a plain JSON reading.
  json::value storage;
  const json::object* expected = oracle_object(content, storage);
  const json::value* action = expected ? expected->if_contains("action") : nullptr;
  FUZZ_CHECK(bool(request) == (action && action->is_string()));
  if (request) {
    FUZZ_CHECK(request->action == action->get_string());
    const json::value* value = expected->if_contains("value");
    const json::value oracle = value ? *value : json::value(nullptr);
    FUZZ_CHECK(has_non_finite(oracle) || json_match(request->value, oracle));
  }
  if (!request) {
    FUZZ_CHECK(!why.empty());
    return;
  }
  check_json_text_round_trip(request->value);
  if (has_non_finite(request->value)) return;
  std::string why_again;
  auto again = comet::decode_request(comet::encode_request(request->action, request->value),
                                     why_again);
  FUZZ_CHECK(again);
  FUZZ_CHECK(again->action == request->action);
  FUZZ_CHECK(json_match(again->value, request->value));
}

void check_response(std::string_view content) {
  comet::response_message response;
  json::value storage;
  const json::object* expected = oracle_object(content, storage);
  const json::value* result = expected ? expected->if_contains("result") : nullptr;
  try {
    response = comet::decode_response(content);
  } catch (const comet::error& e) {
    FUZZ_CHECK(e.code() == comet::errc::protocol_error);
    FUZZ_CHECK(!result);
    return;
  }
  FUZZ_CHECK(result && (has_non_finite(*result) || json_match(response.result, *result)));
  FUZZ_CHECK(bool(response.error) == bool(expected->if_contains("error") &&
                                          expected->at("error").is_object()));
  if (has_non_finite(response.result)) return;
  auto again = comet::decode_response(comet::encode_response(response.result));
  FUZZ_CHECK(!again.error);
  FUZZ_CHECK(json_match(again.result, response.result));
}

// A decoded header written back out must decode to the same header.
void check_frame_round_trip(const decoded_frame& f) {
  std::string frame;
  try {
    frame = comet::encode_frame(f.header, f.content);
  } catch (const comet::error& e) {
    // Escaping can grow a header that was near the 16-bit limit past it.
    FUZZ_CHECK(e.code() == comet::errc::protocol_error);
    return;
  }
  frame_decoder decoder(f.content.size());
  FUZZ_CHECK(decoder.decode(frame) == frame_decoder::status::complete);
  FUZZ_CHECK(decoder.frame_size() == frame.size());
  FUZZ_CHECK(same_header(decoder.header(), f.header));
  FUZZ_CHECK(decoder.content() == f.content);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::uint64_t seed = fnv1a(input);
  static constexpr std::size_t limits[] = {0, 64, 4096, 16 << 20};
  const std::size_t limit = limits[seed % std::size(limits)];

  const stream_outcome whole = decode_stream(input, limit, nullptr);
  chunk_sizes sizes{seed};
  const stream_outcome split = decode_stream(input, limit, &sizes);
  FUZZ_CHECK(whole.end == split.end);
  FUZZ_CHECK(whole.error == split.error);
  FUZZ_CHECK(whole.frames.size() == split.frames.size());
  for (std::size_t i = 0; i < whole.frames.size(); ++i) {
    FUZZ_CHECK(same_header(whole.frames[i].header, split.frames[i].header));
    FUZZ_CHECK(whole.frames[i].content == split.frames[i].content);
  }

  for (const auto& f : whole.frames) {
    check_frame_round_trip(f);
    check_request(f.content);
    check_response(f.content);
  }

  // The raw input as a JSON header and as content, past any framing.
  std::string why;
  if (auto h = comet::parse_frame_header(input, why)) {
    h->content_length %= 4096;  // a content of that size, without allocating what it says
    check_frame_round_trip({*h, std::string(h->content_length, 'x')});
  } else {
    FUZZ_CHECK(!why.empty());
  }
  check_request(input);
  check_response(input);
  return 0;
}
