// Validates a config document (config_document.hpp), whatever format it came
// from, into comet::config.
//
// Configs are written by hand, so every problem becomes one config_error of
// the form  <source>:<line>: <dotted.key.path>: <what is wrong>; <how to fix>
// and the checks run in the order a reader would fix things: unknown keys
// first (a misspelt "port" explains a missing "Port" better than "missing").
#include "access.hpp"
#include "config_document.hpp"
#include "config_wording.hpp"

#include <comet/errors.hpp>


#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace comet::detail {
namespace {

using kind = config_node::kind;

constexpr std::string_view socket_key = "Socket_connection";
constexpr std::string_view settings_key = "comet";
// COMET's settings files may nest the block one level down.
constexpr std::string_view outer_key = "settings";

constexpr std::array<std::string_view, 2> socket_keys{"Host", "Client"};
constexpr std::array<std::string_view, 2> endpoint_keys{"IP", "Port"};
// A client is one peer (IP and Port) or a list of them (endpoints).
constexpr std::array<std::string_view, 3> client_keys{"IP", "Port", "endpoints"};
// In the order docs/configuration.md lists them; error messages list them so.
constexpr std::array<std::string_view, 27> settings_keys{
    "io_threads",         "connect_timeout",     "request_timeout",    "shutdown_timeout",
    "max_content_length", "max_in_flight",       "max_in_flight_bytes", "write_buffer_limit",
    "max_connections",    "max_streams",         "subscriber_queue",   "subscriber_queue_bytes",
    "idle_timeout",       "handler_timeout",     "max_connection_age", "reuse_port",
    "metrics_listen",     "keep_alive",         "max_connections_per_peer", "resolve_max_age", "auth_token",
    "allow",              "tls",                 "tls_certificate",    "tls_private_key",
    "tls_ca",             "tls_require_client_certificate"};
// What an endpoints entry looks like, for messages (a JSON literal, valid in every format).
constexpr std::string_view endpoints_example = R"(["lab-a:65432", "127.0.0.3:65432"])";

constexpr std::int64_t max_port = 65535;
constexpr std::int64_t max_io_threads = 256;
constexpr std::int64_t max_content_limit = std::int64_t{1} << 32;
constexpr std::int64_t max_in_flight_limit = 65536;
constexpr std::int64_t max_in_flight_bytes_limit = std::int64_t{1} << 40;
constexpr std::int64_t min_write_buffer = 4096;
constexpr std::int64_t max_write_buffer = std::int64_t{1} << 32;
constexpr std::int64_t max_connections_limit = 1000000;
constexpr std::int64_t max_streams_limit = 65536;
constexpr std::int64_t max_subscriber_queue = std::int64_t{1} << 24;
constexpr std::int64_t max_subscriber_queue_bytes = std::int64_t{1} << 40;
constexpr std::int64_t max_connections_per_peer_limit = 1024;
constexpr std::int64_t max_duration_seconds = 86400;  // a day: anything longer is a typo

// A scalar as the file spells it: 70000, 1.5, nan, "abc".
std::string written(const config_node& node) {
  return node.type == kind::string ? quote_for_message(node.text) : node.text;
}

class config_reader {
 public:
  config_reader(std::string_view source, config_format format)
      : source_(source), words_(format) {}

  config read(const config_node& root) {
    if (!root.is_table()) {
      fail(root, "",
           describe(root) + "; a config is " + words_.a_table() + " holding a " +
               std::string(socket_key) + " block");
    }
    const config_node* block_parent = &root;
    if (root.find(socket_key) == nullptr) {
      const config_node* outer = root.find(outer_key);
      if (outer != nullptr && outer->is_table() && outer->find(socket_key) != nullptr) {
        block_parent = outer;
        prefix_ = outer_key;
      }
    }
    const config_node* socket_node = block_parent->find(socket_key);
    if (socket_node == nullptr) fail_missing_block(root);
    // The keys read at this level are the config's: given twice, they are
    // refused as keys of their own tables are (others are the application's).
    for (const config_node& entry : block_parent->entries) {
      if (entry.key == socket_key || entry.key == settings_key)
        check_unique(*block_parent, entry, prefix_);
      else
        check_misspelt_block(entry);
    }
    socket_path_ = join_key_path(prefix_, socket_key);
    host_path_ = socket_path_ + ".Host";
    client_path_ = socket_path_ + ".Client";

    const config_node& socket =
        as_table(*socket_node, socket_path_, "put IP and Port under " + words_.section(host_path_));
    check_keys(socket, socket_path_, socket_keys);

    config result;
    result.source = source_;
    const config_node* host = socket.find("Host");
    if (host == nullptr) {
      fail(socket, host_path_,
           "missing; add a " + words_.section(host_path_) + " " +
               std::string(words_.table_word()) + " with IP and Port, e.g. " +
               words_.assign("IP", "\"127.0.0.1\"") + " and " + words_.assign("Port", "65432"));
    }
    const config_node& host_table =
        as_table(*host, host_path_, words_.section(host_path_) + " with IP and Port");
    result.host = read_endpoint(host_table, host_path_, true);
    if (const config_node* clients = socket.find("Client")) read_clients(*clients, result);
    if (const config_node* framework = block_parent->find(settings_key)) {
      const std::string path = join_key_path(prefix_, settings_key);
      result.framework = read_settings(
          as_table(*framework, path,
                   words_.section(path) + " with keys such as " + words_.assign("io_threads", "2")),
          path);
    }
    return result;
  }

