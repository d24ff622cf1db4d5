// Internal: the words config errors are made of. Hints for misspelt keys,
// key paths that can be pasted back into a file, and examples spelt in the
// file's own format (`[comet]` and `io_threads = 2` in TOML, `io_threads: 2`
// in YAML), so a message shows a fix the reader can copy.
#pragma once

#include <comet/config.hpp>

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace comet::detail {

using key_list = std::span<const std::string_view>;

// The candidate at most `max_edits` edits (ignoring ASCII case) from `key`,
// for "did you mean" hints.
std::optional<std::string_view> closest_key(std::string_view key, key_list candidates,
                                            std::size_t max_edits = 2);

// "IP and Port", "a, b, c and d".
std::string list_keys(key_list keys);

// A string in double quotes with control characters escaped (\u0000), so
// they stay visible; valid in TOML, YAML and JSON alike.
std::string quote_for_message(std::string_view text);

// parent.key, quoting `key` unless it is a bare key.
std::string join_key_path(std::string_view parent, std::string_view key);

// Examples and nouns in the syntax of one config format.
class config_wording {
 public:
  explicit config_wording(config_format format) : format_(format) {}

  config_format format() const noexcept { return format_; }

  // The table at a dotted path as a reader looks for it: "[a.b]" in TOML,
  // plain "a.b" in YAML and JSON.
  std::string section(std::string_view path) const;
  // One key set to a value given as a JSON literal: `Port = 65432`, `Port: 65432`.
  std::string assign(std::string_view key, std::string_view literal) const;
  // "table", "mapping", "object"; with its article: "a table", "an object".
  std::string_view table_word() const noexcept;
  std::string a_table() const;
  // "an array", "a sequence".
  std::string_view array_word() const noexcept;
  // A named client under Client, for a file that put IP/Port directly there.
  std::string named_client_example(std::string_view client_path) const;

 private:
  config_format format_;
};

}  // namespace comet::detail
