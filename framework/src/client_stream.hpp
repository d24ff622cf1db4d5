// Internal: the client's end of one stream or subscription
// (detail::stream_channel), over a connection of a peer_pool: the
// multiplexer lists it while open (multiplexer.hpp, pooled_stream) and
// reports the host's frames; this holds the items the reader has not taken
// yet and grants the host credit as the reader takes them.
//
// All its state lives on the pool's serial executor; the stream_channel
// members may be called from any thread and post to it. client::open_channel
// and client::subscribe_channel (client_stream.cpp) make one.
//
// Credit: the host may send `stream_credit` items ahead of the reader at
// first. Each item taken frees a place; the places go back to the host in
// one credit frame once half of them are free, as many as keep the items
// buffered and in flight within `stream_credit` items and, at the average
// size seen so far, `stream_credit_bytes`. A reader that stops reading
// grants nothing more, so the host stops within that window.
#pragma once

#include "client_impl.hpp"

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <deque>

namespace comet {

class client_stream final : public detail::stream_channel,
                            public pooled_stream,
                            public std::enable_shared_from_this<client_stream> {
 public:
  struct request {
    stream_part kind = stream_part::open;  // open or subscribe
    std::string name;                      // the action, or the topic
    std::string content;                   // its encoded {"action", "value"}
    bool resubscribe = false;
    std::chrono::milliseconds timeout{0};  // the open's (and for a stream, the first item's)
    std::string traceparent;               // the opening request's: valid, or empty
  };

  client_stream(std::shared_ptr<client::impl> client, std::shared_ptr<peer_pool> pool,
                request r);
  ~client_stream() override;

  // Opens it and completes once the host's begin arrived. Runs on the
  // pool's executor, in a coroutine whose cancellation state lets partial
  // and total through. Throws comet::error: the host's refusal, unsupported,
  // the pool's errors (peer_offline...), request_timeout at the open's
  // deadline, or cancelled (any type). It is closed then. Outlives: this
  // (its caller holds it).
  asio::awaitable<void> open();

  // detail::stream_channel. next(): completes when an item is there or the
  // stream ended; cancellation terminal (ends the stream, as close()),
  // partial and total (end only this wait); the caller's state must let
  // them through. Outlives: the channel (the reader holds it).
  asio::awaitable<std::optional<detail::stream_item>> next() override;
  std::optional<detail::stream_item> next_sync() override;
  void close() noexcept override;
  std::uint64_t dropped() const noexcept override { return dropped_.load(std::memory_order_relaxed); }
  const asio::any_io_executor& executor() const noexcept override;
  std::string describe() const override;

 private:
  enum class phase { attaching, opening, open, ended };
  struct buffered {
    detail::stream_item item;
    std::size_t bytes;
  };

  // pooled_stream: the multiplexer's reports, on the pool's executor.
  void stream_begun(std::optional<std::uint64_t> sequence) override;
  void stream_item(std::optional<std::uint64_t> sequence, json::value value,
                   std::size_t bytes) override;
  void stream_ended(std::optional<error> failure) override;
  void stream_replay(const error& why) override;

  // next() on the pool's executor; `early`: the caller was cancelled already.
  // Counts what was lost before `sequence`, which follows the last seen by
  // `step` (1 for an item, 0 for a begin) when nothing was lost.
  void count_gap(std::uint64_t sequence, std::uint64_t step);
  asio::awaitable<std::optional<detail::stream_item>> next_here(asio::cancellation_type early);
  // Lists it on a connection and queues its opening request, within
  // deadline_ (peer_pool::open_stream). Cancellation: the caller's.
  asio::awaitable<void> attach();
  // Attaches again in the background after `delay` (a replay, or a
  // resubscribe), ending it with the error if that fails for good.
  void attach_later(std::chrono::milliseconds delay);
  void attach_failed(const error& e);
  // The wait before the next attempt to subscribe again: 0, 100 ms, doubling.
  std::chrono::milliseconds next_backoff() noexcept;
  // Whether a subscription subscribes again after `e`.
  bool resubscribes_after(const error& e) const noexcept;
  // Ends it for good (nullopt: cleanly); wakes the waiter.
  void end(std::optional<error> why);
  void close_here();
  // Tells the client's observer it opened (null) or ended (`ended`: the
  // code, errc{} for a clean end).
  void observe(const errc* ended) const;
  // Grants the host the places the reader freed (see the file comment).
  void grant_freed();
  void wake() { signal_.cancel(); }
  error timed_out() const;

  std::shared_ptr<client::impl> client_;
  std::shared_ptr<peer_pool> pool_;
  request request_;
  std::uint64_t window_;        // stream_credit, at least 1
  std::uint64_t window_bytes_;  // stream_credit_bytes, at least 1
  // A waiting open() or next() waits on it, until the deadline (or
  // forever); wake() cancels the wait. No wait is pending otherwise.
  asio::steady_timer signal_;
  asio::steady_timer backoff_;  // before attaching again
  asio::cancellation_signal attach_cancel_;  // ends a background attach
  bool attaching_ = false;                   // one runs
  std::chrono::steady_clock::time_point deadline_;  // open, and a stream's first item
  phase phase_ = phase::attaching;
  bool listed_ = false;   // on a connection (pooled_stream::where)
  bool begun_ = false;    // the host began it once
  std::chrono::steady_clock::time_point opened_at_;  // its first begin
  bool got_item_ = false;
  bool closed_ = false;   // by the reader
  bool waiting_ = false;  // a next() waits
  std::deque<buffered> items_;
  std::size_t buffered_bytes_ = 0;
  std::uint64_t host_credit_ = 0;  // items the host may still send
  std::uint64_t items_seen_ = 0, bytes_seen_ = 0;
  std::optional<error> failure_;
  // The last sequence number seen (a begin's or an item's), once one was.
  std::optional<std::uint64_t> last_sequence_;
  int replays_ = 0;
  std::chrono::milliseconds backoff_delay_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<bool> close_requested_{false};
};

}  // namespace comet
