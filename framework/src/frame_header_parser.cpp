// The JSON header of every frame, read with Boost.JSON's SAX parser: no
// value tree and no allocation on the hot path, whatever spelling, key
// order or extra keys the peer uses.
#include <comet/codec.hpp>

#include "frame_header_parser.hpp"

#include <boost/json/basic_parser_impl.hpp>

#include <charconv>
#include <cstdint>

namespace comet {
namespace {

namespace json = boost::json;
using json::string_view;
using ec_t = json::error_code;

enum class field {
  none,
  byteorder,
  content_type,
  content_encoding,
  content_length,
  keep_alive,
  request_id,
  auth_token,
  control,
  last_request_id,
  features,
  window,
  window_bytes,
  stream,
  credit,
  sequence,
  traceparent
};

field field_of(std::string_view key) noexcept {
  if (key == "content-length") return field::content_length;
  if (key == "content-type") return field::content_type;
  if (key == "content-encoding") return field::content_encoding;
  if (key == "byteorder") return field::byteorder;
  if (key == "keep-alive") return field::keep_alive;
  if (key == "request-id") return field::request_id;
  if (key == "auth-token") return field::auth_token;
  if (key == "control") return field::control;
  if (key == "last-request-id") return field::last_request_id;
  if (key == "features") return field::features;
  if (key == "window") return field::window;
  if (key == "window-bytes") return field::window_bytes;
  if (key == "stream") return field::stream;
  if (key == "credit") return field::credit;
  if (key == "sequence") return field::sequence;
  if (key == "traceparent") return field::traceparent;
  return field::none;
}

const char* name_of(field f) noexcept {
  switch (f) {
    case field::byteorder: return "byteorder";
    case field::content_type: return "content-type";
    case field::content_encoding: return "content-encoding";
    case field::content_length: return "content-length";
    case field::keep_alive: return "keep-alive";
    case field::request_id: return "request-id";
    case field::auth_token: return "auth-token";
    case field::control: return "control";
    case field::last_request_id: return "last-request-id";
    case field::features: return "features";
    case field::window: return "window";
    case field::window_bytes: return "window-bytes";
    case field::stream: return "stream";
    case field::credit: return "credit";
    case field::sequence: return "sequence";
    case field::traceparent: return "traceparent";
    case field::none: break;
  }
  return "";
}

stream_part stream_part_of(std::string_view name) noexcept {
  for (auto p : {stream_part::open, stream_part::subscribe, stream_part::begin, stream_part::item,
                 stream_part::end})
    if (name == stream_part_name(p)) return p;
  return stream_part::unknown;
}

// Collects the known keys of the top-level object; values of other keys,
// and anything nested, are skipped.
struct header_handler {
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);

  frame_header* out = nullptr;
  std::string problem;  // a type error, worded for the peer's log line
  int depth = 0;
  bool root_is_object = false;
  std::string key;  // the current top-level key, assembled from parts
  field current = field::none;
  unsigned seen = 0;  // bit per field
  bool in_features = false;  // inside the "features" array
  std::string item;          // a "features" name, the "control" kind or the "stream" part, from parts

  bool top() const noexcept { return depth == 1; }
  void mark(field f) noexcept { seen |= 1u << static_cast<unsigned>(f); }
  bool has(field f) const noexcept { return seen & (1u << static_cast<unsigned>(f)); }

  // A value of the wrong type for a known key.
  bool wrong(ec_t& ec) {
    switch (current) {
      case field::content_length:
      case field::request_id:
      case field::last_request_id:
      case field::window:
      case field::window_bytes:
      case field::credit:
      case field::sequence:
        problem = std::string("JSON header \"") + name_of(current) +
                  "\" is not a non-negative integer";
        break;
      case field::keep_alive:
        problem = "JSON header \"keep-alive\" is not a boolean";
        break;
      case field::features:
        problem = "JSON header \"features\" is not an array of strings";
        break;
      default:
        problem = std::string("JSON header \"") + name_of(current) + "\" is not a string";
    }
    ec = json::error::syntax;  // stops the parser; `problem` says why
    return false;
  }
  // Any non-container value at the top level.
  bool scalar(ec_t& ec) {
    if (in_features || (top() && current != field::none)) return wrong(ec);
    return true;
  }