 private:
  [[noreturn]] void fail(std::size_t line, std::string_view path,
                         const std::string& problem) const {
    std::string message = source_;
    if (line != 0) message += ':' + std::to_string(line);
    message += ": ";
    if (!path.empty()) message += std::string(path) + ": ";
    throw config_error(message + problem);
  }

  [[noreturn]] void fail(const config_node& where, std::string_view path,
                         const std::string& problem) const {
    fail(where.line, path, problem);
  }

  [[noreturn]] void fail_missing_block(const config_node& root) const {
    std::string problem = "no " + words_.section(socket_key) + " block: add " +
                          words_.section(join_key_path(socket_key, "Host")) +
                          " with IP and Port, and a " +
                          words_.section(join_key_path(socket_key, "Client") + ".<Name>") + " " +
                          std::string(words_.table_word()) +
                          " for each peer to send to (at the top level or under " +
                          std::string(outer_key) + ")";
    for (const config_node& entry : root.entries) {
      if (closest_key(entry.key, std::array{socket_key})) {
        problem += " (found " + quote_for_message(entry.key);
        if (entry.line != 0) problem += " at line " + std::to_string(entry.line);
        problem += "; did you mean " + std::string(socket_key) + "?)";
        break;
      }
    }
    fail(0, "", problem);
  }

  // Other tables beside the block are the application's and ignored, but
  // one a single edit from the block's own names ([comnet]) is a typo whose
  // settings would be lost without a word.
  void check_misspelt_block(const config_node& entry) const {
    static constexpr std::array<std::string_view, 2> ours{socket_key, settings_key};
    const auto hint = closest_key(entry.key, ours, 1);
    if (!hint) return;
    const std::size_t line = entry.key_line != 0 ? entry.key_line : entry.line;
    fail(line, join_key_path(prefix_, entry.key),
         "unknown " + std::string(words_.table_word()) + " (did you mean " + std::string(*hint) +
             "?); other tables beside " + std::string(socket_key) + " are ignored, so its keys "
             "would be lost");
  }

  // What was found instead of the expected type: `"abc" is a string`.
  std::string describe(const config_node& node) const {
    switch (node.type) {
      case kind::table: return "the value is " + words_.a_table();
      case kind::array: return "the value is " + std::string(words_.array_word());
      case kind::string: return written(node) + " is a string";
      case kind::integer: return written(node) + " is an integer";
      case kind::floating: return written(node) + " is a float";
      case kind::boolean: return written(node) + " is a boolean";
      case kind::null: return "the value is empty (null)";
      case kind::date_time: return written(node) + " is a date or time";
    }
    return written(node);
  }

  const config_node& as_table(const config_node& node, std::string_view path,
                              const std::string& shape) const {
    if (node.is_table()) return node;
    fail(node, path,
         describe(node) + "; make it " + words_.a_table() + ": " + shape);
  }

  // Unknown keys, and keys given twice (YAML parsers keep both).
  void check_keys(const config_node& table, std::string_view path, key_list allowed) const {
    for (const config_node& entry : table.entries) {
      const std::size_t line = entry.key_line != 0 ? entry.key_line : entry.line;
      if (std::ranges::find(allowed, entry.key) == allowed.end()) {
        std::string problem =
            "unknown key; " + std::string(path) + " takes only " + list_keys(allowed);
        if (const auto hint = closest_key(entry.key, allowed)) {
          problem += " (did you mean " + std::string(*hint) + "?)";
        }
        fail(line, join_key_path(path, entry.key), problem);
      }
      check_unique(table, entry, path);
    }
  }

