// The error model of comet-net.
//
// Every expected failure has a code in `comet::errc`, carried in a
// `std::error_code` of `comet::error_category()`. Operations that can fail
// throw `comet::error`, whose `code()` a caller compares against `errc`
// values and whose `what()` is a full sentence saying what failed and what to
// do. The first group of codes are the ones a host answers on the wire
// (docs/protocol.md, Error responses); the second group is detected locally by a client.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace comet {

enum class errc {
  // Answered by a host in a response's "error" object.
  bad_request = 1,
  no_handler,
  handler_failed,
  timeout,
  too_large,
  unauthorized,
  shutting_down,
  remote_error,  // an error response whose code this version does not know
  busy,          // the connection's window was full: refused unread (safe to send again)
  host_full,     // the host was at max_connections: refused unread (safe to send again)
  too_many_streams,  // the connection had max_streams open: refused unread (safe to send again)
  slow_consumer,     // a subscriber fell a whole queue behind: its subscription ended

  // Detected by this side.
  peer_offline = 100,  // connection refused / unreachable
  connect_timeout,
  request_timeout,
  connection_closed,  // peer closed before answering
  protocol_error,     // peer sent something that is not a valid frame
  unknown_client,     // no client of that name in the config
  would_deadlock,     // send_sync called on a thread of the pool that must run it
  bind_failed,        // a host could not listen on its address
  tls_error,          // TLS files unusable, or the TLS handshake failed
  cancelled,          // the caller cancelled the send, or closed its client meanwhile
  client_closed,      // a send on a client after close() / async_close()
  unresolved,         // a host name that does not resolve
  usage_error,        // an API called in a way it does not allow (an action routed twice...)
  unread,             // the host never read the request (never written, or after its
                      // going-away notice): safe to send again
  queue_full,         // client_options::max_queued_sends were waiting already: not sent
  unsupported,        // the peer cannot do what was asked (a COMET host cannot stream)
};

const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// The wire spelling of a code ("no_handler"). A host answers the first
// group itself; the others reach the wire when a handler fails with them
// (a relay answers its upstream's peer_offline).
std::string_view wire_name(errc e) noexcept;

// Parses a wire code; unknown spellings map to errc::remote_error.
errc errc_from_wire(std::string_view code) noexcept;

// The exception every comet-net operation throws for an expected failure.
class error : public std::runtime_error {
 public:
  error(errc code, const std::string& message)
      : std::runtime_error(message), code_(make_error_code(code)) {}

  const std::error_code& code() const noexcept { return code_; }

  // The host provably did not run the request, and sending it again may
  // succeed: busy, host_full, too_many_streams, shutting_down, unread,
  // queue_full, peer_offline, connect_timeout, unresolved (docs/api.md, "Which failures are safe to send again").
  bool safe_to_retry() const noexcept;

 private:
  std::error_code code_;
};

// A config that cannot be used. The message names the source, line and key.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace comet

template <>
struct std::is_error_code_enum<comet::errc> : std::true_type {};
