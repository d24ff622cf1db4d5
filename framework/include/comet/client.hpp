// Clients: send a request to a peer host and get its answer.
//
// A client is a cheap handle (copies share one peer) bound to an executor; it
// never starts threads. Three ways to send, as in COMET and beyond:
//
//   json::value r = co_await c.send("echo", value);  // in a coroutine
//   json::value r = c.send_sync("echo", value);      // COMET's no_thread=True
//   c.post("TelegramBot", value);                     // COMET's default: background
//
// Error model: send and send_sync return the answer's `result` or throw
// comet::error. Its code() is errc::peer_offline, connect_timeout,
// request_timeout, connection_closed or protocol_error for transport
// failures, or the code the host answered (no_handler, handler_failed,
// bad_request, ...) with the host's message. post never throws; failures are
// logged.
//
// Each request uses its own connection, closed after the answer, which is
// what COMET hosts expect.
#pragma once

#include <comet/config.hpp>
#include <comet/endpoint.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace comet {

namespace asio = boost::asio;
namespace json = boost::json;

struct client_options {
  std::string name;  // used in messages; defaults to the peer's address
  std::chrono::milliseconds connect_timeout = settings{}.connect_timeout;
  std::chrono::milliseconds request_timeout = settings{}.request_timeout;
  std::size_t max_content_length = settings{}.max_content_length;
  // Reuse connections ("keep-alive", PROTOCOL.md Part 2) and multiplex
  // concurrent sends on them with request ids. Off by default, as COMET
  // does; against a host that closes after each response (a COMET host) the
  // client falls back to a connection per message by itself.
  bool keep_alive = false;
  // With keep_alive: connections kept per peer, and requests in flight on each.
  std::size_t max_connections = 4;
  std::size_t max_in_flight = 64;
  // Sent as "auth-token" with every request, for hosts that require one.
  std::string auth_token;
  // A refused connection is retried this many times, after 50 ms, 100 ms,
  // ... (within request_timeout): a host that is restarting is not offline.
  std::size_t connect_retries = 2;
  // TLS to the host (and a client certificate for mutual TLS). The files are
  // read when the client is constructed, which throws
  // comet::error(errc::tls_error) naming a file that cannot be used; a
  // failed handshake fails the send with errc::tls_error.
  tls_settings tls;

  static client_options from_config(const config& cfg, std::string name = {});
};

class io_pool;

class client {
 public:
  client(asio::any_io_executor executor, endpoint peer, client_options options = {});
  // On a pool whose contexts each run on one thread, a keep-alive client
  // needs no strand, and sends from that thread run without a hop.
  client(io_pool& pool, endpoint peer, client_options options = {});

  // Sends one request and returns the host's `result`. Throws comet::error.
  // The whole exchange, connect included, is bounded by request_timeout.
  asio::awaitable<json::value> send(std::string action, json::value value) const;

  // Runs send() on the executor and blocks this thread for the answer.
  // Throws comet::error(errc::would_deadlock) when called on a thread that
  // the executor needs (a pool thread): use `co_await send()` there.
  json::value send_sync(std::string action, json::value value) const;

  // Starts send() in the background and returns at once. Never throws for a
  // send failure: it is logged at warn level.
  void post(std::string action, json::value value) const;

  const endpoint& peer() const noexcept;
  const std::string& name() const noexcept;
  const asio::any_io_executor& get_executor() const noexcept;

  struct impl;

 private:
  std::shared_ptr<const impl> impl_;
};

// The named clients of a config: clients["Telegram"].
class client_set {
 public:
  client_set(asio::any_io_executor executor, const config& cfg);

  // Throws comet::error(errc::unknown_client) listing the configured names.
  const client& operator[](std::string_view name) const;
  const client& at(std::string_view name) const { return (*this)[name]; }
  bool contains(std::string_view name) const;
  const std::map<std::string, client, std::less<>>& all() const noexcept { return clients_; }

 private:
  std::map<std::string, client, std::less<>> clients_;
  std::string source_;
};

// COMET's send_TCP_message(client, action, message, no_thread) for ported
// code. no_thread=false posts in the background and returns nullopt;
// no_thread=true blocks and returns the whole response object, as COMET's
// client does: {"result": ...}. Failures throw comet::error (COMET returned
// False).
std::optional<json::value> send_tcp_message(const client& target, std::string action,
                                             json::value message, bool no_thread = false);

}  // namespace comet