  void check_unique(const config_node& table, const config_node& entry,
                    std::string_view path) const {
    const config_node* first = table.find(entry.key);
    if (first == &entry) return;
    std::string problem = "given twice";
    if (first->key_line != 0) problem += " (first at line " + std::to_string(first->key_line) + ")";
    fail(entry.key_line, join_key_path(path, entry.key), problem + "; keep one of them");
  }

  void read_clients(const config_node& node, config& result) const {
    const config_node& clients =
        as_table(node, client_path_,
                 words_.section(client_path_ + ".<Name>") + " with IP and Port per client");
    for (const config_node& value : clients.entries) {
      const std::string& name = value.key;
      const std::string path = join_key_path(client_path_, name);
      if (!value.is_table() && (name == "IP" || name == "Port")) {
        fail(value, client_path_,
             "give each client a name, e.g. " + words_.named_client_example(client_path_) +
                 ", not IP/Port directly under Client");
      }
      if (name.empty()) {
        fail(value, path,
             "a client needs a non-empty name, e.g. " + words_.section(client_path_ + ".Telegram"));
      }
      check_unique(clients, value, client_path_);
      const config_node& client = as_table(value, path, words_.section(path) + " with IP and Port");
      check_keys(client, path, client_keys);
      if (const config_node* list = client.find("endpoints")) {
        check_one_peer_or_list(client, *list, path);
        result.client_endpoints.emplace(name, read_endpoints(*list, join_key_path(path, "endpoints")));
      } else {
        result.clients.emplace(name, endpoint{read_ip(client, path, false),
                                              read_port(client, path, false)});
      }
    }
  }

  // A client given both IP/Port and endpoints: which one it is would be a guess.
  void check_one_peer_or_list(const config_node& client, const config_node& list,
                              std::string_view path) const {
    for (const std::string_view key : endpoint_keys) {
      const config_node* single = client.find(key);
      if (single == nullptr) continue;
      const std::size_t line = line_of_key(*single);
      fail(line_of_key(list), join_key_path(path, "endpoints"),
           "given with " + std::string(key) +
               (line != 0 ? " (line " + std::to_string(line) + ")" : std::string()) +
               "; a client is one peer (IP and Port) or a list of endpoints, not both: keep "
               "IP and Port, or endpoints");
    }
  }

  // `endpoints = ["lab-a:65432", "127.0.0.3:65432"]`: each entry an address
  // or a name, and a port.
  std::vector<endpoint> read_endpoints(const config_node& list, const std::string& path) const {
    const std::string example = words_.assign("endpoints", endpoints_example);
    if (list.type != kind::array) {
      fail(list, path,
           describe(list) + "; list the peers as " + std::string(words_.array_word()) +
               " of \"HOST:PORT\" strings, e.g. " + example);
    }
    if (list.entries.empty()) {
      fail(list, path,
           "the list is empty; give at least one \"HOST:PORT\", e.g. " + example +
               ", or IP and Port for one peer");
    }
    std::vector<endpoint> result;
    for (std::size_t i = 0; i < list.entries.size(); ++i) {
      const config_node& entry = list.entries[i];
      const std::string entry_path = path + '[' + std::to_string(i) + ']';
      // The entry's own line; JSON has none, a TOML entry always has one.
      const std::size_t line = entry.line != 0 ? entry.line : list.line;
      if (entry.type != kind::string) {
        fail(line, entry_path,
             describe(entry) + "; write each endpoint as a string \"HOST:PORT\", e.g. " +
                 example + yaml_entry_hint(entry));
      }
      std::string problem;
      std::optional<endpoint> parsed = detail::parse_endpoint(entry.text, problem);
      if (!parsed) {
        fail(line, entry_path,
             written(entry) + " " + problem + "; write HOST:PORT, an address or a host name and "
             "the port the peer listens on (1 to 65535), e.g. \"lab-a:65432\", "
             "\"127.0.0.3:65432\" or \"[::1]:65432\"");
      }
      for (std::size_t j = 0; j < result.size(); ++j) {
        if (!same_endpoint(result[j], *parsed)) continue;
        const config_node& first = list.entries[j];
        const std::string where = first.line != 0 && first.line != line
                                      ? "at line " + std::to_string(first.line)
                                      : "as endpoints[" + std::to_string(j) + "]";
        fail(line, entry_path,
             written(entry) + " is given twice (first " + where +
                 "); a list names each endpoint once, keep one of them");
      }
      result.push_back(std::move(*parsed));
    }
    return result;
  }

