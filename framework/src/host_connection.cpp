// Serving one connection: buffered reads that answer every complete frame
// already received, untagged requests answered in order, tagged ones
// ("request-id" on a keep-alive connection) run concurrently and answered in
// completion order, and responses gathered into as few writes as possible.
#include "host_impl.hpp"

#include <comet/log.hpp>

#include "spawn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <sys/socket.h>

namespace comet {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

}  // namespace

host_connection::host_connection(tcp::socket socket, asio::any_io_executor strand,
                                 std::shared_ptr<host::impl> host)
    : stream_(std::move(socket), host->tls.get()),
      strand_(std::move(strand)),
      host_(std::move(host)),
      decoder_(host_->options.max_content_length),
      max_in_flight_(std::max<std::size_t>(1, host_->options.max_in_flight)),
      wake_(strand_, asio::steady_timer::time_point::max()),
      idle_deadline_(strand_, [this] { on_idle_deadline(); }),
      last_progress_(std::chrono::steady_clock::now()),
      arrived_(last_progress_) {
  boost::system::error_code ec;
  const auto remote = stream_.socket().remote_endpoint(ec);
  if (!ec) {
    peer_ = endpoint{remote.address().to_string(), remote.port()};
    admitted_ = host_->allowed.admits(remote.address());
  }
}

// Normally forgotten when it closes; this covers an io_context destroyed
// with the connection still open.
host_connection::~host_connection() { host_->unlist(*this); }

void host_connection::start() {
  asio::co_spawn(strand_, [self = shared_from_this()] { return self->read_loop(); },
                 detail::log_failure("host connection"));
  if (host_->options.idle_timeout.count() > 0)
    asio::dispatch(strand_, [self = shared_from_this()] {
      // A no-op once the connection closed (close_now() stops the timer).
      self->idle_deadline_.expires_after(self->host_->options.idle_timeout);
    });
}

// The idle deadline is last_progress_ + idle_timeout; reads and writes only
// store last_progress_, and the timer re-arms itself when it fires early.
void host_connection::on_idle_deadline() {
  if (closed_) return;
  const auto timeout = host_->options.idle_timeout;
  const auto now = std::chrono::steady_clock::now();
  const bool handling = busy_ || in_flight_ > 0;
  if (handling || now - last_progress_ < timeout) {
    idle_deadline_.expires_at(std::max(last_progress_ + timeout, now + timeout / 2));
    return;
  }
  log(log_level::info, "host: " + peer_.to_string() +
                           (out_.writing() ? " has not read its answers"
                            : !in_.empty() ? " stalled in the middle of a frame"
                                           : " was idle") +
                           " for " + std::to_string(timeout.count()) + " ms; disconnecting");
  close_now();
}

bool host_connection::idle() const noexcept { return !busy_ && in_flight_ == 0 && out_.idle(); }

asio::any_io_executor host_connection::handler_executor() const {
  return host_->single_threaded ? host_->executor
                                : asio::any_io_executor(asio::make_strand(host_->executor));
}

void host_connection::close_gracefully() {
  stop_reading_ = true;
  close_if_drained();
  wake();
}

// A stopping connection closes as soon as its last answer is written: its
// read loop may be waiting on a peer that, answered, sends nothing more.
// Requests the peer wrote before it learnt of the stop are read and
// answered (shutting_down) rather than lost with the connection.
void host_connection::close_if_drained() {
  if (!draining() || !idle()) return;
  if (reading_) {
    // The read may hold bytes it has not delivered yet: it is cancelled,
    // not closed under it, and the read loop answers what it got, then closes.
    if (!peer_has_written()) {
      boost::system::error_code ignored;
      stream_.socket().cancel(ignored);
    }
    return;
  }
  if (peer_has_written()) return wake();  // the read loop takes them first
  close_now();
}

bool host_connection::draining() const noexcept { return stop_reading_ || host_->stopping; }

// Bytes already received and not yet read (for TLS, encrypted ones).
bool host_connection::peer_has_written() {
  boost::system::error_code ec;
  return !closed_ && stream_.socket().available(ec) > 0 && !ec;
}

void host_connection::close_now() {
  if (closed_) return;
  closed_ = true;
  stream_.close();
  idle_deadline_.stop();
  wake();
  for (auto& signal : handler_signals_) signal.emit(asio::cancellation_type::terminal);
  host_->forget(*this);
}

void host_connection::wake() { wake_.cancel(); }

void host_connection::peer_gone() {
  log(log_level::info, "host: " + peer_.to_string() + " went away with " +
                           std::to_string(in_flight_ + (busy_ ? 1 : 0)) +
                           " request(s) in flight; cancelling their handlers");
  close_now();
}

