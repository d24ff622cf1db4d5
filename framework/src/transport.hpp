// Internal: a TCP socket, optionally wrapped in TLS, with an expiry. Host
// and client connections read and write through it, so plain TCP pays one
// branch per operation and no type erasure.
//
// The expiry (as Beast's basic_stream has one): once it passes, the socket
// is closed, so whatever operation is pending completes with an error and
// expired() says why. It is a deadline_timer: setting it later costs a store.
#pragma once

#include "deadline_timer.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace comet {

namespace asio = boost::asio;

class transport {
 public:
  using tcp = asio::ip::tcp;
  using tls_stream = asio::ssl::stream<tcp::socket&>;

  // `tls` (may be null: plain TCP) must outlive the transport.
  transport(tcp::socket socket, asio::ssl::context* tls)
      : socket_(std::move(socket)), expiry_(socket_.get_executor(), [this] {
          expired_ = true;
          close();
        }) {
    if (tls) tls_ = std::make_unique<tls_stream>(socket_, *tls);
  }
  // The TLS stream refers to socket_: the transport stays where it is.
  transport(const transport&) = delete;
  transport& operator=(const transport&) = delete;

  tcp::socket& socket() noexcept { return socket_; }
  bool secure() const noexcept { return tls_ != nullptr; }
  // Only when secure().
  tls_stream& tls() noexcept { return *tls_; }

  // A client checks that the host's certificate names `address` (an IP
  // literal: the certificate needs it as an IP subjectAltName).
  void verify_peer_name(const std::string& address);

  template <class Token>
  auto async_read_some(asio::mutable_buffer buffer, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, asio::mutable_buffer b) {
          if (tls_)
            tls_->async_read_some(b, std::move(handler));
          else
            socket_.async_read_some(b, std::move(handler));
        },
        token, buffer);
  }

  // Writes all of `buffer`.
  template <class Token>
  auto async_write(asio::const_buffer buffer, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, asio::const_buffer b) {
          if (tls_)
            asio::async_write(*tls_, b, std::move(handler));
          else
            asio::async_write(socket_, b, std::move(handler));
        },
        token, buffer);
  }

  // Closes the socket at once (no TLS close_notify: frames carry their own
  // lengths, so a truncated stream is always detected), and its expiry.
  // Runs what also_on_close() set, once.
  void close() noexcept {
    expiry_.expires_never();
    if (also_on_close_) std::exchange(also_on_close_, nullptr)();
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  // Only from the transport's executor.
  void expires_at(deadline_timer::time_point deadline) { expiry_.expires_at(deadline); }
  void expires_never() { expiry_.expires_never(); }
  bool expired() const noexcept { return expired_; }
  // Also runs `f` (once) when the transport closes, by its expiry or by
  // close(): it ends what connects for the transport without using its
  // socket (a name resolution, the attempts of happy_eyeballs_connect).
  // Empty: nothing more.
  void also_on_close(std::function<void()> f) { also_on_close_ = std::move(f); }

 private:
  tcp::socket socket_;
  std::unique_ptr<tls_stream> tls_;
  deadline_timer expiry_;
  std::function<void()> also_on_close_;
  bool expired_ = false;
};

// The last TLS session a client had with its peer, offered when it connects
// again: a resumed handshake skips the certificates, which is most of a
// handshake's cost. Shared by every connection to that peer.
class tls_session_cache {
 public:
  tls_session_cache() = default;
  tls_session_cache(const tls_session_cache&) = delete;
  tls_session_cache& operator=(const tls_session_cache&) = delete;
  ~tls_session_cache();

  // Before the handshake.
  void offer(transport& t) const;
  // After an answer was read on `t` (TLS 1.3 hosts send their session
  // tickets after the handshake: they arrive with the first answer).
  void remember(transport& t);

 private:
  mutable std::mutex mutex_;
  SSL_SESSION* session_ = nullptr;
};

struct tls_settings;

// TLS contexts from settings; each throws comet::error(errc::tls_error)
// naming the file it cannot use. Null when TLS is off.
std::shared_ptr<asio::ssl::context> make_host_tls_context(const tls_settings& settings);
std::shared_ptr<asio::ssl::context> make_client_tls_context(const tls_settings& settings);

// A handshake failure in words a user can act on.
std::string describe_tls_failure(const boost::system::error_code& ec);

}  // namespace comet
