// Internal: what a client knows about its peer, shared by the one-shot
// exchange (client.cpp) and the keep-alive pool (client_pool.cpp).
#pragma once

#include <comet/client.hpp>
#include <comet/codec.hpp>
#include <comet/errors.hpp>

#include "transport.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <limits>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace comet {

using tcp = asio::ip::tcp;

// The peer and the options, with the wording of every transport error.
struct peer_info {
  endpoint peer;
  client_options options;
  tcp::endpoint target;
  std::shared_ptr<asio::ssl::context> tls;  // null: plain TCP
  std::shared_ptr<tls_session_cache> sessions;  // with tls

  std::string describe() const;  // "Telegram at 127.0.0.4:65432"
  error offline(const boost::system::error_code& ec) const;
  error connect_timed_out() const;
  error timed_out() const;
  error tls_failed(const boost::system::error_code& ec) const;
  // The client's TLS handshake on a connected `t`: checks the certificate
  // names the peer's address, offers the last session to resume.
  asio::awaitable<boost::system::error_code> handshake(transport& t) const;
  error tls_timed_out() const;
  error lost(const boost::system::error_code& ec, std::string_view doing) const;
  // Whether a failed connect is worth another try (refused, attempts left),
  // and how long to wait first: 50 ms, doubling.
  bool retry_connect(const boost::system::error_code& ec, std::size_t attempt) const;
  static std::chrono::milliseconds retry_delay(std::size_t attempt);
  // The result of a response frame, or the error it reports (thrown).
  json::value result_of(const frame_header& header, std::string_view content) const;
};

class peer_pool;

struct client::impl {
  // `single_threaded`: the executor's context is run by one thread.
  impl(asio::any_io_executor ex, bool single_threaded, std::shared_ptr<const peer_info> peer);
  ~impl();

  asio::any_io_executor executor;
  std::shared_ptr<const peer_info> info;
  std::shared_ptr<peer_pool> pool;  // with keep_alive only

  // One request on a connection of its own (COMET's way).
  static asio::awaitable<json::value> exchange(std::shared_ptr<const peer_info> info,
                                               std::string frame);
};

// Keep-alive connections to one peer, shared by concurrent sends and
// multiplexed with request ids. Everything runs on one strand.
class peer_pool : public std::enable_shared_from_this<peer_pool> {
 public:
  // `serial` runs everything of the pool one handler at a time: a strand,
  // or the executor of a context that only one thread runs.
  peer_pool(asio::any_io_executor serial, bool serial_is_own_thread,
            std::shared_ptr<const peer_info> info);

  // Runs on the serial executor (co_spawn it there, unless inline_ok()).
  asio::awaitable<json::value> send(std::string action, json::value value);
  // Closes every connection; pending sends fail.
  void shutdown();

  const asio::any_io_executor& strand() const noexcept { return strand_; }
  // True when the calling thread is the single thread of the serial
  // executor: send() may then run in the caller's coroutine, with no hop.
  bool inline_ok() const noexcept;

 private:
  friend class pooled_connection;
  struct pending_request;
  struct batch_guard;
  class pooled_connection;
  enum class keep_alive_support { unknown, yes, no };

  pooled_connection* pick();
  void remove(pooled_connection& conn);
  void notify_slot();
  void watch_deadlines();

  asio::any_io_executor strand_;
  bool own_thread_;
  std::shared_ptr<const peer_info> info_;
  // Not owned: a connection is owned by its own coroutine and handlers, and
  // it holds the pool; owning it here too would make a cycle that outlives
  // an io_context stopped with connections open. A connection leaves the
  // list when it closes or is destroyed.
  std::vector<pooled_connection*> connections_;
  // The listed connections, held for a loop that may close some.
  std::vector<std::shared_ptr<pooled_connection>> live();
  std::list<asio::steady_timer*> slot_waiters_;
  keep_alive_support support_ = keep_alive_support::unknown;
  std::uint64_t next_id_ = 1;
  bool shut_down_ = false;
  std::string encoding_;  // request content being encoded (see send)
  // The smallest request content the peer refused as too_large: requests
  // at least this large are sent on a connection of their own.
  std::size_t refused_size_ = std::numeric_limits<std::size_t>::max();
  // The connection handling the answers of a read right now, if any, and
  // when that read completed.
  pooled_connection* answering_ = nullptr;
  std::chrono::steady_clock::time_point answers_read_at_;
  asio::steady_timer sweeper_;
  bool sweeping_ = false;
};

}  // namespace comet
