// Internal: the host's end of one stream, the detail::stream_sink a
// stream handler's stream_writer writes to. It lives on its connection's
// strand beside the handler, turning each write into an item frame of the
// connection's host_session while the reader has credit and the write
// buffer has room, and parking the handler otherwise. host_stream.cpp also
// holds the connection's stream and subscription driving.
#pragma once

#include <comet/stream.hpp>

#include "deadline_timer.hpp"
#include "host_session.hpp"

#include <boost/asio/steady_timer.hpp>

#include <chrono>

namespace comet {

class host_connection;

class host_stream final : public detail::stream_sink {
 public:
  // `connection` outlives the stream: the handler's completion holds it.
  // `handler_timeout` (zero: none) bounds the handler's time between writes.
  host_stream(host_connection& connection, host_session::handle h,
              std::chrono::milliseconds handler_timeout);

  // Queues `item` as an item frame. Completes at once while the stream has
  // credit and the write buffer is below write_buffer_limit; else when
  // credit arrives or a write completes. Throws comet::error(cancelled)
  // once the stream ended (end()) or the handler's coroutine was
  // cancelled. Cancellation: terminal (the host emits it with end()).
  // Outlives: this sink (the handler's coroutine holds it).
  asio::awaitable<void> write(json::value item) override;
  bool ended() const noexcept override { return ended_; }

  // The stream ended from the other side (the reader's cancel, the drain,
  // a timeout, the connection closing): a waiting write wakes and throws,
  // and so does every write after it.
  void end() noexcept;
  // Credit arrived, or room in the write buffer: a waiting write looks again.
  void wake() noexcept;

 private:
  [[noreturn]] void throw_ended() const;

  host_connection& connection_;
  host_session::handle h_;
  std::chrono::milliseconds timeout_;
  asio::steady_timer wait_;  // a parked write waits here; wake() and end() cancel it
  deadline_timer deadline_;  // the handler's own time since its last write
  bool ended_ = false;
};

}  // namespace comet