// While an untagged request's handler runs the connection does not read
// (requests are answered in order); this notices meanwhile that the peer
// closed, so that the handler is cancelled rather than left to run for
// nobody. Readable data (a pipelined request) is left for the read loop.
void host_connection::watch_peer() {
  stream_.socket().async_wait(
      tcp::socket::wait_read,
      [self = shared_from_this(), generation = watch_generation_](boost::system::error_code ec) {
        if (ec || self->closed_ || generation != self->watch_generation_) return;
        char byte;
        const auto n = ::recv(self->stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
          return self->peer_gone();
        if (n < 0) self->watch_peer();
      });
}

asio::awaitable<void> host_connection::wait_for_wake() {
  wake_.expires_at(asio::steady_timer::time_point::max());
  co_await wake_.async_wait(use_tuple);
}

asio::awaitable<void> host_connection::read_loop() {
  const std::size_t high_water = host_->options.write_buffer_limit;
  if (stream_.secure() && !co_await handshake()) co_return close_now();

  while (!closed_) {
    if (!co_await answer_buffered()) break;
    flush();
    // A stopping connection reads only what has already arrived.
    if (draining() && !peer_has_written()) break;

    // Backpressure: a peer that does not read its answers is not read from
    // either, and tagged requests wait for a free slot.
    while (!closed_ && (out_.buffered() > high_water || in_flight_ >= max_in_flight_))
      co_await wait_for_wake();
    if (closed_) break;

    auto [room, size] = in_.prepare(decoder_.bytes_needed());
    reading_ = true;
    auto [ec, n] = co_await stream_.async_read_some(asio::buffer(room, size), use_tuple);
    reading_ = false;
    if (ec) {
      if (!in_.empty() && !closed_ && ec != asio::error::operation_aborted)
        log(log_level::warn, "host: " + peer_.to_string() + " closed the connection mid-frame (" +
                                 ec.message() + "); dropping " + std::to_string(in_.size()) +
                                 " bytes");
      // Nobody is left to answer: the handlers still running are cancelled,
      // and with them the sends they await.
      if (!closed_ && in_flight_ > 0) peer_gone();
      break;
    }
    in_.commit(n);
    arrived_ = last_progress_ = std::chrono::steady_clock::now();
    host_->metrics.received(n);
  }

  // Answer what is in flight, then close.
  while (!closed_ && !idle()) {
    flush();
    co_await wait_for_wake();
  }
  close_now();
}

asio::awaitable<bool> host_connection::handshake() {
  auto [ec] = co_await stream_.tls().async_handshake(asio::ssl::stream_base::server, use_tuple);
  if (!ec) {
    last_progress_ = std::chrono::steady_clock::now();
    if (SSL_session_reused(stream_.tls().native_handle())) host_->metrics.tls_resumed();
    co_return true;
  }
  if (!closed_) {
    host_->metrics.tls_failed();
    log(log_level::warn, "host: TLS handshake with " + peer_.to_string() +
                             " failed: " + describe_tls_failure(ec) + "; closing");
  }
  co_return false;
}

asio::awaitable<bool> host_connection::answer_buffered() {
  for (;;) {
    const auto status = decoder_.decode(in_.data());
    switch (status) {
      case frame_decoder::status::need_more: co_return true;
      case frame_decoder::status::malformed:
        log(log_level::warn, "host: malformed frame from " + peer_.to_string() + ": " +
                                 decoder_.error() + "; closing the connection");
        co_return false;  // answers to the frames before it still go out
      case frame_decoder::status::too_large:
        log(log_level::warn, "host: " + peer_.to_string() + ": " + decoder_.error() +
                                 "; answering too_large and closing");
        queue(decoder_.header().request_id, false, error_response(errc::too_large, decoder_.error()),
              arrived_, {});
        decoder_.reset();
        co_return false;
      case frame_decoder::status::complete: break;
    }

    const auto request_id = decoder_.header().request_id;
    const bool stopping = draining();
    const bool keep_alive = decoder_.header().keep_alive && !stopping;
    // A keep-alive peer may have written more requests behind this one:
    // while stopping, those already read are answered too (shutting_down),
    // each answer saying the connection closes, rather than dropped.
    const bool answer_rest = decoder_.header().keep_alive && stopping;
    auto request = host_->prepare(decoder_.header(), decoder_.content(), admitted_);
    in_.consume(decoder_.frame_size());
    decoder_.reset();

    if (auto* refused = std::get_if<encoded_response>(&request)) {
      const bool unauthorized = refused->error == errc::unauthorized;
      if (unauthorized)
        log(log_level::warn, "host: refused " + peer_.to_string() + ": " + refused->content);
      queue(request_id, keep_alive && !unauthorized, *refused, arrived_, {});
      if ((!keep_alive && !answer_rest) || unauthorized) co_return false;
      continue;
    }
    auto& message = std::get<request_message>(request);

    // Plain-function handlers answer here and now, tagged or not.
    if (auto now = host_->run_now(message, request_id, peer_, strand_)) {
      queue(request_id, keep_alive, *now, arrived_, message.action);
      if (!keep_alive && !answer_rest) co_return false;
      continue;
    }

    if (request_id && keep_alive) {
      // Multiplexed: runs beside the others, on any thread of the host's
      // executor; its answer comes back to this strand. Past the bound,
      // wait for a slot (reading stops meanwhile).
      while (in_flight_ >= max_in_flight_ && !closed_) {
        flush();
        co_await wait_for_wake();
      }
      if (closed_) co_return false;
      ++in_flight_;
      auto signal = handler_signals_.emplace(handler_signals_.end());
      // Kept for the debug line only (the message moves into the handler).
      std::string action = log_enabled(log_level::debug) ? message.action : std::string();
      asio::co_spawn(
          handler_executor(), host_->run(std::move(message), request_id, peer_, strand_),
          asio::bind_cancellation_slot(
              signal->slot(),
              asio::bind_executor(strand_, [self = shared_from_this(), request_id, signal,
                                            arrived = arrived_, action = std::move(action)](
                                               std::exception_ptr failure, encoded_response response) {
                self->handler_signals_.erase(signal);
                --self->in_flight_;
                if (failure) response = error_response(errc::handler_failed, "internal error");
                self->queue(request_id, !self->draining(), response, arrived, action);
                self->flush();
                self->wake();
                self->close_if_drained();
              })));
      continue;
    }

    busy_ = true;
    watch_peer();
    std::string action = log_enabled(log_level::debug) ? message.action : std::string();
    // Spawned with a signal of this connection's, so that close_now() can
    // cancel it; it runs on this strand meanwhile.
    auto signal = handler_signals_.emplace(handler_signals_.end());
    auto [failure, response] = co_await asio::co_spawn(
        strand_, host_->run(std::move(message), request_id, peer_, strand_),
        asio::bind_cancellation_slot(signal->slot(), use_tuple));
    handler_signals_.erase(signal);
    busy_ = false;
    ++watch_generation_;
    if (closed_) co_return false;
    if (failure) response = error_response(errc::handler_failed, "internal error");
    // A stop that began while the handler ran: this answer says so.
    queue(request_id, keep_alive && !draining(), response, arrived_, action);
    if (!keep_alive && !answer_rest) co_return false;
  }
}

void host_connection::queue(std::optional<std::uint64_t> request_id, bool keep_alive,
                            const encoded_response& response,
                            std::chrono::steady_clock::time_point arrived, std::string_view action) {
  if (closed_ || write_failed_) return;  // the peer is gone: nothing is answered
  // One response in eight has its latency measured.
  std::optional<std::chrono::nanoseconds> latency;
  if ((++responses_ & 7) == 1) latency = std::chrono::steady_clock::now() - arrived;
  if (log_enabled(log_level::debug)) log_answer(action, response, arrived);
  host_->metrics.response(response.error, latency);
  frame_header h;
  h.keep_alive = keep_alive;
  h.request_id = request_id;
  append_frame(out_.pending(), h, response.content);
}

// One line per request at debug: who, which action, what was answered, how
// long it took from the request's arrival.
void host_connection::log_answer(std::string_view action, const encoded_response& response,
                                 std::chrono::steady_clock::time_point arrived) const {
  const auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - arrived);
  char duration[32];
  std::snprintf(duration, sizeof duration, "%.3f ms", took.count());
  std::string line = "host: " + peer_.to_string() + " action '";
  line += action.empty() ? std::string_view("(not read)") : action;
  line += "': ";
  line += response.error ? wire_name(*response.error) : std::string_view("answered");
  line += " in ";
  line += duration;
  log(log_level::debug, line);
}

void host_connection::flush() {
  if (closed_ || write_failed_) return;
  const auto bytes = out_.begin();
  if (bytes.empty()) return;
  stream_.async_write(asio::buffer(bytes.data(), bytes.size()),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                        self->out_.done();
                        self->host_->metrics.sent(n);
                        self->last_progress_ = std::chrono::steady_clock::now();
                        if (ec) {
                          if (!self->closed_)
                            log(log_level::warn, "host: cannot answer " + self->peer_.to_string() +
                                                     ": " + ec.message());
                          self->write_failed_ = true;
                          self->out_.discard();
                          self->close_now();
                          return;
                        }
                        self->flush();
                        self->wake();
                        self->close_if_drained();
                      });
}

}  // namespace comet
