// Internal: the peer layer shared by every send, one-shot or pooled: what a
// client knows about its peer, how it connects (retries, TLS handshake), and
// the wording of every transport error.
#pragma once

#include <comet/client.hpp>
#include <comet/codec.hpp>
#include <comet/errors.hpp>

#include "transport.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace comet {

using tcp = asio::ip::tcp;

struct peer_info {
  endpoint peer;
  client_options options;
  std::optional<tcp::endpoint> target;  // when peer.ip is an address; a name is resolved per connection
  std::shared_ptr<asio::ssl::context> tls;  // null: plain TCP
  std::shared_ptr<tls_session_cache> sessions;  // with tls

  // Connects `t` to the peer (resolving its name first, if it has one, and
  // racing its addresses as RFC 8305 says: happy_eyeballs.hpp), retrying a
  // refused connect (50 ms, 100 ms, ...; for a name, when every address
  // failed and one refused),
  // then makes the TLS handshake when the client uses TLS (checking the
  // certificate names the address or name dialled, and sending a name as SNI).
  // Completes when connected, or throws the comet::error that says why:
  // unresolved, peer_offline, connect_timeout / tls_error once t's expiry
  // passes (the caller sets it), tls_error, or cancelled.
  // Cancellation: the calling coroutine's (terminal and partial), through
  // the pending connect, wait or handshake. `t` must outlive it.
  asio::awaitable<void> connect(transport& t) const;

  std::string describe() const;  // "Telegram at 127.0.0.4:65432"
  error offline(const boost::system::error_code& ec) const;
  error unresolved(const boost::system::error_code& ec, bool timed_out) const;
  error connect_timed_out() const;
  // The request ran past `timeout` (the client's request_timeout unless the
  // send set its own).
  error timed_out(std::chrono::milliseconds timeout) const;
  error timed_out() const { return timed_out(options.request_timeout); }
  error tls_failed(const boost::system::error_code& ec) const;
  error tls_timed_out() const;
  error lost(const boost::system::error_code& ec, std::string_view doing) const;
  error cancelled() const;
  error closed_meanwhile() const;  // the client was closed during the send
  error client_closed() const;     // a send after close
  // `limit` sends (max_queued_sends) were waiting for a connection already.
  error queue_full(std::size_t limit) const;
  // Whether a failed connect is worth another try (refused, attempts left),
  // and how long to wait first: 50 ms, doubling.
  bool retry_connect(const boost::system::error_code& ec, std::size_t attempt) const;
  static std::chrono::milliseconds retry_delay(std::size_t attempt);
  // The result of a response frame, or the error it reports (thrown).
  json::value result_of(const frame_header& header, std::string_view content) const;
};

// True when `state` (a coroutine's, from co_await this_coro::cancellation_state)
// was cancelled with a type a send honours: terminal or partial.
// Not a coroutine: GCC 12 destroys an awaitable twice in some conditions.
bool was_cancelled(const asio::cancellation_state& state) noexcept;

}  // namespace comet