  // Host names ignore case ("Lab-A" is "lab-a"), as do IPv6's hex digits.
  static bool same_endpoint(const endpoint& a, const endpoint& b) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    return a.port == b.port && std::ranges::equal(a.ip, b.ip, {}, lower, lower);
  }

  // YAML reads `- lab-a: 65432` as a mapping and `- [lab-a:1]` as a
  // sequence: what to write instead.
  std::string yaml_entry_hint(const config_node& entry) const {
    if (words_.format() != config_format::yaml) return {};
    if (entry.type == kind::table)
      return " (YAML reads \"- host: port\" with a space as a mapping: write no space after the "
             "colon, or quote the entry)";
    if (entry.type == kind::array)
      return " (YAML reads unquoted brackets as a sequence: quote an IPv6 entry, "
             "\"[::1]:65432\")";
    return {};
  }

  static std::size_t line_of_key(const config_node& node) {
    return node.key_line != 0 ? node.key_line : node.line;
  }

  endpoint read_endpoint(const config_node& table, std::string_view path, bool is_host) const {
    check_keys(table, path, endpoint_keys);
    return {read_ip(table, path, is_host), read_port(table, path, is_host)};
  }

  std::string read_ip(const config_node& table, std::string_view path, bool is_host) const {
    const std::string key_path = join_key_path(path, "IP");
    const config_node* node = table.find("IP");
    if (node == nullptr) {
      fail(table, key_path,
           "missing; add " + words_.assign("IP", "\"127.0.0.1\"") + " (or the peer's address) to " +
               words_.section(path) +
               (is_host ? std::string()
                        : ", or list several peers as " +
                              words_.assign("endpoints", endpoints_example)));
    }
    if (node->type != kind::string) {
      fail(*node, key_path,
           describe(*node) + "; write the address as a string, e.g. " +
               words_.assign("IP", "\"127.0.0.1\""));
    }
    const std::string& text = node->text;
    if (comet::is_ip_address(text) || comet::is_host_name(text)) return text;
    std::string fix = "write an IPv4 or IPv6 address such as \"127.0.0.1\" or \"::1\", or a "
                      "host name such as \"lab-pc\"";
    if (text.size() > 1 && text.front() == '[' && text.back() == ']') {
      fix = "write IPv6 addresses without brackets, e.g. \"::1\"";
    } else if (!text.empty() && text.find_first_not_of("0123456789.") == std::string::npos) {
      fix = "an IPv4 address is four numbers from 0 to 255, e.g. \"127.0.0.1\"";
    }
    fail(*node, key_path, describe(*node) + " but neither an IPv4 or IPv6 address nor a host name; " + fix);
  }

