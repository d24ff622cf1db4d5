#include <comet/codec.hpp>

#include "frame_header_parser.hpp"

#include "json_text.hpp"

#include <boost/json.hpp>

#include <charconv>

namespace comet {
namespace {

namespace json = boost::json;

void append_unsigned(std::string& out, std::uint64_t n) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, r.ptr);
}

}  // namespace

std::string_view stream_part_name(stream_part p) noexcept {
  switch (p) {
    case stream_part::open: return "open";
    case stream_part::subscribe: return "subscribe";
    case stream_part::begin: return "begin";
    case stream_part::item: return "item";
    case stream_part::end: return "end";
    case stream_part::none:
    case stream_part::unknown: break;
  }
  return {};
}

void append_frame(std::string& out, const frame_header& h, std::string_view content) {
  using namespace std::string_view_literals;
  // The length field and the three keys nearly every frame has with the
  // values COMET writes, in one append: the same bytes as the general path
  // below, which spends a tenth of a pipelined request's instructions at
  // the host escaping three constant strings.
  constexpr auto usual =
      "\0\0{\"byteorder\": \"little\", \"content-type\": \"text/json\", "
      "\"content-encoding\": \"utf-8\", \"content-length\": "sv;
  const std::size_t start = out.size();
  if (std::string_view(h.byteorder) == "little"sv && h.content_type == json_content_type &&
      std::string_view(h.content_encoding) == "utf-8"sv) {
    out += usual;
  } else {
    out.append(proto_header_size, '\0');
    out += "{\"byteorder\": ";
    detail::append_json_string(out, h.byteorder);
    out += ", \"content-type\": ";
    detail::append_json_string(out, h.content_type);
    out += ", \"content-encoding\": ";
    detail::append_json_string(out, h.content_encoding);
    out += ", \"content-length\": ";
  }
  append_unsigned(out, content.size());
  if (h.keep_alive) out += ", \"keep-alive\": true";
  if (h.request_id) {
    out += ", \"request-id\": ";
    append_unsigned(out, *h.request_id);
  }
  if (h.kind == frame_kind::cancel) out += ", \"control\": \"cancel\"";
  if (h.kind == frame_kind::going_away) out += ", \"control\": \"going-away\"";
  if (h.kind == frame_kind::credit) out += ", \"control\": \"credit\"";
  if (h.last_request_id) {
    out += ", \"last-request-id\": ";
    append_unsigned(out, *h.last_request_id);
  }
  if (h.stream != stream_part::none && h.stream != stream_part::unknown) {
    out += ", \"stream\": \"";
    out += stream_part_name(h.stream);
    out += '"';
  }
  if (h.credit) {
    out += ", \"credit\": ";
    append_unsigned(out, *h.credit);
  }
  if (h.sequence) {
    out += ", \"sequence\": ";
    append_unsigned(out, *h.sequence);
  }
  if (h.features) {
    out += ", \"features\": [";
    const char* separator = "";
    for (const auto& [bit, name] : feature::names) {
      if (!(*h.features & bit)) continue;
      out += separator;
      out += '"';
      out += name;
      out += '"';
      separator = ", ";
    }
    out += ']';
  }
  if (h.window) {
    out += ", \"window\": ";
    append_unsigned(out, *h.window);
  }
  if (h.window_bytes) {
    out += ", \"window-bytes\": ";
    append_unsigned(out, *h.window_bytes);
  }
  if (!h.auth_token.empty()) {
    out += ", \"auth-token\": ";
    detail::append_json_string(out, h.auth_token);
  }
  if (!h.traceparent.empty()) {
    out += ", \"traceparent\": ";
    detail::append_json_string(out, h.traceparent);
  }
  out += '}';
  const std::size_t header_size = out.size() - start - proto_header_size;
  if (header_size > max_json_header_size)
    throw error(errc::protocol_error, "frame header of " + std::to_string(header_size) +
                                          " bytes exceeds the 16-bit length field");
  out[start] = static_cast<char>((header_size >> 8) & 0xFF);
  out[start + 1] = static_cast<char>(header_size & 0xFF);
  out += content;
}

std::string encode_frame(const frame_header& header, std::string_view content) {
  std::string out;
  out.reserve(proto_header_size + 128 + content.size());
  append_frame(out, header, content);
  return out;
}