  bool on_document_begin(ec_t&) { return true; }
  bool on_document_end(ec_t&) { return true; }
  bool on_array_begin(ec_t& ec) {
    if (depth == 0) {
      problem = "JSON header is not an object";
      ec = json::error::syntax;
      return false;
    }
    if (in_features) return wrong(ec);
    if (top() && current == field::features) {
      in_features = true;
      out->features = 0;
    } else if (top() && current != field::none) {
      return wrong(ec);
    }
    ++depth;
    return true;
  }
  bool on_array_end(std::size_t, ec_t&) {
    --depth;
    if (in_features && top()) {
      in_features = false;
      mark(field::features);
    }
    return true;
  }
  bool on_object_begin(ec_t& ec) {
    if (depth == 0) root_is_object = true;
    else if (in_features || (top() && current != field::none))
      return wrong(ec);
    ++depth;
    return true;
  }
  bool on_object_end(std::size_t, ec_t&) {
    --depth;
    return true;
  }
  // Values read into `item`, then looked up.
  bool named_value() const noexcept {
    return in_features || (top() && (current == field::control || current == field::stream));
  }
  bool on_string_part(string_view s, std::size_t n, ec_t& ec) {
    if (named_value()) {
      if (n == s.size()) item.clear();
      item.append(s.data(), s.size());
      return true;
    }
    if (!top() || current == field::none) return true;
    std::string* target = string_target();
    if (!target) return wrong(ec);
    if (n == s.size()) target->clear();  // the first part
    target->append(s.data(), s.size());
    return true;
  }
  bool on_string(string_view s, std::size_t n, ec_t& ec) {
    if (depth == 0) return not_object(ec);
    if (named_value()) {
      if (n == s.size()) item.clear();
      item.append(s.data(), s.size());
      if (in_features) {
        for (const auto& [bit, name] : feature::names)
          if (item == name) *out->features |= bit;
      } else if (current == field::control) {
        out->kind = item == "cancel"       ? frame_kind::cancel
                    : item == "going-away" ? frame_kind::going_away
                    : item == "credit"     ? frame_kind::credit
                                           : frame_kind::unknown_control;
        mark(current);
      } else {
        out->stream = stream_part_of(item);
        mark(current);
      }
      return true;
    }
    if (!top() || current == field::none) return true;
    std::string* target = string_target();
    if (!target) return wrong(ec);
    if (n != s.size())
      target->append(s.data(), s.size());  // the last of several parts
    else if (std::string_view(*target) != std::string_view(s.data(), s.size()))
      target->assign(s.data(), s.size());  // usually equal to the default already
    mark(current);
    return true;
  }
  bool on_key_part(string_view s, std::size_t n, ec_t&) {
    if (!top()) return true;
    if (n == s.size()) key.assign(s.data(), s.size());
    else
      key.append(s.data(), s.size());
    return true;
  }
  bool on_key(string_view s, std::size_t n, ec_t& ec) {
    if (!top()) return true;
    on_key_part(s, n, ec);  // the last part of the key
    current = field_of(key);
    return true;
  }
  bool on_number_part(string_view, ec_t&) { return true; }
  bool on_int64(std::int64_t i, string_view, ec_t& ec) {
    if (depth == 0) return not_object(ec);
    if (in_features) return wrong(ec);
    if (!top() || current == field::none) return true;
    if (i < 0) return wrong(ec);
    return unsigned_value(static_cast<std::uint64_t>(i), ec);
  }
  bool on_uint64(std::uint64_t u, string_view, ec_t& ec) {
    if (depth == 0) return not_object(ec);
    if (in_features) return wrong(ec);
    if (!top() || current == field::none) return true;
    return unsigned_value(u, ec);
  }
  bool on_double(double, string_view, ec_t& ec) { return depth == 0 ? not_object(ec) : scalar(ec); }
  bool on_bool(bool b, ec_t& ec) {
    if (depth == 0) return not_object(ec);
    if (in_features) return wrong(ec);
    if (!top() || current == field::none) return true;
    if (current != field::keep_alive) return wrong(ec);
    out->keep_alive = b;
    mark(current);
    return true;
  }
  bool on_null(ec_t& ec) { return depth == 0 ? not_object(ec) : scalar(ec); }
  bool on_comment_part(string_view, ec_t&) { return true; }
  bool on_comment(string_view, ec_t&) { return true; }