  std::uint16_t read_port(const config_node& table, std::string_view path, bool is_host) const {
    const std::string key_path = join_key_path(path, "Port");
    const std::int64_t lowest = is_host ? 0 : 1;
    const std::string range =
        "between " + std::to_string(lowest) + " and " + std::to_string(max_port);
    const config_node* node = table.find("Port");
    if (node == nullptr) {
      fail(table, key_path,
           "missing; add " + words_.assign("Port", "65432") + " (a port " + range + ") to " +
               words_.section(path));
    }
    if (node->type != kind::integer) {
      fail(*node, key_path,
           describe(*node) + "; use an integer " + range + ", e.g. " +
               words_.assign("Port", "65432"));
    }
    const std::int64_t value = node->integer;
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

  settings read_settings(const config_node& table, const std::string& path) const {
    check_keys(table, path, settings_keys);
    settings result;
    const auto whole = [](std::string_view unit, std::int64_t lowest, std::int64_t highest) {
      return "a whole number of " + std::string(unit) + " from " + std::to_string(lowest) +
             " to " + std::to_string(highest);
    };
    const auto read = [&](std::string_view key, bool integral, double lowest, double highest,
                          const std::string& range, std::string_view example,
                          bool zero_allowed = false) {
      return read_number(table, join_key_path(path, key), key, integral, lowest, highest, range,
                         example, zero_allowed);
    };
    const auto read_count = [&](std::string_view key, std::string_view unit, std::int64_t lowest,
                                std::int64_t highest, std::string_view example,
                                std::size_t& out) {
      if (const auto value = read(key, true, static_cast<double>(lowest),
                                  static_cast<double>(highest), whole(unit, lowest, highest),
                                  example)) {
        out = static_cast<std::size_t>(*value);
      }
    };
    read_count("io_threads", "threads", 1, max_io_threads, "2", result.io_threads);
    read_count("max_content_length", "bytes", 1, max_content_limit, "16777216",
               result.max_content_length);
    read_count("max_in_flight", "requests", 1, max_in_flight_limit, "64", result.max_in_flight);
    read_count("max_in_flight_bytes", "bytes", 1, max_in_flight_bytes_limit, "67108864",
               result.max_in_flight_bytes);
    read_count("write_buffer_limit", "bytes", min_write_buffer, max_write_buffer, "4194304",
               result.write_buffer_limit);
    read_count("max_connections", "connections", 1, max_connections_limit, "10000",
               result.max_connections);
    read_count("max_streams", "streams", 1, max_streams_limit, "256", result.max_streams);
    read_count("subscriber_queue", "items", 1, max_subscriber_queue, "65536", result.subscriber_queue);
    read_count("subscriber_queue_bytes", "bytes", 1, max_subscriber_queue_bytes, "67108864",
               result.subscriber_queue_bytes);
    read_count("max_connections_per_peer", "connections", 1, max_connections_per_peer_limit, "4",
               result.max_connections_per_peer);

    // Milliseconds are the resolution, so 0.001 s is the shortest duration.
    const std::string seconds =
        "a number of seconds from 0.001 to " + std::to_string(max_duration_seconds);
    // `disabled` is what 0 means for a duration that may be turned off, or
    // empty when 0 is not allowed.
    const auto read_seconds = [&](std::string_view key, std::string_view example,
                                  std::chrono::milliseconds& out, std::string_view disabled = {}) {
      const bool zero_allowed = !disabled.empty();
      const std::string range =
          zero_allowed ? seconds + ", or 0 for " + std::string(disabled) : seconds;
      if (const auto value =
              read(key, false, 0.001, max_duration_seconds, range, example, zero_allowed)) {
        out = std::chrono::milliseconds(std::llround(*value * 1000));
      }
    };
    read_seconds("connect_timeout", "5.0", result.connect_timeout);
    read_seconds("request_timeout", "30.0", result.request_timeout);
    read_seconds("shutdown_timeout", "5.0", result.shutdown_timeout);
    read_seconds("idle_timeout", "60.0", result.idle_timeout, "never");
    read_seconds("handler_timeout", "60.0", result.handler_timeout, "no deadline");
    read_seconds("max_connection_age", "300.0", result.max_connection_age, "no age limit");
    read_seconds("resolve_max_age", "30.0", result.resolve_max_age);
    if (const auto reuse = read_bool(table, join_key_path(path, "reuse_port"), "reuse_port")) {
      result.reuse_port = *reuse;
    }
    if (const config_node* metrics =
            read_string(table, join_key_path(path, "metrics_listen"), "metrics_listen",
                        "\"127.0.0.1:9464\"")) {
      if (!metrics->text.empty()) {
        std::string problem;
        result.metrics_listen = detail::parse_endpoint(metrics->text, problem);
        if (!result.metrics_listen)
          fail(*metrics, join_key_path(path, "metrics_listen"),
               written(*metrics) + " " + problem +
                   "; write HOST:PORT, the address to serve metrics on and a port from 1 to "
                   "65535, e.g. \"127.0.0.1:9464\", or \"\" for none");
      }
    }

    if (const auto keep_alive = read_bool(table, join_key_path(path, "keep_alive"), "keep_alive")) {
      result.keep_alive = *keep_alive;
    }
    if (const config_node* token = read_string(table, join_key_path(path, "auth_token"), "auth_token",
                                               "\"a-long-random-secret\"")) {
      result.auth_token = token->text;
    }
    if (const config_node* allow = read_string(table, join_key_path(path, "allow"), "allow",
                                               "\"127.0.0.0/8, 10.1.0.0/16\"")) {
      try {
        (void)address_filter(split_allow_list(allow->text));
      } catch (const std::invalid_argument& e) {
        fail(*allow, join_key_path(path, "allow"),
             std::string(e.what()) + "; list addresses and networks separated by commas");
      }
      result.allow = allow->text;
    }
    read_tls(table, path, result.tls);
    return result;
  }

  void read_tls(const config_node& table, const std::string& path, tls_settings& tls) const {
    if (const auto enabled = read_bool(table, join_key_path(path, "tls"), "tls"))
      tls.enabled = *enabled;
    const auto read_file = [&](std::string_view key, std::string_view example, std::string& out) {
      if (const config_node* file = read_string(table, join_key_path(path, key), key, example))
        out = file->text;
    };
    read_file("tls_certificate", "\"certs/host.pem\"", tls.certificate);
    read_file("tls_private_key", "\"certs/host.key\"", tls.private_key);
    read_file("tls_ca", "\"certs/ca.pem\"", tls.ca);
    const std::string require_key = join_key_path(path, "tls_require_client_certificate");
    if (const auto require = read_bool(table, require_key, "tls_require_client_certificate"))
      tls.require_client_certificate = *require;
    if (!tls.enabled) return;
    if (tls.certificate.empty() != tls.private_key.empty()) {
      const std::string_view given = tls.certificate.empty() ? "tls_private_key" : "tls_certificate";
      const std::string_view missing = tls.certificate.empty() ? "tls_certificate" : "tls_private_key";
      fail(*table.find(given), join_key_path(path, given),
           "set without " + std::string(missing) + "; a certificate needs its private key");
    }
    if (tls.require_client_certificate && tls.ca.empty()) {
      fail(*table.find("tls_require_client_certificate"), require_key,
           "needs tls_ca: the CA whose signature a client certificate must carry");
    }
  }

  // A string, or nothing when the key is absent.
  const config_node* read_string(const config_node& table, const std::string& path,
                                 std::string_view key, std::string_view example) const {
    const config_node* node = table.find(key);
    if (node == nullptr) return nullptr;
    if (node->type != kind::string)
      fail(*node, path, describe(*node) + "; use a string, e.g. " + words_.assign(key, example));
    return node;
  }

  // true or false, or nothing when the key is absent.
  std::optional<bool> read_bool(const config_node& table, const std::string& path,
                                std::string_view key) const {
    const config_node* node = table.find(key);
    if (node == nullptr) return std::nullopt;
    if (node->type != kind::boolean) {
      fail(*node, path,
           describe(*node) + "; use true or false, e.g. " + words_.assign(key, "true"));
    }
    return node->boolean;
  }

  // A number from `lowest` to `highest` (an integer when `integral`), or 0
  // when `zero_allowed`, or nothing when the key is absent. `range`
  // describes the accepted values.
  std::optional<double> read_number(const config_node& table, const std::string& path,
                                    std::string_view key, bool integral, double lowest,
                                    double highest, const std::string& range,
                                    std::string_view example, bool zero_allowed) const {
    const config_node* node = table.find(key);
    if (node == nullptr) return std::nullopt;
    double number = 0;
    if (node->type == kind::integer) {
      number = static_cast<double>(node->integer);
    } else if (node->type == kind::floating && !integral) {
      number = node->number;
    } else {
      fail(*node, path,
           describe(*node) + "; use " + range + ", e.g. " + words_.assign(key, example));
    }
    // Written so NaN, which compares false to everything, fails too.
    if (!(number >= lowest && number <= highest) && !(zero_allowed && number == 0)) {
      fail(*node, path, written(*node) + " is out of range; use " + range);
    }
    return number;
  }

  std::string source_;
  config_wording words_;
  std::string prefix_;  // "settings" when the block is nested there
  std::string socket_path_, host_path_, client_path_;
};

}  // namespace

config read_config_document(const config_node& root, std::string_view source,
                            config_format format) {
  return config_reader(source, format).read(root);
}

std::string spell_float(double number) {
  std::array<char, 64> buffer{};
  // Plain decimals for the magnitudes a config holds, exponents beyond them.
  const double magnitude = std::fabs(number);
  const bool plain = magnitude == 0 || (magnitude >= 1e-6 && magnitude < 1e16);
  const auto result =
      plain ? std::to_chars(buffer.data(), buffer.data() + buffer.size(), number,
                            std::chars_format::fixed)
            : std::to_chars(buffer.data(), buffer.data() + buffer.size(), number);
  std::string text(buffer.data(), result.ptr);
  if (std::isfinite(number) && text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

void throw_syntax_error(std::string_view source, std::size_t line, std::size_t column,
                        std::string_view format_name, std::string_view what) {
  throw config_error(std::string(source) + ':' + std::to_string(line) + ':' +
                     std::to_string(column) + ": " + std::string(format_name) +
                     " syntax error: " + std::string(what) + "; fix the " +
                     std::string(format_name) + " at that line and column");
}

}  // namespace comet::detail
