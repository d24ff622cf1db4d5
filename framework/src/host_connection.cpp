// Serving one connection: buffered reads that answer every complete frame
// already received, untagged requests answered in order, tagged ones
// ("request-id" on a keep-alive connection) run concurrently and answered in
// completion order, and responses gathered into as few writes as possible.
#include "host_impl.hpp"

#include <comet/log.hpp>

#include "spawn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstring>

namespace comet {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;

}  // namespace

host_connection::host_connection(tcp::socket socket, asio::any_io_executor strand,
                                 std::shared_ptr<host::impl> host)
    : stream_(std::move(socket), host->tls.get()),
      strand_(std::move(strand)),
      host_(std::move(host)),
      decoder_(host_->options.max_content_length),
      max_in_flight_(std::max<std::size_t>(1, host_->options.max_in_flight)),
      wake_(strand_, asio::steady_timer::time_point::max()),
      idle_watch_(strand_),
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
    asio::dispatch(strand_, [self = shared_from_this()] { self->watch_idle(); });
}

// One timer per connection, checked every idle_timeout/2 instead of re-armed
// on every read: the hot path only stores a timestamp.
void host_connection::watch_idle() {
  const auto timeout = host_->options.idle_timeout;
  idle_watch_.expires_after(timeout / 2);
  idle_watch_.async_wait([self = shared_from_this(), timeout](boost::system::error_code ec) {
    if (ec || self->closed_) return;
    const bool handling = self->busy_ || self->in_flight_ > 0;
    if (!handling && std::chrono::steady_clock::now() - self->last_progress_ >= timeout) {
      const bool stalled_write = self->writing_;
      log(log_level::info, "host: " + self->peer_.to_string() +
                               (stalled_write ? " has not read its answers"
                                              : self->in_end_ != self->in_start_
                                                    ? " stalled in the middle of a frame"
                                                    : " was idle") +
                               " for " + std::to_string(timeout.count()) + " ms; disconnecting");
      self->close_now();
      return;
    }
    self->watch_idle();
  });
}

bool host_connection::idle() const noexcept {
  return !busy_ && in_flight_ == 0 && !writing_ && out_pending_.empty();
}

void host_connection::close_gracefully() {
  stop_reading_ = true;
  if (idle()) close_now();
  else
    wake();
}

void host_connection::close_now() {
  if (closed_) return;
  closed_ = true;
  stream_.close();
  wake();
  idle_watch_.cancel();
  host_->forget(*this);
}

void host_connection::wake() { wake_.cancel(); }

asio::awaitable<void> host_connection::wait_for_wake() {
  wake_.expires_at(asio::steady_timer::time_point::max());
  co_await wake_.async_wait(use_tuple);
}

