// Reads the TOML form of comet::config (config.hpp). The only file that knows
// toml++; the rest of the library sees the plain structs.
//
// Configs are written by hand, so every problem becomes one config_error of
// the form  <source>:<line>: <dotted.key.path>: <what is wrong>; <how to fix>
// and the checks run in the order a reader would fix things: unknown keys
// first (a misspelt "port" explains a missing "Port" better than "missing").
#include <comet/config.hpp>

#include <comet/errors.hpp>

#include <toml++/toml.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace comet {
namespace {

using key_list = std::span<const std::string_view>;

constexpr std::string_view socket_block = "Socket_connection";
constexpr std::string_view host_path = "Socket_connection.Host";
constexpr std::string_view client_path = "Socket_connection.Client";
constexpr std::string_view settings_block = "comet";

constexpr std::array<std::string_view, 2> socket_keys{"Host", "Client"};
constexpr std::array<std::string_view, 2> endpoint_keys{"IP", "Port"};
constexpr std::array<std::string_view, 5> settings_keys{
    "io_threads", "connect_timeout", "request_timeout", "shutdown_timeout",
    "max_content_length"};

constexpr std::int64_t max_port = 65535;
constexpr std::int64_t max_io_threads = 256;
constexpr std::int64_t max_content_limit = std::int64_t{1} << 32;
constexpr std::int64_t max_duration_seconds = 86400;  // a day: anything longer is a typo

// Levenshtein distance ignoring ASCII case, for "did you mean" hints.
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

std::optional<std::string_view> closest(std::string_view key, key_list candidates) {
  std::optional<std::string_view> best;
  std::size_t best_distance = 3;  // more than two edits is a different word
  for (const std::string_view candidate : candidates) {
    const std::size_t distance = edit_distance(key, candidate);
    if (distance < best_distance && distance < candidate.size()) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

// "IP and Port", "a, b, c and d".
std::string list_keys(key_list keys) {
  std::string text;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) text += i + 1 == keys.size() ? " and " : ", ";
    text += keys[i];
  }
  return text;
}

// TOML basic-string spelling, so control characters stay visible in a message.
// (Not named `quoted`: ADL would pick std::quoted for a std::string argument.)
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

// Appends a key to a dotted path, quoted as TOML would when it is not a bare
// key, so the path can be pasted back into a file.
std::string join(std::string_view parent, std::string_view key) {
  const bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
  return std::string(parent) + '.' + (bare ? std::string(key) : quote_for_message(key));
}

// A scalar as written in TOML: 70000, 1.5, nan, 1979-05-27, "abc".
std::string written(const toml::node& node) {
  if (const auto* text = node.as_string()) return quote_for_message(text->get());
  std::ostringstream out;
  node.visit([&out](const auto& value) { out << value; });
  return out.str();
}

// What was found instead of the expected type: `"abc" is a string`.
std::string describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "the value is a table";
    case toml::node_type::array: return "the value is an array";
    case toml::node_type::string: return written(node) + " is a string";
    case toml::node_type::integer: return written(node) + " is an integer";
    case toml::node_type::floating_point: return written(node) + " is a float";
    case toml::node_type::boolean: return written(node) + " is a boolean";
    default: return written(node) + " is a date or time";
  }
}

bool is_ip_literal(const std::string& ip) {
  if (ip.find('\0') != std::string::npos) return false;  // inet_pton would stop there
  in6_addr address{};
  return inet_pton(AF_INET, ip.c_str(), &address) == 1 ||
         inet_pton(AF_INET6, ip.c_str(), &address) == 1;
}

toml::source_index line_of(const toml::node& node) { return node.source().begin.line; }

class config_reader {
 public:
  explicit config_reader(std::string_view source) : source_(source) {}

  config read(const toml::table& root) const {
    const toml::node* socket_node = root.get(socket_block);
    if (socket_node == nullptr) fail_missing_block(root);
    const toml::table& socket = as_table(*socket_node, socket_block,
                                         "put IP and Port under [Socket_connection.Host]");
    check_keys(socket, socket_block, socket_keys);

    config result;
    result.source = source_;
    const toml::node* host = socket.get("Host");
    if (host == nullptr) {
      fail(socket, host_path,
           "missing; add a [Socket_connection.Host] table with IP and Port, e.g. "
           "IP = \"127.0.0.1\" and Port = 65432");
    }
    const toml::table& host_table = as_table(*host, host_path,
                                             "[Socket_connection.Host] with IP and Port");
    result.host = read_endpoint(host_table, host_path, true);
    if (const toml::node* clients = socket.get("Client")) read_clients(*clients, result);
    if (const toml::node* framework = root.get(settings_block)) {
      result.framework = read_settings(
          as_table(*framework, settings_block, "[comet] with keys such as io_threads = 2"));
    }
    return result;
  }

