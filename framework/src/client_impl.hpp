// Internal: a client's shared state. client.cpp holds the public API and the
// one-shot exchange; client_pool.cpp the keep-alive pool; both connect
// through the peer layer (peer.hpp).
#pragma once

#include <comet/client.hpp>

#include "client_metrics.hpp"
#include "context_shutdown.hpp"
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
  std::size_t active() const noexcept { return active_.load(std::memory_order_relaxed); }
  // close() was called (not only async_close()): a send that starts now
  // would miss the cancellation close() gave the others, so it ends itself.
  bool closed_now() const noexcept { return closed_now_.load(std::memory_order_acquire); }
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
  std::atomic<bool> closed_now_{false};
  std::mutex mutex_;
  std::list<std::weak_ptr<cancellable>> tracked_;
  std::vector<std::pair<asio::any_io_executor, asio::any_completion_handler<void()>>> waiters_;
};

// What one send met, for its metrics and its observer: filled in by the
// layers it goes through (the last attempt's, for an endpoint list).
namespace detail {
// While a pool settles the answers of one read on this thread (resuming
// their sends inline): when that read completed. A send that starts or
// ends then takes it as its time: no clock read per send in a busy pool.
inline thread_local const std::chrono::steady_clock::time_point* answers_read_at = nullptr;
inline std::chrono::steady_clock::time_point answer_time_or_now() noexcept {
  return answers_read_at ? *answers_read_at : std::chrono::steady_clock::now();
}
}  // namespace detail

struct send_report {
  std::size_t request_bytes = 0;  // the request's content
  std::size_t answer_bytes = 0;   // the answer's content, once one came
  const client::impl* via = nullptr;  // the client of the endpoint it went to
};

// One request on a connection of its own (COMET's way), bounded by
// `timeout` (connect included). Runs on a strand of its own; completes with
// the answer's result or throws comet::error. Cancellation: the calling
// coroutine's (terminal, partial) closes the connection at once (cancelled).
// `report` (the caller's, may be null) gets the answer's size.
asio::awaitable<json::value> one_shot_exchange(std::shared_ptr<const peer_info> info,
                                               send_tracker& tracker, std::string frame,
                                               std::chrono::milliseconds timeout,
                                               send_report* report);

class peer_pool;
class endpoint_set;

// True when blocking this thread could starve the executor that must run
// the work: the thread is running the io_context behind `ex`.
bool runs_on_this_thread(const asio::any_io_executor& ex);

struct client::impl {
  // `single_threaded`: the executor's context is run by one thread.
  // `contexts`: with `single_threaded`, the executors of all the contexts
  // (one pool each); may be empty (one pool, on `ex`).
  impl(asio::any_io_executor ex, bool single_threaded, std::shared_ptr<const peer_info> peer,
       const std::vector<asio::any_io_executor>& contexts = {});
  // A client of an endpoint list: `peer` describes it (its first entry),
  // `set` sends.
  impl(asio::any_io_executor ex, bool single_threaded, std::shared_ptr<const peer_info> peer,
       std::vector<endpoint> entries, std::shared_ptr<endpoint_set> set);
  ~impl();

  asio::any_io_executor executor;
  bool single_threaded;
  std::shared_ptr<const peer_info> info;
  send_tracker tracker;
  std::shared_ptr<peer_pool> pool;  // with keep_alive only (never for an endpoint list)
  // A keep-alive client on contexts of one thread each (an io_pool's
  // context_per_thread): a pool per context, `pool` the first. A send
  // made on one of those threads goes through its own context's pool.
  std::vector<std::shared_ptr<peer_pool>> pools;
  // The pool of the context this thread runs, else the first.
  peer_pool& pool_here() const noexcept;
  // pool_here() when a send on this thread may run in the caller's
  // coroutine (peer_pool::inline_ok(), and no traceparent current); else null.
  peer_pool* inline_pool() const noexcept;
  // The pools' stats, summed.
  client_stats pool_stats() const noexcept;
  std::vector<endpoint> entries;     // client::endpoints()
  std::shared_ptr<endpoint_set> set;  // a client of an endpoint list
  // The client's counters (client::metrics()); null for an endpoint's
  // client inside a list, whose sends its list counts.
  std::shared_ptr<client_metrics> metrics;
  // An endpoint's client inside a list: the address it dials, and its
  // label slot in the list's metrics.
  std::optional<endpoint> dialled;
  std::uint32_t metrics_slot = 0;

