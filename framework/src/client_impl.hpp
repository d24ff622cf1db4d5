// Internal: a client's shared state. client.cpp holds the public API and the
// one-shot exchange; client_pool.cpp the keep-alive pool; both connect
// through the peer layer (peer.hpp).
#pragma once

#include <comet/client.hpp>

#include "multiplexer.hpp"
#include "peer.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <list>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

namespace comet {

// The sends of one client in flight (awaited and posted), so that close()
// can cancel them and async_close() can wait for them.
class send_tracker {
 public:
  // Something close() can cancel from outside: a one-shot exchange.
  struct cancellable {
    virtual void cancel_for_close() = 0;  // called on the cancellable's own executor
    virtual const asio::any_io_executor& executor() const = 0;

   protected:
    ~cancellable() = default;
  };

  // A send begins; false (nothing begun) when the client is closed.
  bool begin() noexcept;
  void end() noexcept;
  bool closed() const noexcept { return closed_.load(std::memory_order_acquire); }
  void track(const std::shared_ptr<cancellable>& c);
  void untrack(const cancellable* c);

  // No new sends; cancels the tracked ones.
  void close_now();
  // No new sends.
  void refuse_new() noexcept { closed_.store(true, std::memory_order_release); }
  // Calls `done` (through `ex`) once no send is in flight.
  void when_idle(asio::any_io_executor ex, asio::any_completion_handler<void()> done);

 private:
  void notify();
  std::atomic<std::size_t> active_{0};
  std::atomic<bool> closed_{false};
  std::mutex mutex_;
  std::list<std::weak_ptr<cancellable>> tracked_;
  std::vector<std::pair<asio::any_io_executor, asio::any_completion_handler<void()>>> waiters_;
};

// One request on a connection of its own (COMET's way), bounded by
// `timeout` (connect included). Runs on a strand of its own; completes with
// the answer's result or throws comet::error. Cancellation: the calling
// coroutine's (terminal, partial) closes the connection at once (cancelled).
asio::awaitable<json::value> one_shot_exchange(std::shared_ptr<const peer_info> info,
                                               send_tracker& tracker, std::string frame,
                                               std::chrono::milliseconds timeout);

class peer_pool;

struct client::impl {
  // `single_threaded`: the executor's context is run by one thread.
  impl(asio::any_io_executor ex, bool single_threaded, std::shared_ptr<const peer_info> peer);
  ~impl();

  asio::any_io_executor executor;
  std::shared_ptr<const peer_info> info;
  send_tracker tracker;
  std::shared_ptr<peer_pool> pool;  // with keep_alive only

  std::chrono::milliseconds timeout_of(const send_options& o) const noexcept;

  // client::send; `counted`: the send was counted by the tracker already (a post).
  static asio::awaitable<json::value> send(std::shared_ptr<impl> self, std::string action,
                                           json::value value, send_options options, bool counted);
};

// Keep-alive connections to one peer, shared by concurrent sends and
// multiplexed with request ids. Everything runs on one serial executor.
class peer_pool : public std::enable_shared_from_this<peer_pool> {
 public:
  // `serial` runs everything of the pool one handler at a time: a strand,
  // or the executor of a context that only one thread runs.
  peer_pool(asio::any_io_executor serial, bool serial_is_own_thread,
            std::shared_ptr<const peer_info> info, send_tracker& tracker);
  ~peer_pool();

  // Runs on the serial executor (co_spawn it there, `spawned`, unless
  // inline_ok()). Completes with the answer's result, or throws comet::error.
  // Cancellation (terminal, partial): the send completes at once
  // (cancelled). A request not yet written is dropped from the queue; a
  // written one is cancelled on the wire (a cancel frame) when the
  // connection agreed "cancel", else its late answer is read and dropped.
  // Total: honoured only while none of the request was written.
  asio::awaitable<json::value> send(std::string action, json::value value,
                                    std::chrono::milliseconds timeout, bool spawned);
  // On the serial executor: every pending send fails with `why`, every
  // connection closes; later sends fail client_closed.
  void close(const error& why);

  const asio::any_io_executor& strand() const noexcept { return strand_; }
  // From any thread.
  client_stats stats() const noexcept {
    return {queued_now_.load(std::memory_order_relaxed),
            queued_total_.load(std::memory_order_relaxed),
            queue_wakeups_.load(std::memory_order_relaxed),
            connects_.load(std::memory_order_relaxed)};
  }
  // True when the calling thread is the single thread of the serial
  // executor: send() may then run in the caller's coroutine, with no hop.
  bool inline_ok() const noexcept;

 private:
  class connection;
  struct batch_guard;

  // A connection for a request of `content_size` bytes (may start one);
  // null when every one is full and no more may be opened.
  connection* pick(std::size_t content_size);
  void remove(connection& conn);
  // A send that found no room waits in `queued_`, first come first
  // served, with its deadline running. Room that frees up (an answer, a
  // connection gone) wakes the first waiter not yet woken, one per free
  // place: the cost of a completion does not grow with the queue.
  struct queued_send {
    asio::steady_timer* timer;
    bool woken = false;
  };
  std::size_t free_places() const;
  void wake_next_queued();
  void wake_all_queued();

  // A peer whose connect failed after its retries is down: sends fail at
  // once (the queued ones too) until a backoff with jitter has passed;
  // then the next send makes one connect attempt for all. Checked lazily
  // by sends (no timer). Until a connection of the pool has connected,
  // one connects at a time.
  void mark_down(const error& why);
  void mark_up();
  // The failure a send meets now, if the peer is down.
  std::optional<error> down_failure() const;
  bool opening_blocked() const noexcept;
  // Keeps the deadline timer at the earliest pending deadline (or off).
  void watch_deadlines(pooled_request::time_point deadline);
  // Turns the deadline timer off when no caller waits any more.
  void recheck_deadlines();
  void on_deadline();

  asio::any_io_executor strand_;
  bool own_thread_;
  std::shared_ptr<const peer_info> info_;
  send_tracker& tracker_;
  std::vector<std::shared_ptr<connection>> connections_;
  std::list<queued_send> queued_;
  std::size_t woken_ = 0;  // queued sends woken that have not run yet
  bool up_ = false;         // a connection connected since the start or the last down
  std::optional<error> down_why_;
  std::chrono::steady_clock::time_point down_until_{};
  std::chrono::milliseconds down_backoff_{0};
  std::minstd_rand jitter_{std::random_device{}()};
  std::atomic<std::size_t> queued_now_{0};
  std::atomic<std::uint64_t> queued_total_{0};
  std::atomic<std::uint64_t> queue_wakeups_{0};
  std::atomic<std::uint64_t> connects_{0};
  peer_knowledge knowledge_;
  std::uint64_t next_id_ = 1;
  bool closed_ = false;
  std::optional<error> closed_why_;
  std::string encoding_;  // request content being encoded (see send)
  // The connection handling the answers of a read right now, if any, and
  // when that read completed.
  connection* answering_ = nullptr;
  std::chrono::steady_clock::time_point answers_read_at_;
  deadline_timer deadlines_;
};

}  // namespace comet