frame_decoder::status frame_decoder::decode(std::string_view buffered) {
  if (!have_header_) {
    if (buffered.size() < proto_header_size) {
      bytes_needed_ = proto_header_size;
      return status::need_more;
    }
    header_size_ = (static_cast<std::size_t>(static_cast<unsigned char>(buffered[0])) << 8) |
                   static_cast<unsigned char>(buffered[1]);
    if (header_size_ == 0) {
      error_ = "JSON header length is 0";
      return status::malformed;
    }
    // A header is a JSON object: anything else is known from its first
    // byte, without waiting for the length it seems to declare (a TLS
    // ClientHello declares 5,635 bytes and would sit until a timeout).
    if (buffered.size() > proto_header_size) {
      const char first = buffered[proto_header_size];
      if (first != '{' && first != ' ' && first != '\t' && first != '\n' && first != '\r') {
        error_ = "the JSON header is not a JSON object: it starts with ";
        const auto byte = static_cast<unsigned char>(first);
        if (byte >= 0x20 && byte < 0x7F) {
          error_ += '\'';
          error_ += first;
          error_ += "', not '{'";
        } else {
          constexpr char hex[] = "0123456789abcdef";
          error_ += "byte 0x";
          error_ += hex[byte >> 4];
          error_ += hex[byte & 0xF];
        }
        if (buffered[0] == '\x16' && buffered[1] == '\x03')
          error_ += " (the bytes are a TLS handshake: the peer uses TLS and this side does not)";
        return status::malformed;
      }
    }
    if (buffered.size() < proto_header_size + header_size_) {
      bytes_needed_ = proto_header_size + header_size_;
      return status::need_more;
    }
    // The canonical header is read into header_ in place: no frame_header
    // is built and moved per frame.
    const auto text = buffered.substr(proto_header_size, header_size_);
    if (!header_canonical_) {
      header_ = frame_header{};
      header_canonical_ = true;
    }
    if (!detail::parse_canonical_frame_header(text, header_)) {
      auto h = parse_frame_header(text, error_);
      if (!h) return status::malformed;
      header_ = std::move(*h);
      header_canonical_ = false;
    }
    have_header_ = true;
  }
  if (header_.content_length > max_content_length_) {
    error_ = "content-length " + std::to_string(header_.content_length) + " exceeds the limit of " +
             std::to_string(max_content_length_) + " bytes";
    return status::too_large;
  }
  const std::size_t total = proto_header_size + header_size_ + header_.content_length;
  if (buffered.size() < total) {
    bytes_needed_ = total;
    return status::need_more;
  }
  content_ = buffered.substr(proto_header_size + header_size_, header_.content_length);
  frame_size_ = total;
  return status::complete;
}

void frame_decoder::reset() noexcept {
  have_header_ = false;
  header_size_ = 0;
  content_ = {};
  frame_size_ = 0;
  bytes_needed_ = proto_header_size;
  error_.clear();
}

void detail::append_request(std::string& out, std::string_view action, const json::value& value) {
  out += "{\"action\": ";
  detail::append_json_string(out, action);
  out += ", \"value\": ";
  append_json_text(out, value);
  out += '}';
}

std::string encode_request(std::string_view action, const json::value& value) {
  std::string out;
  detail::append_request(out, action, value);
  return out;
}

