// Reads the TOML form of comet::config: toml++ parses, and the tree becomes a
// config_document for the shared checks. The only file that knows toml++.
#include "config_document.hpp"

#include <toml++/toml.h>

#include <sstream>
#include <string>

namespace comet::detail {
namespace {

using kind = config_node::kind;

std::size_t line_of(const toml::node& node) { return node.source().begin.line; }

config_node to_document(const toml::node& value) {
  config_node node;
  node.line = line_of(value);
  if (const toml::table* table = value.as_table()) {
    node.type = kind::table;
    for (auto&& [key, child] : *table) {
      config_node entry = to_document(child);
      entry.key = std::string(key.str());
      entry.key_line = key.source().begin.line;
      node.entries.push_back(std::move(entry));
    }
    return node;
  }
  switch (value.type()) {
    case toml::node_type::array:
      node.type = kind::array;
      for (const toml::node& element : *value.as_array()) node.entries.push_back(to_document(element));
      return node;
    case toml::node_type::string: node.type = kind::string; break;
    case toml::node_type::integer:
      node.type = kind::integer;
      node.integer = value.as_integer()->get();
      break;
    case toml::node_type::floating_point:
      node.type = kind::floating;
      node.number = value.as_floating_point()->get();
      break;
    case toml::node_type::boolean:
      node.type = kind::boolean;
      node.boolean = value.as_boolean()->get();
      break;
    default: node.type = kind::date_time; break;
  }
  if (const auto* text = value.as_string()) {
    node.text = text->get();
  } else if (node.type == kind::floating) {
    node.text = spell_float(node.number);  // toml++ prints 0.0004 as 0.00040000000000000002
  } else {
    // toml++ prints scalars in TOML spelling: 70000, 2.0, nan, 1979-05-27.
    std::ostringstream out;
    value.visit([&out](const auto& scalar) { out << scalar; });
    node.text = out.str();
  }
  return node;
}

}  // namespace

config parse_toml_config(std::string_view text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const toml::source_position& at = e.source().begin;
    throw_syntax_error(source, at.line, at.column, "TOML", e.description());
  }
  config_node document = to_document(root);
  document.line = 1;
  return read_config_document(document, source, config_format::toml);
}

}  // namespace comet::detail
