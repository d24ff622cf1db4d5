#include "config_wording.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <numeric>
#include <vector>

namespace comet::detail {
namespace {

// Levenshtein distance ignoring ASCII case.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; };
  std::vector<std::size_t> row(b.size() + 1);
  std::iota(row.begin(), row.end(), std::size_t{0});
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      const bool same = lower(a[i - 1]) == lower(b[j - 1]);
      row[j] = std::min({above + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

bool is_bare_key(std::string_view key) {
  return !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

}  // namespace

std::optional<std::string_view> closest_key(std::string_view key, key_list candidates,
                                            std::size_t max_edits) {
  std::optional<std::string_view> best;
  std::size_t best_distance = max_edits + 1;  // farther is a different word
  for (const std::string_view candidate : candidates) {
    const std::size_t distance = edit_distance(key, candidate);
    if (distance < best_distance && distance < candidate.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string list_keys(key_list keys) {
  std::string text;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) text += i + 1 == keys.size() ? " and " : ", ";
    text += keys[i];
  }
  return text;
}

std::string quote_for_message(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      std::array<char, 8> escape{};
      std::snprintf(escape.data(), escape.size(), "\\u%04X", static_cast<unsigned>(byte));
      out += escape.data();
      continue;
    }
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + '"';
}

std::string join_key_path(std::string_view parent, std::string_view key) {
  std::string path(parent);
  if (!path.empty()) path += '.';
  return path + (is_bare_key(key) ? std::string(key) : quote_for_message(key));
}

std::string config_wording::section(std::string_view path) const {
  if (format_ == config_format::toml) return "[" + std::string(path) + "]";
  return std::string(path);
}

std::string config_wording::assign(std::string_view key, std::string_view literal) const {
  switch (format_) {
    case config_format::toml: return std::string(key) + " = " + std::string(literal);
    case config_format::yaml: return std::string(key) + ": " + std::string(literal);
    case config_format::json: return quote_for_message(key) + ": " + std::string(literal);
  }
  return {};
}

std::string_view config_wording::table_word() const noexcept {
  switch (format_) {
    case config_format::toml: return "table";
    case config_format::yaml: return "mapping";
    case config_format::json: return "object";
  }
  return "table";
}

std::string config_wording::a_table() const {
  return (format_ == config_format::json ? "an " : "a ") + std::string(table_word());
}

std::string_view config_wording::array_word() const noexcept {
  return format_ == config_format::yaml ? "a sequence" : "an array";
}

std::string config_wording::named_client_example(std::string_view client_path) const {
  switch (format_) {
    case config_format::toml:
      return section(std::string(client_path) + ".Telegram") + " with IP and Port";
    case config_format::yaml: return "Client: {Telegram: {IP: 127.0.0.4, Port: 65432}}";
    case config_format::json:
      return R"("Client": {"Telegram": {"IP": "127.0.0.4", "Port": 65432}})";
  }
  return {};
}

}  // namespace comet::detail
