// Internal: a config file as a format-independent tree. Each format's reader
// (config_toml.cpp, config_yaml.cpp, config_json.cpp) turns its parser's
// output into a config_node tree; config_reader.cpp alone validates that tree
// into comet::config, so the three formats share one set of checks and one
// wording of every error.
#pragma once

#include <comet/config.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace comet::detail {

struct config_node {
  enum class kind { table, array, string, integer, floating, boolean, null, date_time };

  kind type = kind::null;
  // 1-based line of the value (for a table, where it starts); 0 when the
  // format reports no positions (JSON).
  std::size_t line = 0;
  // The key this node sits under in its parent table, and that key's line
  // (empty and 0 for an array's elements).
  std::string key;
  std::size_t key_line = 0;
  // A string's value, or any other scalar as the file spells it ("70000",
  // "2.0", "nan", "1979-05-27"), for messages.
  std::string text;
  std::int64_t integer = 0;  // for kind::integer
  double number = 0;         // for kind::floating
  bool boolean = false;      // for kind::boolean
  // A table's entries or an array's elements, in file order.
  std::vector<config_node> entries;

  const config_node* find(std::string_view name) const {
    for (const config_node& entry : entries)
      if (entry.key == name) return &entry;
    return nullptr;
  }
  bool is_table() const noexcept { return type == kind::table; }
};

// "lab-a:65432" as an endpoint (parse_endpoint), or nullopt with `problem`
// set to what is wrong ("has no port", "port 0 ..."), for config messages.
std::optional<endpoint> parse_endpoint(std::string_view text, std::string& problem);

// A float as a node's text: the shortest spelling that reads back (0.0004,
// not 0.00040000000000000002), with ".0" kept for whole numbers so a message
// still shows it is a float; nan, inf and -inf as TOML spells them.
std::string spell_float(double number);

// Validates a parsed document into a config. Throws config_error of the form
//   <source>:<line>: <dotted.key.path>: <what is wrong>; <how to fix>
// with examples spelt in `format`.
config read_config_document(const config_node& root, std::string_view source,
                            config_format format);

// A parser's syntax error, worded the same for every format:
//   <source>:<line>:<column>: <FORMAT> syntax error: <what>; fix the <FORMAT> at that line and column
[[noreturn]] void throw_syntax_error(std::string_view source, std::size_t line, std::size_t column,
                                     std::string_view format_name, std::string_view what);

// Formats with their own parse functions (config_toml.cpp...).
config parse_toml_config(std::string_view text, std::string_view source);
config parse_yaml_config(std::string_view text, std::string_view source);
config parse_json_config(std::string_view text, std::string_view source);

}  // namespace comet::detail
