// What the soak sends: unique values that exercise the JSON writer (escapes,
// multi-byte UTF-8, numbers at the edges), and raw frames for hostile peers.
#include "soak.hpp"

#include <comet/codec.hpp>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace comet_soak {
namespace {

// Mostly ASCII; now and then characters JSON must escape, and 2-, 3- and
// 4-byte UTF-8 sequences.
std::string random_text(std::size_t length, rng_type& rng) {
  static constexpr std::array<std::string_view, 12> rare{
      "\"", "\\", "\n", "\t", "\x01", "/", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
      "\xe4\xb8\xad", "\x7f", "\xc2\xa0"};
  std::string out;
  out.reserve(length);
  std::uniform_int_distribution<int> ascii(' ', '~');
  std::uniform_int_distribution<std::size_t> pick_rare(0, rare.size() - 1);
  while (out.size() < length) {
    if (rng() % 16 == 0) out += rare[pick_rare(rng)];
    else out += static_cast<char>(ascii(rng));
  }
  return out;
}

std::size_t random_length(rng_type& rng) {
  switch (rng() % 20) {
    case 0: return 0;
    case 1: return 4000 + rng() % 20000;  // a few tens of KiB
    case 2:
    case 3: return 500 + rng() % 3500;
    default: return rng() % 200;
  }
}

// Doubles of every length, 17 significant digits included: the echo must
// give back the same bits (Boost.JSON 1.81's own parser did not always).
json::value random_number(rng_type& rng) {
  switch (rng() % 5) {
    case 0: return static_cast<std::int64_t>(rng());
    case 1: return static_cast<std::uint64_t>(rng());
    case 2: return std::uniform_real_distribution<double>(-1e6, 1e6)(rng);
    case 3: return std::numeric_limits<std::int64_t>::min();
    default: return static_cast<double>(rng() % 1000) / 10.0;
  }
}

std::size_t request_size(const json::value& value) {
  return comet::encode_request(echo_action, value).size();
}

}  // namespace

json::value unique_value(std::uint64_t id, std::string_view via, rng_type& rng) {
  json::object v;
  v["id"] = id;
  v["via"] = via;
  v["number"] = random_number(rng);
  v["flags"] = json::array{rng() % 2 == 0, nullptr, json::object{}, json::array{}, ""};
  v["text"] = random_text(random_length(rng), rng);
  json::value value(std::move(v));
  // Escaping can grow text up to six times; stay well under the host's limit.
  while (request_size(value) > host_max_content - 1024) {
    auto& text = value.as_object()["text"].as_string();
    text = json::string(std::string_view(text).substr(0, text.size() / 2));
    // Cutting may split a multi-byte character; keep the prefix valid UTF-8.
    while (!text.empty() && (static_cast<unsigned char>(text.back()) & 0x80)) text.pop_back();
  }
  return value;
}

json::value soak_context::fresh_value(std::string_view via, rng_type& rng) {
  return unique_value(unique_id(), via, rng);
}

json::value oversize_value(std::uint64_t id, rng_type& rng) {
  json::object v;
  v["id"] = id;
  v["text"] = std::string(host_max_content + 1 + rng() % (32 * 1024), 'x');
  return v;
}

std::string random_bytes(std::size_t n, rng_type& rng) {
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng() & 0xFF);
  return out;
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

std::string frame_with_header(std::string_view header, std::string_view content) {
  std::string out;
  out += static_cast<char>((header.size() >> 8) & 0xFF);
  out += static_cast<char>(header.size() & 0xFF);
  out += header;
  out += content;
  return out;
}

std::string header_text(std::string_view content_length) {
  return std::string(
             R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": )") +
         std::string(content_length) + "}";
}

std::string request_frame(std::string_view action, const json::value& value, bool keep_alive,
                          std::optional<std::uint64_t> request_id) {
  comet::frame_header h;
  h.keep_alive = keep_alive;
  h.request_id = request_id;
  return comet::encode_frame(h, comet::encode_request(action, value));
}

}  // namespace comet_soak