 private:
  [[noreturn]] void fail(toml::source_index line, std::string_view path,
                         const std::string& problem) const {
    throw config_error(source_ + ':' + std::to_string(line) + ": " + std::string(path) + ": " +
                       problem);
  }

  [[noreturn]] void fail(const toml::node& where, std::string_view path,
                         const std::string& problem) const {
    fail(line_of(where), path, problem);
  }

  [[noreturn]] void fail_missing_block(const toml::table& root) const {
    std::string problem =
        "no [Socket_connection] block: add [Socket_connection.Host] with IP and Port, and a "
        "[Socket_connection.Client.<Name>] table for each peer to send to";
    for (auto&& [key, value] : root) {
      if (closest(key.str(), std::array{socket_block})) {
        problem += " (found " + quote_for_message(key.str()) + " at line " +
                   std::to_string(line_of(value)) + "; did you mean Socket_connection?)";
        break;
      }
    }
    throw config_error(source_ + ": " + problem);
  }

  const toml::table& as_table(const toml::node& node, std::string_view path,
                              std::string_view shape) const {
    if (const toml::table* table = node.as_table()) return *table;
    fail(node, path, describe(node) + "; make it a table: " + std::string(shape));
  }

  void check_keys(const toml::table& table, std::string_view path, key_list allowed) const {
    for (auto&& [key, value] : table) {
      if (std::ranges::find(allowed, key.str()) != allowed.end()) continue;
      std::string problem =
          "unknown key; " + std::string(path) + " takes only " + list_keys(allowed);
      if (const auto hint = closest(key.str(), allowed)) {
        problem += " (did you mean " + std::string(*hint) + "?)";
      }
      const toml::source_index line = key.source().begin.line;
      fail(line != 0 ? line : line_of(value), join(path, key.str()), problem);
    }
  }

  void read_clients(const toml::node& node, config& result) const {
    const toml::table& clients = as_table(
        node, client_path, "[Socket_connection.Client.<Name>] with IP and Port per client");
    for (auto&& [key, value] : clients) {
      const std::string name(key.str());
      const std::string path = join(client_path, name);
      if (!value.is_table() && (name == "IP" || name == "Port")) {
        fail(value, client_path,
             "give each client a name, e.g. [Socket_connection.Client.Telegram] with IP and Port, "
             "not IP/Port directly under Client");
      }
      if (name.empty()) {
        fail(value, path,
             "a client needs a non-empty name, e.g. [Socket_connection.Client.Telegram]");
      }
      const toml::table& client = as_table(value, path, "[" + path + "] with IP and Port");
      result.clients.emplace(name, read_endpoint(client, path, false));
    }
  }

  endpoint read_endpoint(const toml::table& table, std::string_view path, bool is_host) const {
    check_keys(table, path, endpoint_keys);
    return {read_ip(table, path), read_port(table, path, is_host)};
  }

  std::string read_ip(const toml::table& table, std::string_view path) const {
    const std::string key_path = join(path, "IP");
    const toml::node* node = table.get("IP");
    if (node == nullptr) {
      fail(table, key_path,
           "missing; add IP = \"127.0.0.1\" (or the peer's address) to [" + std::string(path) +
               "]");
    }
    const auto* ip = node->as_string();
    if (ip == nullptr) {
      fail(*node, key_path,
           describe(*node) + "; write the address as a string, e.g. IP = \"127.0.0.1\"");
    }
    const std::string& text = ip->get();
    if (is_ip_literal(text)) return text;
    std::string fix = "write a numeric IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\"";
    if (text.size() > 1 && text.front() == '[' && text.back() == ']') {
      fix = "write IPv6 addresses without brackets, e.g. \"::1\"";
    } else if (!text.empty() && text.find_first_not_of("0123456789.") == std::string::npos) {
      fix = "an IPv4 address is four numbers from 0 to 255, e.g. \"127.0.0.1\"";
    } else if (!text.empty()) {
      fix += " (host names are not resolved)";
    }
    fail(*node, key_path, describe(*node) + " but not an IPv4 or IPv6 address; " + fix);
  }

