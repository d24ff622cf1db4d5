// Reads the JSON form of comet::config with Boost.JSON: the same keys as the
// TOML and YAML forms, checked by the same reader. Boost.JSON keeps no source
// positions, so errors name the key path without a line (syntax errors do
// have line and column: the parser reports how far it got).
#include "config_document.hpp"

#include <boost/json/parser.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

namespace comet::detail {
namespace {

namespace json = boost::json;
using kind = config_node::kind;

config_node to_document(const json::value& value) {
  config_node node;
  switch (value.kind()) {
    case json::kind::object:
      node.type = kind::table;
      for (const auto& [key, child] : value.get_object()) {
        config_node entry = to_document(child);
        entry.key = std::string(key);
        node.entries.push_back(std::move(entry));
      }
      break;
    case json::kind::array: node.type = kind::array; break;
    case json::kind::string:
      node.type = kind::string;
      node.text = std::string(value.get_string());
      break;
    case json::kind::int64:
      node.type = kind::integer;
      node.integer = value.get_int64();
      node.text = std::to_string(node.integer);
      break;
    case json::kind::uint64:
      // Only values past int64's range arrive here; they saturate and fail
      // every range check by their own spelling.
      node.type = kind::integer;
      node.integer = std::numeric_limits<std::int64_t>::max();
      node.text = std::to_string(value.get_uint64());
      break;
    case json::kind::double_:
      node.type = kind::floating;
      node.number = value.get_double();
      node.text = spell_float(node.number);
      break;
    case json::kind::bool_:
      node.type = kind::boolean;
      node.boolean = value.get_bool();
      node.text = node.boolean ? "true" : "false";
      break;
    case json::kind::null: node.type = kind::null; break;
  }
  return node;
}

}  // namespace

config parse_json_config(std::string_view text, std::string_view source) {
  json::parse_options options;
  options.allow_comments = true;  // configs are documented in place
  options.allow_trailing_commas = true;
  json::parser parser({}, options);
  boost::system::error_code error;
  // write() also rejects anything after the value; on error it returns how
  // far it got, which gives the line and column.
  const std::size_t consumed = parser.write(text.data(), text.size(), error);
  if (error) {
    const std::string_view before = text.substr(0, std::min(consumed, text.size()));
    const std::size_t line = 1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
    const std::size_t line_start = before.rfind('\n');
    const std::size_t column =
        1 + before.size() - (line_start == std::string_view::npos ? 0 : line_start + 1);
    throw_syntax_error(source, line, column, "JSON", error.message());
  }
  return read_config_document(to_document(parser.release()), source, config_format::json);
}

}  // namespace comet::detail
