// Reading JSON text as Python's json module does. Boost.JSON's SAX parser
// finds the structure; the values are built on a value_stack, and doubles
// come from std::from_chars over the number's own text, which is correctly
// rounded: Boost.JSON 1.81's conversion can be one unit in the last place
// off for 16- and 17-digit numbers, which would change measurements that
// pass through a comet-net host.
#include <comet/codec.hpp>

#include "json_text.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value_stack.hpp>

#include <charconv>
#include <limits>

namespace comet {
namespace {

namespace json = boost::json;
using boost::system::error_code;

// Deep enough for real payloads, shallow enough that parsing never
// threatens the stack.
constexpr std::size_t max_json_depth = 64;

// A number too large or too small for a double, as Python reads it: zero
// digits or a negative exponent make a (signed) zero, anything else an
// infinity. (Boost.JSON 1.81 reads some of these, 0e4047, as NaN.)
double beyond_range(std::string_view text) {
  const bool negative = text.starts_with('-');
  const std::size_t e = text.find_first_of("eE");
  const std::string_view digits = text.substr(0, e);
  const bool zero = digits.find_first_of("123456789") == std::string_view::npos;
  const bool tiny = e != std::string_view::npos && e + 1 < text.size() && text[e + 1] == '-';
  const double magnitude = zero || tiny ? 0.0 : std::numeric_limits<double>::infinity();
  return negative ? -magnitude : magnitude;
}

struct value_builder {
  static constexpr std::size_t max_object_size = json::object::max_size();
  static constexpr std::size_t max_array_size = json::array::max_size();
  static constexpr std::size_t max_key_size = json::string::max_size();
  static constexpr std::size_t max_string_size = json::string::max_size();

  json::value_stack stack;
  std::string number;  // a number's text so far, when it arrives in parts
  std::size_t depth = 0;
  std::size_t max_depth = 0;

  bool open(error_code& ec) {
    if (++depth <= max_depth) return true;
    ec = json::error::too_deep;
    return false;
  }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_object_begin(error_code& ec) { return open(ec); }
  bool on_object_end(std::size_t n, error_code&) {
    --depth;
    stack.push_object(n);
    return true;
  }
  bool on_array_begin(error_code& ec) { return open(ec); }
  bool on_array_end(std::size_t n, error_code&) {
    --depth;
    stack.push_array(n);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, error_code&) {
    stack.push_chars(s);
    return true;
  }
  bool on_key(json::string_view s, std::size_t, error_code&) {
    stack.push_key(s);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, error_code&) {
    stack.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, error_code&) {
    stack.push_string(s);
    return true;
  }
  bool on_number_part(json::string_view s, error_code&) {
    number.append(s.data(), s.size());
    return true;
  }
  bool on_int64(std::int64_t i, json::string_view, error_code&) {
    number.clear();
    stack.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, error_code&) {
    number.clear();
    stack.push_uint64(u);
    return true;
  }
  bool on_double(double d, json::string_view s, error_code&) {
    std::string_view text(s.data(), s.size());
    if (!number.empty()) {
      number.append(text);
      text = number;
    }
    double exact = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), exact);
    if (ec == std::errc() && end == text.data() + text.size())
      d = exact;
    else if (ec == std::errc::result_out_of_range)
      d = beyond_range(text);
    number.clear();
    stack.push_double(d);
    return true;
  }
  bool on_bool(bool b, error_code&) {
    stack.push_bool(b);
    return true;
  }
  bool on_null(error_code&) {
    stack.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, error_code&) { return true; }
  bool on_comment(json::string_view, error_code&) { return true; }
};

json::parse_options bounded() {
  json::parse_options options;
  options.max_depth = max_json_depth;
  return options;
}

}  // namespace

std::optional<json::value> parse_json(std::string_view text, std::string& error) {
  return detail::parse_json(text, error, max_json_depth);
}

std::optional<json::value> detail::parse_json(std::string_view text, std::string& error,
                                              std::size_t max_depth, json::storage_ptr storage) {
  // One parser per thread, so its working buffers are allocated once, not
  // per message; the values it returns are built on `storage` (by default
  // the default allocator) and may be kept as long as it lives.
  thread_local json::basic_parser<value_builder> parser(bounded());
  parser.reset();
  value_builder& builder = parser.handler();
  builder.stack.reset(std::move(storage));
  builder.number.clear();
  builder.depth = 0;
  builder.max_depth = std::min(max_depth, max_json_depth);
  error_code ec;
  const std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
  if (!ec && used < text.size()) ec = json::error::extra_data;
  if (ec) {
    error = ec.message();
    parser.reset();
    parser.handler().stack.reset();
    return std::nullopt;
  }
  return parser.handler().stack.release();
}

}  // namespace comet