  std::uint16_t read_port(const toml::table& table, std::string_view path, bool is_host) const {
    const std::string key_path = join(path, "Port");
    const std::int64_t lowest = is_host ? 0 : 1;
    const std::string range =
        "between " + std::to_string(lowest) + " and " + std::to_string(max_port);
    const toml::node* node = table.get("Port");
    if (node == nullptr) {
      fail(table, key_path,
           "missing; add Port = 65432 (a port " + range + ") to [" + std::string(path) + "]");
    }
    const auto* port = node->as_integer();
    if (port == nullptr) {
      fail(*node, key_path, describe(*node) + "; use an integer " + range + ", e.g. Port = 65432");
    }
    const std::int64_t value = port->get();
    if (value == 0 && !is_host) {
      fail(*node, key_path,
           "0 is not a usable client port (port 0 only lets a Host pick a free port); use the "
           "port the peer listens on, " + range);
    }
    if (value < lowest || value > max_port) {
      fail(*node, key_path, written(*node) + " is out of range; use a port " + range);
    }
    return static_cast<std::uint16_t>(value);
  }

  settings read_settings(const toml::table& table) const {
    check_keys(table, settings_block, settings_keys);
    settings result;
    const auto whole = [](std::string_view unit, std::int64_t highest) {
      return "a whole number of " + std::string(unit) + " from 1 to " + std::to_string(highest);
    };
    if (const auto threads = read_number(table, "io_threads", true, 1, max_io_threads,
                                         whole("threads", max_io_threads), "2")) {
      result.io_threads = static_cast<std::size_t>(*threads);
    }
    if (const auto limit = read_number(table, "max_content_length", true, 1, max_content_limit,
                                       whole("bytes", max_content_limit), "16777216")) {
      result.max_content_length = static_cast<std::size_t>(*limit);
    }
    // Milliseconds are the resolution, so 0.001 s is the shortest duration.
    const std::string seconds =
        "a number of seconds from 0.001 to " + std::to_string(max_duration_seconds);
    const auto read_seconds = [&](std::string_view key, std::string_view example,
                                  std::chrono::milliseconds& out) {
      if (const auto value =
              read_number(table, key, false, 0.001, max_duration_seconds, seconds, example)) {
        out = std::chrono::milliseconds(std::llround(*value * 1000));
      }
    };
    read_seconds("connect_timeout", "5.0", result.connect_timeout);
    read_seconds("request_timeout", "30.0", result.request_timeout);
    read_seconds("shutdown_timeout", "5.0", result.shutdown_timeout);
    return result;
  }

  // A number from `lowest` to `highest` (an integer when `whole`), or nothing
  // when the key is absent. `range` describes the accepted values to the reader.
  std::optional<double> read_number(const toml::table& table, std::string_view key, bool whole,
                                    double lowest, double highest, const std::string& range,
                                    std::string_view example) const {
    const toml::node* node = table.get(key);
    if (node == nullptr) return std::nullopt;
    const std::string path = join(settings_block, key);
    double number = 0;
    if (const auto* integer = node->as_integer()) {
      number = static_cast<double>(integer->get());
    } else if (const auto* fraction = node->as_floating_point(); fraction != nullptr && !whole) {
      number = fraction->get();
    } else {
      fail(*node, path, describe(*node) + "; use " + range + ", e.g. " + std::string(key) +
                            " = " + std::string(example));
    }
    // Written so NaN, which compares false to everything, fails too.
    if (!(number >= lowest && number <= highest)) {
      fail(*node, path, written(*node) + " is out of range; use " + range);
    }
    return number;
  }

  std::string source_;
};

}  // namespace

config parse_config(std::string_view toml_text, std::string_view source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const toml::source_position& at = e.source().begin;
    throw config_error(std::string(source_name) + ':' + std::to_string(at.line) + ':' +
                       std::to_string(at.column) + ": TOML syntax error: " +
                       std::string(e.description()) + "; fix the TOML at that line and column");
  }
  return config_reader(source_name).read(root);
}

config load_config(const std::filesystem::path& file) {
  const std::string name = file.string();
  std::error_code ec;
  const auto type = std::filesystem::status(file, ec).type();
  if (type == std::filesystem::file_type::not_found) {
    const auto absolute = std::filesystem::absolute(file, ec);
    throw config_error(name + ": config file not found (looked for " +
                       (ec ? name : absolute.string()) + "); check the path");
  }
  if (type == std::filesystem::file_type::directory) {
    throw config_error(name + ": is a directory, not a config file; give the path of a .toml file");
  }
  errno = 0;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    const int reason = errno;  // libstdc++ opens with fopen, which sets it
    const std::string why = reason != 0 ? ": " + std::generic_category().message(reason) : "";
    throw config_error(name + ": cannot open the config file" + why +
                       "; check that it is readable");
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    throw config_error(name + ": cannot read the config file; check that it is readable");
  }
  return parse_config(text.str(), name);
}

}  // namespace comet
