// Configuration: the host to listen on, the named clients to send to, and the
// framework's settings. Plain structs with defaults that code can fill by
// hand; load_config / parse_config read them from TOML, YAML (COMET's own
// settings files) or JSON, mirroring COMET's `Socket_connection` block:
//
//   [Socket_connection.Host]
//   IP = "127.0.0.1"
//   Port = 65432
//
//   [Socket_connection.Client.Telegram]
//   IP = "127.0.0.4"
//   Port = 65432
//
//   [Socket_connection.Client.Fleet]      # several hosts behind one client
//   endpoints = ["lab-a:65432", "127.0.0.3:65432"]
//
//   [comet]                      # optional; every key has a default
//   io_threads = 2
//   connect_timeout = 5.0        # seconds
//   request_timeout = 30.0       # seconds
//   shutdown_timeout = 5.0       # seconds
//   max_content_length = 16777216  # bytes
//   max_in_flight = 64           # requests in flight per host connection (its window)
//   max_in_flight_bytes = 67108864  # bytes of their contents
//   write_buffer_limit = 4194304 # bytes of unread answers per host connection
//   max_connections = 10000      # open host connections
//   idle_timeout = 60.0          # seconds; 0: never
//   handler_timeout = 60.0       # seconds; 0: no deadline
//   max_connection_age = 0.0     # seconds a keep-alive host connection lives (±10%); 0: forever
//   reuse_port = false           # several hosts share one address and port (SO_REUSEPORT)
//   metrics_listen = "127.0.0.1:9464"  # serve GET /metrics (Prometheus); absent or "": off
//   keep_alive = false           # clients reuse connections
//   max_connections_per_peer = 4 # with keep_alive
//   tls = false                  # TLS for the host and every client
//   tls_certificate = "host.pem" # PEM files; relative to the config file
//   tls_private_key = "host.key"
//   tls_ca = "ca.pem"            # whom to trust
//   tls_require_client_certificate = false  # a host's mutual TLS
//
// Other top-level tables are ignored, so the block can live inside a larger
// application config; it may also sit under a top-level `settings` table.
// docs/configuration.md lists every key, its default and its limits.
#pragma once

#include <comet/endpoint.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace comet {

// TLS for hosts and clients (docs/security.md). Off by default: COMET's
// Python peers speak plain TCP.
struct tls_settings {
  bool enabled = false;
  // PEM files. A host needs both; a client presents them when given, for
  // hosts that require client certificates (mutual TLS).
  std::string certificate;  // the certificate chain, leaf first
  std::string private_key;
  // PEM file of the CA certificates to trust. A client checks the host's
  // certificate against it (empty: the system's trust store) and that the
  // certificate names the address it connected to; a host checks client
  // certificates against it.
  std::string ca;
  // A host refuses clients without a certificate signed by `ca` (mutual TLS).
  bool require_client_certificate = false;

  friend bool operator==(const tls_settings&, const tls_settings&) = default;
};

struct settings {
  // Threads of the io_pool a service creates (ignored when embedding).
  std::size_t io_threads = 2;
  // Time allowed to establish a TCP connection to a peer.
  std::chrono::milliseconds connect_timeout{5000};
  // Time allowed for a whole request: connect, write, and read the answer.
  std::chrono::milliseconds request_timeout{30000};
  // Time a stopping host gives in-flight requests before closing them.
  std::chrono::milliseconds shutdown_timeout{5000};
  // Largest content a host accepts or a client reads, in bytes.
  std::size_t max_content_length = 16 * 1024 * 1024;
  // Requests one host connection may have read and not yet answered (its
  // window), and the content bytes they may add up to; one past them is
  // answered `busy`.
  std::size_t max_in_flight = 64;
  std::size_t max_in_flight_bytes = 64 * 1024 * 1024;
  // Unread answers a host buffers per connection, in bytes, before it stops reading.
  std::size_t write_buffer_limit = 4 * 1024 * 1024;
  // Connections a host keeps open at most; past it new ones are closed at once.
  std::size_t max_connections = 10000;
  // Streams and subscriptions one host connection may have open; a
  // subscriber's queue on the host, in items and bytes (host_options).
  std::size_t max_streams = 256;
  std::size_t subscriber_queue = 65536;
  std::size_t subscriber_queue_bytes = 64 * 1024 * 1024;
  // A host disconnects a peer silent (or not reading) this long; zero: never.
  std::chrono::milliseconds idle_timeout{60000};
  // A host cancels a coroutine handler running this long; zero: no deadline.
  std::chrono::milliseconds handler_timeout{60000};
  // A host closes a keep-alive connection gracefully once it is this old
  // (each draws its own age within ±10% of it), so that clients spread
  // onto new hosts; zero: never (host_options::max_connection_age).
  std::chrono::milliseconds max_connection_age{0};
  // A host's listener sets SO_REUSEPORT, so that several hosts (processes)
  // share one address and port (host_options::reuse_port).
  bool reuse_port = false;
  // A host serves its metrics (Prometheus's GET /metrics) on this address;
  // nullopt: not at all (host_options::metrics_listen).
  std::optional<endpoint> metrics_listen;
  // Clients reuse connections to a peer (keep-alive) instead of one per message.
  bool keep_alive = false;
  // With keep_alive: connections a client keeps open to each peer.
  std::size_t max_connections_per_peer = 4;
  // A client of an endpoint list re-resolves its names when a send finds
  // the last resolve older than this (and after failures).
  std::chrono::milliseconds resolve_max_age{30000};
  // Access control (docs/security.md), off when empty: a host requires this
  // "auth-token" on every request and clients send it; a host admits only
  // the addresses and networks of the comma-separated allow-list.
  std::string auth_token;
  std::string allow;
  tls_settings tls;

  friend bool operator==(const settings&, const settings&) = default;
};

struct config {
  endpoint host{"127.0.0.1", 65432};
  // Named clients with one peer (IP and Port, as COMET has them)...
  std::map<std::string, endpoint, std::less<>> clients;
  // ... and those with a list of endpoints instead (`endpoints = [...]`):
  // a name in the list stands for all its addresses. A name is in one of
  // the two maps, never both.
  std::map<std::string, std::vector<endpoint>, std::less<>> client_endpoints;
  settings framework;
  // Where it came from ("config/app.toml", "<embedded default config>"), for messages.
  std::string source;
};

enum class config_format { toml, yaml, json };

// The format a file's extension names, ignoring case: .yaml and .yml are
// YAML, .json is JSON, anything else (.toml included) is TOML.
config_format config_format_of(const std::filesystem::path& file);

// Reads a config file in the format its extension names. Throws config_error
// naming the file, line and key (JSON files report no lines: the key path
// alone says where).
config load_config(const std::filesystem::path& file);

// Parses config text; `source_name` is used in error messages.
config parse_config(std::string_view text, std::string_view source_name,
                    config_format format = config_format::toml);

// The config compiled in from config/default.toml.
config default_config();
std::string_view default_config_text() noexcept;

}  // namespace comet