  // The pool streams use: `pool` with keep_alive, else one kept for
  // streams, made by the first (client_stream.cpp). From any thread.
  std::shared_ptr<peer_pool> stream_pool();
  // Posts pool->close(why) for each pool made, on its executor.
  void close_pools(const error& why);

  std::chrono::milliseconds timeout_of(const send_options& o) const noexcept;

 private:
  std::mutex stream_pool_mutex_;
  std::shared_ptr<peer_pool> stream_pool_;  // without keep_alive, once a stream was opened
  bool pools_closed_ = false;               // under the mutex: no stream pool is made after
  std::optional<error> pools_closed_why_;

 public:

  // client::send; `counted`: the send was counted by the tracker already
  // (a post). options.traceparent is set (client::traced()); one that is
  // not valid throws usage_error.
  static asio::awaitable<json::value> send(std::shared_ptr<impl> self, std::string action,
                                           json::value value, send_options options, bool counted);
  // One send to this client's one peer, counted in its tracker (throws
  // client_closed once it is closed), within `timeout`, carrying
  // `traceparent` (valid, or empty) where the host takes it. As send(); the
  // caller keeps `action`, `value`, `traceparent` and `report` alive until
  // it completes.
  static asio::awaitable<json::value> deliver(std::shared_ptr<impl> self, const std::string& action,
                                              const json::value& value,
                                              std::chrono::milliseconds timeout,
                                              std::string_view traceparent, send_report& report);
  // deliver() without the tracker's count (the caller holds one).
  static asio::awaitable<json::value> transmit(std::shared_ptr<impl> self,
                                               const std::string& action,
                                               const json::value& value,
                                               std::chrono::milliseconds timeout,
                                               std::string_view traceparent,
                                               send_report& report);
  // The figures client::metrics() renders besides the counters.
  client_metrics::view metrics_view() const;
};

