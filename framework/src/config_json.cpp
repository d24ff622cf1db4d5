// Reads the JSON form of comet::config with Boost.JSON's SAX parser: the
// same keys as the TOML and YAML forms, checked by the same reader. The
// document is built from the parser's events (not a json::value, whose
// objects keep only the last of two equal keys), so a key given twice is
// refused as in YAML and TOML. Boost.JSON reports no source positions, so
// errors name the key path without a line (syntax errors do have line and
// column: the parser reports how far it got).
#include "config_document.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace comet::detail {
namespace {

namespace json = boost::json;
using kind = config_node::kind;
using boost::system::error_code;

// Builds the config document from the parser's events; an array's
// elements are its entries, without keys.
struct document_builder {
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  static constexpr std::size_t max_depth = 64;

  std::vector<config_node> open;  // the tables and arrays being read
  std::optional<config_node> root;
  std::string key, text;

  void add(config_node node) {
    if (open.empty()) {
      root = std::move(node);
    } else {
      if (open.back().type == kind::table) node.key = std::move(key);
      open.back().entries.push_back(std::move(node));
    }
    key.clear();
  }
  bool begin(kind k, error_code& ec) {
    if (open.size() >= max_depth) {
      ec = json::error::too_deep;
      return false;
    }
    config_node node;
    node.type = k;
    node.key = std::move(key);
    key.clear();
    open.push_back(std::move(node));
    return true;
  }
  bool end() {
    config_node node = std::move(open.back());
    open.pop_back();
    key = std::move(node.key);
    add(std::move(node));
    return true;
  }
  bool scalar(config_node node) {
    add(std::move(node));
    return true;
  }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_object_begin(error_code& ec) { return begin(kind::table, ec); }
  bool on_object_end(std::size_t, error_code&) { return end(); }
  bool on_array_begin(error_code& ec) { return begin(kind::array, ec); }
  bool on_array_end(std::size_t, error_code&) { return end(); }
  bool on_key_part(json::string_view s, std::size_t, error_code&) {
    key.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, error_code&) {
    key.append(s.data(), s.size());
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, error_code&) {
    text.append(s.data(), s.size());
    return true;
  }
  bool on_string(json::string_view s, std::size_t, error_code&) {
    text.append(s.data(), s.size());
    config_node node;
    node.type = kind::string;
    node.text = std::move(text);
    text.clear();
    return scalar(std::move(node));
  }
  bool on_number_part(json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, error_code&) {
    config_node node;
    node.type = kind::integer;
    node.integer = i;
    node.text = std::to_string(i);
    return scalar(std::move(node));
  }
  bool on_uint64(std::uint64_t u, json::string_view, error_code&) {
    // Only values past int64's range arrive here; they saturate and fail
    // every range check by their own spelling.
    config_node node;
    node.type = kind::integer;
    node.integer = std::numeric_limits<std::int64_t>::max();
    node.text = std::to_string(u);
    return scalar(std::move(node));
  }
  bool on_double(double d, json::string_view, error_code&) {
    config_node node;
    node.type = kind::floating;
    node.number = d;
    node.text = spell_float(d);
    return scalar(std::move(node));
  }
  bool on_bool(bool b, error_code&) {
    config_node node;
    node.type = kind::boolean;
    node.boolean = b;
    node.text = b ? "true" : "false";
    return scalar(std::move(node));
  }
  bool on_null(error_code&) { return scalar(config_node{}); }
  bool on_comment_part(json::string_view, error_code&) { return true; }
  bool on_comment(json::string_view, error_code&) { return true; }
};

}  // namespace

config parse_json_config(std::string_view text, std::string_view source) {
  json::parse_options options;
  options.allow_comments = true;  // configs are documented in place
  options.allow_trailing_commas = true;
  json::basic_parser<document_builder> parser(options);
  boost::system::error_code error;
  // A complete write also rejects anything after the value; on error it
  // returns how far it got, which gives the line and column.
  const std::size_t consumed = parser.write_some(false, text.data(), text.size(), error);
  if (!error && consumed < text.size()) error = json::error::extra_data;
  if (error) {
    const std::string_view before = text.substr(0, std::min(consumed, text.size()));
    const std::size_t line = 1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
    const std::size_t line_start = before.rfind('\n');
    const std::size_t column =
        1 + before.size() - (line_start == std::string_view::npos ? 0 : line_start + 1);
    throw_syntax_error(source, line, column, "JSON", error.message());
  }
  return read_config_document(std::move(*parser.handler().root), source, config_format::json);
}

}  // namespace comet::detail
