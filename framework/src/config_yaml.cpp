// Reads the YAML form of comet::config, as COMET's own settings files write
// it: yaml-cpp parses, and the tree becomes a config_document for the shared
// checks. The only file that knows yaml-cpp.
//
// yaml-cpp leaves plain scalars untyped, so they are resolved here the way
// COMET's PyYAML does for what a config holds: integers, floats, booleans
// (yes/no/on/off included, as YAML 1.1 has them) and null; anything else,
// and every quoted scalar, is a string.
#include "config_document.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

namespace comet::detail {
namespace {

using kind = config_node::kind;

constexpr std::string_view string_tag = "tag:yaml.org,2002:str";

bool one_of(std::string_view text, std::initializer_list<std::string_view> words) {
  return std::find(words.begin(), words.end(), text) != words.end();
}

bool all_digits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

// [-+]digits, 0x..., 0o...; too large to hold saturates, so the range check
// still reports it by its spelling.
bool resolve_integer(std::string_view text, config_node& node) {
  std::string_view digits = text;
  const bool negative = !digits.empty() && digits.front() == '-';
  if (!digits.empty() && (digits.front() == '-' || digits.front() == '+')) digits.remove_prefix(1);
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'o')) {
    base = digits[1] == 'x' ? 16 : 8;
    digits.remove_prefix(2);
  } else if (!all_digits(digits)) {
    return false;
  }
  std::uint64_t magnitude = 0;
  const auto [end, error] =
      std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (end != digits.data() + digits.size() && error != std::errc::result_out_of_range) return false;
  constexpr auto largest = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  magnitude = error == std::errc::result_out_of_range ? largest : std::min(magnitude, largest);
  node.type = kind::integer;
  node.integer = negative ? -static_cast<std::int64_t>(magnitude)
                          : static_cast<std::int64_t>(magnitude);
  return true;
}

// 1.5, -2., .5, 1e3, .inf, -.Inf, .nan
bool resolve_float(std::string_view text, config_node& node) {
  std::string_view body = text;
  const bool negative = !body.empty() && body.front() == '-';
  if (!body.empty() && (body.front() == '-' || body.front() == '+')) body.remove_prefix(1);
  if (one_of(body, {".inf", ".Inf", ".INF"})) {
    node.number = negative ? -HUGE_VAL : HUGE_VAL;
  } else if (one_of(text, {".nan", ".NaN", ".NAN"})) {
    node.number = std::nan("");
  } else {
    const bool has_digit = body.find_first_of("0123456789") != std::string_view::npos;
    if (!has_digit || body.find_first_not_of("0123456789.eE+-") != std::string_view::npos ||
        std::count(body.begin(), body.end(), '.') > 1)
      return false;
    const auto [end, error] = std::from_chars(text.data() + (text.front() == '+' ? 1 : 0),
                                              text.data() + text.size(), node.number);
    if (end != text.data() + text.size() || error != std::errc()) return false;
  }
  node.type = kind::floating;
  return true;
}

bool looks_like_date(std::string_view text) {
  return text.size() >= 10 && all_digits(text.substr(0, 4)) && text[4] == '-' &&
         all_digits(text.substr(5, 2)) && text[7] == '-' && all_digits(text.substr(8, 2));
}

void resolve_scalar(const YAML::Node& value, config_node& node) {
  node.text = value.Scalar();
  const std::string& text = node.text;
  if (value.Tag() == "!" || value.Tag() == string_tag) {
    node.type = kind::string;
  } else if (one_of(text, {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})) {
    node.type = kind::boolean;
    node.boolean = true;
  } else if (one_of(text, {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"})) {
    node.type = kind::boolean;
  } else if (one_of(text, {"null", "Null", "NULL", "~"})) {
    node.type = kind::null;
  } else if (resolve_integer(text, node) || resolve_float(text, node)) {
    // typed by the resolver
  } else if (looks_like_date(text)) {
    node.type = kind::date_time;
  } else {
    node.type = kind::string;
  }
}

std::size_t line_of(const YAML::Mark& mark) {
  return mark.line >= 0 ? static_cast<std::size_t>(mark.line) + 1 : 0;
}

config_node to_document(const YAML::Node& value, std::size_t line) {
  config_node node;
  node.line = line;
  switch (value.Type()) {
    case YAML::NodeType::Map:
      node.type = kind::table;
      for (auto it = value.begin(); it != value.end(); ++it) {
        // A table reports where its key is, the line a reader looks at.
        const std::size_t key_line = line_of(it->first.Mark());
        config_node entry = to_document(it->second, key_line);
        entry.key = it->first.IsScalar() ? it->first.Scalar() : "<complex key>";
        entry.key_line = key_line;
        node.entries.push_back(std::move(entry));
      }
      break;
    case YAML::NodeType::Sequence:
      node.type = kind::array;
      for (const YAML::Node& element : value)
        node.entries.push_back(to_document(element, line_of(element.Mark())));
      break;
    case YAML::NodeType::Scalar: resolve_scalar(value, node); break;
    default: node.type = kind::null; break;
  }
  return node;
}

}  // namespace

config parse_yaml_config(std::string_view text, std::string_view source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::ParserException& e) {
    throw_syntax_error(source, line_of(e.mark), static_cast<std::size_t>(e.mark.column) + 1,
                       "YAML", e.msg);
  }
  config_node document = to_document(root, 1);
  // An empty file is an empty mapping: "no Socket_connection block" says more.
  if (document.type == kind::null) document.type = kind::table;
  return read_config_document(document, source, config_format::yaml);
}

}  // namespace comet::detail