namespace {

// What comet::parse_json allows a whole content.
constexpr std::size_t max_content_depth = 64;

// The fast paths' common step: the last member's value of a content object,
// from `start` to the closing brace, when nothing else follows it (anything
// more, another key, fails this parse: the full path decides then).
std::optional<json::value> last_member_value(std::string_view content, std::size_t start,
                                             json::storage_ptr storage = {}) {
  if (start >= content.size() || content.back() != '}') return std::nullopt;
  std::string ignored;
  // One level less than a whole content may nest: the object holding it.
  return detail::parse_json(content.substr(start, content.size() - 1 - start), ignored,
                            max_content_depth - 1, std::move(storage));
}

// The request as COMET and comet-net write it, {"action": "<name>", "value":
// <value>}, with a plain ASCII action: the action is taken as it stands and
// only the value is parsed. Anything else (escapes, other keys, another
// spelling) returns nullopt and takes the full path.
std::optional<request_message> decode_canonical_request(std::string_view content,
                                                        const json::storage_ptr& storage) {
  constexpr std::string_view opening = "{\"action\": \"";
  constexpr std::string_view between = "\", \"value\": ";
  if (!content.starts_with(opening)) return std::nullopt;
  const std::size_t action_start = opening.size();
  std::size_t action_end = action_start;
  for (; action_end < content.size(); ++action_end) {
    const auto c = static_cast<unsigned char>(content[action_end]);
    if (c == '"') break;
    if (c == '\\' || c < 0x20 || c >= 0x80) return std::nullopt;
  }
  if (content.substr(action_end, between.size()) != between) return std::nullopt;
  auto value = last_member_value(content, action_end + between.size(), storage);
  if (!value) return std::nullopt;
  return request_message{std::string(content.substr(action_start, action_end - action_start)),
                         std::move(*value)};
}

}  // namespace

std::optional<request_message> decode_request(std::string_view content, std::string& error) {
  return detail::decode_request(content, error, {});
}

std::optional<request_message> detail::decode_request(std::string_view content, std::string& error,
                                                      json::storage_ptr storage = {}) {
  if (auto canonical = decode_canonical_request(content, storage)) return canonical;
  std::string reason;
  auto parsed = detail::parse_json(content, reason, max_content_depth, storage);
  if (!parsed) {
    error = "content is not valid JSON (" + reason + ")";
    return std::nullopt;
  }
  json::value& v = *parsed;
  if (!v.is_object()) {
    error = "content is not a JSON object";
    return std::nullopt;
  }
  json::object& o = v.get_object();
  json::value* action = o.if_contains("action");
  if (!action || !action->is_string()) {
    error = action ? "\"action\" is not a string" : "content has no \"action\"";
    return std::nullopt;
  }
  // Moved out, not assigned: the value stays on `storage`.
  json::value* value = o.if_contains("value");
  return request_message{std::string(action->get_string()),
                         value ? json::value(std::move(*value)) : json::value(nullptr, storage)};
}

void detail::append_response(std::string& out, const json::value& result) {
  out += "{\"result\": ";
  append_json_text(out, result);
  out += '}';
}

std::string encode_response(const json::value& result) {
  std::string out;
  detail::append_response(out, result);
  return out;
}

std::string encode_error_response(errc code, std::string_view message) {
  std::string out = "{\"result\": ";
  detail::append_json_string(out, "Error: " + std::string(message));
  out += ", \"error\": {\"code\": ";
  detail::append_json_string(out, wire_name(code));
  out += ", \"message\": ";
  detail::append_json_string(out, message);
  out += "}}";
  return out;
}

response_message decode_response(std::string_view content) {
  // The common answer, {"result": <value>} as comet-net and COMET write it:
  // only the value is parsed. Anything more ("error") leaves extra text
  // after the value, which fails this parse and takes the full path.
  constexpr std::string_view plain = "{\"result\": ";
  if (content.starts_with(plain)) {
    if (auto result = last_member_value(content, plain.size())) {
      response_message m;
      m.result = std::move(*result);
      return m;
    }
  }
  std::string reason;
  auto parsed = parse_json(content, reason);
  if (!parsed) throw error(errc::protocol_error, "response content is not valid JSON (" + reason + ")");
  json::value& v = *parsed;
  if (!v.is_object()) throw error(errc::protocol_error, "response content is not a JSON object");
  json::object& o = v.get_object();
  json::value* result = o.if_contains("result");
  if (!result) throw error(errc::protocol_error, "response content has no \"result\"");
  response_message m;
  m.result = std::move(*result);
  if (const json::value* err = o.if_contains("error"); err && err->is_object()) {
    const json::object& e = err->get_object();
    const json::value* code = e.if_contains("code");
    const json::value* message = e.if_contains("message");
    m.error_code = code && code->is_string() ? std::string(code->get_string()) : "remote_error";
    m.error = errc_from_wire(m.error_code);
    m.error_message = message && message->is_string() ? std::string(message->get_string())
                                                      : to_json_text(m.result);
  }
  return m;
}

}  // namespace comet
