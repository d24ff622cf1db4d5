#include "wire.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <charconv>

namespace comet_bench {
namespace json = boost::json;

std::string make_payload(std::size_t size) {
  static constexpr std::string_view alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s(size, ' ');
  for (std::size_t i = 0; i < size; ++i) s[i] = alphabet[i % alphabet.size()];
  return s;
}

std::string echo_request_content(std::string_view payload) {
  std::string s = R"({"action": "echo", "value": ")";
  s += payload;
  s += "\"}";
  return s;
}

std::string echo_response_content(std::string_view payload) {
  std::string s = R"({"result": ")";
  s += payload;
  s += "\"}";
  return s;
}

void append_frame(std::string& out, std::string_view content, bool keep_alive,
                  std::optional<std::uint64_t> request_id) {
  const std::size_t start = out.size();
  out.append(2, '\0');
  out += R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", )"
         R"("content-length": )";
  char digits[24];
  out.append(digits, std::to_chars(digits, digits + sizeof digits, content.size()).ptr);
  if (keep_alive) out += R"(, "keep-alive": true)";
  if (request_id) {
    out += R"(, "request-id": )";
    out.append(digits, std::to_chars(digits, digits + sizeof digits, *request_id).ptr);
  }
  out += '}';
  const std::size_t header = out.size() - start - 2;
  out[start] = static_cast<char>(header >> 8);
  out[start + 1] = static_cast<char>(header & 0xFF);
  out += content;
}

header_parser::header_parser() : parser_(json::storage_ptr(), {}, temp_, sizeof temp_) {}

std::optional<frame_info> header_parser::parse(std::string_view text) {
  json::monotonic_resource arena(arena_, sizeof arena_);
  parser_.reset(&arena);
  boost::system::error_code ec;
  parser_.write(text, ec);
  if (ec) return std::nullopt;
  const json::value header = parser_.release();
  const json::object* obj = header.if_object();
  if (!obj) return std::nullopt;
  frame_info info;
  const json::value* length = obj->if_contains("content-length");
  if (!length) return std::nullopt;
  if (length->is_uint64())
    info.content_length = length->get_uint64();
  else if (length->is_int64() && length->get_int64() >= 0)
    info.content_length = static_cast<std::size_t>(length->get_int64());
  else
    return std::nullopt;
  if (const json::value* ka = obj->if_contains("keep-alive"))
    info.keep_alive = ka->is_bool() && ka->get_bool();
  if (const json::value* id = obj->if_contains("request-id")) {
    if (id->is_uint64())
      info.request_id = id->get_uint64();
    else if (id->is_int64() && id->get_int64() >= 0)
      info.request_id = static_cast<std::uint64_t>(id->get_int64());
  }
  if (const json::value* type = obj->if_contains("content-type"))
    info.json = type->is_string() && type->get_string() == "text/json";
  return info;
}

frame_view response_splitter::next(std::string_view buffered) {
  frame_view f;
  if (buffered.size() < 2) return f;
  const std::size_t header_size = (static_cast<unsigned char>(buffered[0]) << 8) |
                                  static_cast<unsigned char>(buffered[1]);
  f.needed = 2 + header_size;
  if (header_size == 0) {
    f.state = frame_view::status::malformed;
    return f;
  }
  if (buffered.size() < f.needed) return f;
  const std::string_view header = buffered.substr(2, header_size);
  if (!last_info_ || header != last_header_) {
    last_info_ = parser_.parse(header);
    last_header_.assign(header);
  }
  if (!last_info_ || last_info_->content_length > max_content) {
    f.state = frame_view::status::malformed;
    return f;
  }
  f.info = *last_info_;
  f.needed += f.info.content_length;
  if (buffered.size() < f.needed) return f;
  f.content = buffered.substr(2 + header_size, f.info.content_length);
  f.size = f.needed;
  f.state = frame_view::status::complete;
  return f;
}

bool echo_answer_matches(std::string_view content, std::string_view canonical,
                         std::string_view payload) {
  if (content == canonical) return true;
  boost::system::error_code ec;
  const json::value v = json::parse(content, ec);
  if (ec || !v.is_object()) return false;
  const json::object& obj = v.get_object();
  if (obj.contains("error")) return false;
  const json::value* r = obj.if_contains("result");
  return r && r->is_string() && r->get_string() == payload;
}

}  // namespace comet_bench