 private:
  bool not_object(ec_t& ec) {
    problem = "JSON header is not an object";
    ec = json::error::syntax;
    return false;
  }
  std::string* string_target() noexcept {
    switch (current) {
      case field::byteorder: return &out->byteorder;
      case field::content_type: return &out->content_type;
      case field::content_encoding: return &out->content_encoding;
      case field::auth_token: return &out->auth_token;
      case field::traceparent: return &out->traceparent;
      default: return nullptr;
    }
  }
  bool unsigned_value(std::uint64_t n, ec_t& ec) {
    if (current == field::content_length) out->content_length = static_cast<std::size_t>(n);
    else if (current == field::request_id)
      out->request_id = n;
    else if (current == field::last_request_id)
      out->last_request_id = n;
    else if (current == field::window)
      out->window = n;
    else if (current == field::window_bytes)
      out->window_bytes = n;
    else if (current == field::credit)
      out->credit = n;
    else if (current == field::sequence)
      out->sequence = n;
    else
      return wrong(ec);
    mark(current);
    return true;
  }
};

json::parse_options header_options() {
  json::parse_options o;
  o.max_depth = 64;
  return o;
}

// The header exactly as COMET and comet-net write it, read without a JSON
// parser: ", "-separated, in the canonical key order, only the keys we
// write. Anything else (other spacing, order, keys, escapes) returns false
// and goes to the full parser, which accepts every valid spelling: so do
// the rarer keys (features, auth-token, traceparent), which keeps this path
// short for the requests that have none.
bool parse_canonical(std::string_view text, frame_header& h) {
  constexpr std::string_view prefix =
      R"({"byteorder": "little", "content-type": "text/json", "content-encoding": "utf-8", "content-length": )";
  if (!text.starts_with(prefix)) return false;
  text.remove_prefix(prefix.size());
  const auto read_unsigned = [&text](auto& out) {
    if (text.empty() || text.front() < '0' || text.front() > '9' ||
        (text.front() == '0' && text.size() > 1 && text[1] >= '0' && text[1] <= '9'))
      return false;  // JSON has no leading zeros
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec != std::errc()) return false;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()));
    return true;
  };
  if (!read_unsigned(h.content_length)) return false;
  constexpr std::string_view keep_alive = R"(, "keep-alive": true)";
  if (text.starts_with(keep_alive)) {
    h.keep_alive = true;
    text.remove_prefix(keep_alive.size());
  }
  constexpr std::string_view request_id = R"(, "request-id": )";
  if (text.starts_with(request_id)) {
    text.remove_prefix(request_id.size());
    std::uint64_t id = 0;
    if (!read_unsigned(id)) return false;
    h.request_id = id;
  }
  // A stream's frames: "stream" (a word), then "credit" and "sequence".
  constexpr std::string_view stream = R"(, "stream": ")";
  if (text.starts_with(stream)) {
    text.remove_prefix(stream.size());
    const auto end = text.find('"');
    if (end == std::string_view::npos || text.substr(0, end).find('\\') != std::string_view::npos)
      return false;
    h.stream = stream_part_of(text.substr(0, end));
    text.remove_prefix(end + 1);
  }
  constexpr std::string_view credit = R"(, "credit": )";
  if (text.starts_with(credit)) {
    text.remove_prefix(credit.size());
    std::uint64_t n = 0;
    if (!read_unsigned(n)) return false;
    h.credit = n;
  }
  constexpr std::string_view sequence = R"(, "sequence": )";
  if (text.starts_with(sequence)) {
    text.remove_prefix(sequence.size());
    std::uint64_t n = 0;
    if (!read_unsigned(n)) return false;
    h.sequence = n;
  }
  return text == "}";
}

}  // namespace

bool detail::parse_canonical_frame_header(std::string_view text, frame_header& h) {
  h.content_length = 0;
  h.keep_alive = false;
  h.request_id.reset();
  h.stream = stream_part::none;
  h.credit.reset();
  h.sequence.reset();
  return parse_canonical(text, h);
}

std::optional<frame_header> parse_frame_header(std::string_view text, std::string& error) {
  static const json::parse_options options = header_options();
  frame_header h;
  if (parse_canonical(text, h)) return h;
  h = frame_header{};
  json::basic_parser<header_handler> parser(options);
  parser.handler().out = &h;
  ec_t ec;
  const std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
  if (!ec && used != text.size()) ec = json::error::extra_data;
  auto& handler = parser.handler();
  if (ec) {
    error = !handler.problem.empty() ? handler.problem
                                     : "JSON header is not valid JSON (" + ec.message() + ")";
    return std::nullopt;
  }
  if (!handler.root_is_object) {
    error = "JSON header is not an object";
    return std::nullopt;
  }
  for (field f : {field::byteorder, field::content_type, field::content_encoding,
                  field::content_length})
    if (!handler.has(f)) {
      error = std::string("JSON header has no \"") + name_of(f) + "\"";
      return std::nullopt;
    }
  return h;
}

}  // namespace comet