// Keep-alive connections to one peer, shared by concurrent sends and
// multiplexed with request ids. Everything runs on one serial executor.
class peer_pool : public std::enable_shared_from_this<peer_pool>,
                  public detail::context_shutdown_hook {
 public:
  // `serial` runs everything of the pool one handler at a time: a strand,
  // or the executor of a context that only one thread runs. Made with
  // make(), which has it closed when that executor's context shuts down.
  peer_pool(asio::any_io_executor serial, bool serial_is_own_thread,
            std::shared_ptr<const peer_info> info, send_tracker& tracker);
  ~peer_pool();
  static std::shared_ptr<peer_pool> make(asio::any_io_executor serial, bool serial_is_own_thread,
                                         std::shared_ptr<const peer_info> info,
                                         send_tracker& tracker);

  // The context stopped with sends still parked (their answers will never
  // be read): closes the pool and destroys their handlers unresumed, so
  // their coroutines end instead of holding the pool, and themselves,
  // forever.
  void context_shutting_down() noexcept override;

  // Runs on the serial executor (co_spawn it there, `spawned`, unless
  // inline_ok()). Completes with the answer's result, or throws comet::error.
  // Cancellation (terminal, partial): the send completes at once
  // (cancelled). A request not yet written is dropped from the queue; a
  // written one is cancelled on the wire (a cancel frame) when the
  // connection agreed "cancel", else its late answer is read and dropped.
  // Total: honoured only while none of the request was written.
  // `traceparent` (valid, or empty) goes where the host takes it
  // (multiplexer::add). The caller keeps `action`, `value`, `traceparent`
  // and `report` (which gets the request's and answer's sizes) alive until
  // it completes.
  asio::awaitable<json::value> send(const std::string& action, const json::value& value,
                                    std::chrono::milliseconds timeout, bool spawned,
                                    std::string_view traceparent, send_report& report);
  // On the serial executor: every pending send fails with `why`, every
  // connection closes (ending its streams with `why`); later sends fail
  // with `why`.
  void close(const error& why);

  // Streams (client_stream.cpp drives them), on the serial executor.
  //
  // Lists `stream` on a connection that takes streams (opening one if
  // none does, or waiting in the queue of sends for one, within
  // `deadline`), gives it a request id and queues its opening request.
  // Completes once that is queued; throws comet::error: unsupported (the
  // peer is known not to keep connections open or not to stream), the
  // pool's closing error, the peer's down failure, request_timeout at
  // `deadline` (`timeout` says which), queue_full, or cancelled.
  // Cancellation: the calling coroutine's, any type its state lets
  // through, while it waits (nothing was sent then). Outlives: `stream`
  // until it is no longer listed (its stream_ended or stream_replay, or
  // close_stream()). The opening request carries `traceparent` (valid, or
  // empty) where the host takes it.
  asio::awaitable<void> open_stream(pooled_stream& stream, stream_part kind, std::string content,
                                    std::uint64_t credit, pooled_request::time_point deadline,
                                    std::chrono::milliseconds timeout, std::string traceparent);
  // Grants a listed stream `items` more credit (a credit frame).
  void grant(pooled_stream& stream, std::uint64_t items);
  // The reader ended a listed stream (multiplexer::close_stream); it is no
  // longer called.
  void close_stream(pooled_stream& stream);
  bool closed() const noexcept { return closed_; }
  const peer_info& info() const noexcept { return *info_; }

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
  // A connection that takes a stream now (may start one); null when none
  // does and no more may be opened.
  connection* pick_for_stream();
  // Starts a new connection (counted in stats().connects).
  connection* open_connection();
  static connection* connection_of(const pooled_stream& stream);
  void remove(connection& conn);
  // A send that found no room waits in `queued_`, first come first
  // served, with its deadline running. Room that frees up (an answer, a
  // connection gone) wakes the first waiter not yet woken, one per free
  // place: the cost of a completion does not grow with the queue.
  struct queued_send {
    asio::steady_timer* timer;
    bool woken = false;
  };
  // A send's (or stream's) place in the queue while it has one; leaving it
  // (with a place, or by failing) passes a wakeup it did not use on to the next.
  struct leave_queue {
    peer_pool& pool;
    std::optional<std::list<queued_send>::iterator>& place;
    void now();
    ~leave_queue() { now(); }
  };
  std::size_t free_places() const;
  // Waits for a wakeup in the queue (taking a place at its end first),
  // within `deadline`. Throws queue_full (max_queued_sends waiting
  // already), cancelled (any type the caller's state lets through: nothing
  // was sent) or request_timeout. Outlives: `timer` and `place`, the caller's.
  asio::awaitable<void> wait_in_queue(std::optional<asio::steady_timer>& timer,
                                      std::optional<std::list<queued_send>::iterator>& place,
                                      pooled_request::time_point deadline,
                                      std::chrono::milliseconds timeout);
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
  // While context_shutting_down() closes the pool: where the parked
  // sends' handlers go, to be destroyed once the pool is closed.
  std::vector<asio::any_completion_handler<void()>>* abandoned_ = nullptr;
  // The connection handling the answers of a read right now, if any, and
  // when that read completed.
  connection* answering_ = nullptr;
  std::chrono::steady_clock::time_point answers_read_at_;
  deadline_timer deadlines_;
};

}  // namespace comet