asio::awaitable<void> host_connection::read_loop() {
  const std::size_t high_water = host_->options.write_buffer_limit;
  if (stream_.secure() && !co_await handshake()) co_return close_now();
  in_.resize(read_chunk);

  while (!closed_) {
    if (!co_await answer_buffered()) break;
    flush();
    if (host_->stopping) break;

    // Backpressure: a peer that does not read its answers is not read from
    // either, and tagged requests wait for a free slot.
    while (!closed_ && (out_pending_.size() + out_writing_.size() > high_water ||
                        in_flight_ >= max_in_flight_))
      co_await wait_for_wake();
    if (closed_ || stop_reading_) break;

    if (in_start_ == in_end_) {
      in_start_ = in_end_ = 0;
    } else if (in_start_ > 0 && in_.size() - in_end_ < read_chunk / 2) {
      std::memmove(in_.data(), in_.data() + in_start_, in_end_ - in_start_);
      in_end_ -= in_start_;
      in_start_ = 0;
    }
    const std::size_t needed = in_start_ + decoder_.bytes_needed();
    if (in_.size() < needed || in_.size() - in_end_ < read_chunk / 4)
      in_.resize(std::max({needed, in_end_ + read_chunk, std::min(2 * in_.size(), needed + read_chunk)}));

    auto [ec, n] =
        co_await stream_.async_read_some(asio::buffer(in_.data() + in_end_, in_.size() - in_end_),
                                         use_tuple);
    if (ec) {
      if (in_end_ != in_start_ && !closed_ && ec != asio::error::operation_aborted)
        log(log_level::warn, "host: " + peer_.to_string() + " closed the connection mid-frame (" +
                                 ec.message() + "); dropping " +
                                 std::to_string(in_end_ - in_start_) + " bytes");
      break;
    }
    in_end_ += n;
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
    const auto status = decoder_.decode({in_.data() + in_start_, in_end_ - in_start_});
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
              arrived_);
        decoder_.reset();
        co_return false;
      case frame_decoder::status::complete: break;
    }

    const auto request_id = decoder_.header().request_id;
    const bool keep_alive = decoder_.header().keep_alive && !host_->stopping && !stop_reading_;
    auto request = host_->prepare(decoder_.header(), decoder_.content(), admitted_);
    in_start_ += decoder_.frame_size();
    decoder_.reset();

    if (auto* refused = std::get_if<encoded_response>(&request)) {
      const bool unauthorized = refused->error == errc::unauthorized;
      if (unauthorized)
        log(log_level::warn, "host: refused " + peer_.to_string() + ": " + refused->content);
      queue(request_id, keep_alive && !unauthorized, *refused, arrived_);
      if (!keep_alive || unauthorized) co_return false;
      continue;
    }
    auto& message = std::get<request_message>(request);

    // Plain-function handlers answer here and now, tagged or not.
    if (auto now = host_->run_now(message, request_id, peer_)) {
      queue(request_id, keep_alive, *now, arrived_);
      if (!keep_alive) co_return false;
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
      asio::co_spawn(
          host_->executor, host_->run(std::move(message), request_id, peer_),
          asio::bind_executor(strand_, [self = shared_from_this(), request_id, arrived = arrived_](
                                           std::exception_ptr failure, encoded_response response) {
            --self->in_flight_;
            if (failure) response = error_response(errc::handler_failed, "internal error");
            self->queue(request_id, true, response, arrived);
            self->flush();
            self->wake();
          }));
      continue;
    }

    busy_ = true;
    const encoded_response response =
        co_await host_->run(std::move(message), request_id, peer_);
    busy_ = false;
    queue(request_id, keep_alive, response, arrived_);
    if (!keep_alive) co_return false;
  }
}

void host_connection::queue(std::optional<std::uint64_t> request_id, bool keep_alive,
                            const encoded_response& response,
                            std::chrono::steady_clock::time_point arrived) {
  if (closed_ || write_failed_) return;  // the peer is gone: nothing is answered
  // One response in eight has its latency measured.
  std::optional<std::chrono::nanoseconds> latency;
  if ((++responses_ & 7) == 1) latency = std::chrono::steady_clock::now() - arrived;
  host_->metrics.response(response.error, latency);
  frame_header h;
  h.keep_alive = keep_alive;
  h.request_id = request_id;
  append_frame(out_pending_, h, response.content);
}

void host_connection::flush() {
  if (writing_ || out_pending_.empty() || closed_ || write_failed_) return;
  writing_ = true;
  std::swap(out_pending_, out_writing_);
  stream_.async_write(asio::buffer(out_writing_),
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                      self->writing_ = false;
                      self->host_->metrics.sent(n);
                      self->last_progress_ = std::chrono::steady_clock::now();
                      self->out_writing_.clear();
                      if (ec) {
                        if (!self->closed_)
                          log(log_level::warn, "host: cannot answer " + self->peer_.to_string() +
                                                   ": " + ec.message());
                        self->write_failed_ = true;
                        self->out_pending_.clear();
                        self->close_now();
                        return;
                      }
                      self->flush();
                      self->wake();
                    });
}

}  // namespace comet
