// Keep-alive connections to one peer, shared by concurrent sends: each
// connection is a multiplexer (the rules, multiplexer.hpp) driven over a
// transport here. A connection reads only while answers are due, so an idle
// pool holds no pending operation; one idle for a while is checked before
// it is reused (the host may have closed it meanwhile).
#include "client_impl.hpp"

#include <comet/log.hpp>

#include "json_text.hpp"
#include "read_buffer.hpp"
#include "spawn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <poll.h>

#include <algorithm>

namespace comet {
namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// A connection idle longer than this is checked before it is reused.
constexpr auto idle_check_after = std::chrono::milliseconds(100);
// Times a request is sent again after its connection was lost before all of
// it was written; the next such loss ends it unread.
constexpr int max_unwritten_replays = 3;
// Times a request is sent again after a going-away notice named it unread
// (a host closing old connections at max_connection_age, or stopping);
// each goes to another connection, so a few suffice.
constexpr int max_going_away_replays = 8;

// A send again after a going-away notice that failed so did not reach a
// host either: the send ends with the notice's own unread failure, which
// says the host went away.
bool found_no_host(const error& e) {
  const auto code = e.code();
  return code == errc::peer_offline || code == errc::connect_timeout ||
         code == errc::unresolved || code == errc::shutting_down || code == errc::unread;
}
}  // namespace

// Marks the pool as handling a read's answers (see connection::submit).
// The sends it resumes read the read's time, not the clock
// (detail::answers_read_at).
struct peer_pool::batch_guard {
  batch_guard(peer_pool& p, connection& c)
      : pool(p), outer(p.answering_), outer_time(detail::answers_read_at) {
    pool.answering_ = &c;
    detail::answers_read_at = &pool.answers_read_at_;
  }
  ~batch_guard() {
    pool.answering_ = outer;
    detail::answers_read_at = outer_time;
  }
  batch_guard(const batch_guard&) = delete;
  batch_guard& operator=(const batch_guard&) = delete;
  peer_pool& pool;
  connection* outer;
  const std::chrono::steady_clock::time_point* outer_time;
};

class peer_pool::connection : public std::enable_shared_from_this<connection> {
 public:
  explicit connection(peer_pool& pool)
      : pool_(pool),
        stream_(tcp::socket(pool.strand_), pool.info_->tls.get()),
        mux(*pool.info_, pool.knowledge_) {}

  peer_pool& pool_;
  transport stream_;
  multiplexer mux;

  bool closed() const noexcept { return closed_; }

  void start() {
    asio::co_spawn(pool_.strand_, connect(),
                   [self = shared_from_this()](std::exception_ptr e) {
                     self->on_connected(e);
                   });
  }

  // Whether it can take a request of `content_size` bytes now: open, not
  // failed, within its windows, and, after a while idle, still connected.
  bool usable(std::size_t max_in_flight, std::size_t content_size) {
    if (closed_ || !mux.accepts(max_in_flight, content_size)) return false;
    return !idle_check_due() || still_open();
  }
  // Whether usable() would first check that the host still has it open
  // (which may close it).
  bool idle_check_due() const {
    if (reading_ || closed_ || mux.current() != multiplexer::state::open) return false;
    return mux.awaits_answers() ||
           std::chrono::steady_clock::now() - idle_since_ >= idle_check_after;
  }

  void submit(pooled_request& request, std::string_view content) {
    mux.add(request, content);
    write_queued();
  }

  // Streams (multiplexer::add_stream, grant, close_stream).
  bool takes_stream() {
    if (closed_ || !mux.takes_streams()) return false;
    return !idle_check_due() || still_open();
  }
  void submit_stream(pooled_stream& stream, stream_part kind, std::string_view content,
                     std::uint64_t credit, std::string_view traceparent) {
    mux.add_stream(stream, kind, content, credit, traceparent);
    write_queued();
  }
  void grant(pooled_stream& stream, std::uint64_t items) {
    if (!closed_ && mux.grant(stream, items)) write_queued();
  }
  void close_stream(pooled_stream& stream) {
    const auto held = shared_from_this();  // closing it drops it from the pool
    const auto outcome = mux.close_stream(stream);
    if (outcome == multiplexer::cancelled_as::on_wire) write_queued();
    if (mux.current() == multiplexer::state::closed)
      close(error(errc::connection_closed, pool_.info_->describe() + " closed the connection"));
    else if (!mux.has_live_requests())
      quiesce(pool_.info_->cancelled());
  }

  // The caller gave up on `request` (only_if_unwritten: with total
  // cancellation alone). False when the request stays (see multiplexer::cancel).
  bool cancel(const pooled_request& request, bool only_if_unwritten) {
    const auto held = shared_from_this();  // closing it drops it from the pool
    const auto outcome = mux.cancel(request, only_if_unwritten);
    if (outcome == multiplexer::cancelled_as::kept) return false;
    if (outcome == multiplexer::cancelled_as::on_wire) {
      if (pool_.answering_ == this) {
        // written once this read's answers are handled
      } else if (pool_.answering_) {
        flush_soon();
      } else {
        flush();
      }
    }
    if (outcome != multiplexer::cancelled_as::abandoned) pool_.wake_next_queued();  // room for a waiting send
    if (mux.current() == multiplexer::state::closed)
      close(error(errc::connection_closed, pool_.info_->describe() + " closed the connection"));
    else if (!mux.has_live_requests())
      quiesce(pool_.info_->cancelled());
    pool_.recheck_deadlines();
    return true;
  }

  // Requests past their deadline time out; returns the earliest deadline left.
  pooled_request::time_point expire(pooled_request::time_point now) {
    auto settle = [this](pooled_request& r) { r.settle(pool_.strand_); };
    const std::size_t before = mux.in_flight();
    const auto left = mux.expire(now, settle);
    if (mux.in_flight() < before) pool_.wake_next_queued();  // room for a waiting send
    if (mux.current() == multiplexer::state::closed) {
      close(error(errc::connection_closed, pool_.info_->describe() + " closed the connection"));
      return pooled_request::time_point::max();
    }
    flush();  // the cancel frames of the requests it timed out, if any
    if (!mux.has_live_requests()) quiesce(pool_.info_->timed_out());
    return closed_ ? pooled_request::time_point::max() : left;
  }

  // Fails what is left with `why` (replays the requests the host never
  // read), closes the socket and leaves the pool.
  void close(const error& why) {
    if (closed_) return;
    closed_ = true;
    auto settle = [this](pooled_request& r) {
      if (pool_.abandoned_)
        pool_.abandoned_->push_back(r.take_parked());
      else
        r.settle(pool_.strand_);
    };
    mux.fail(why, settle);
    stream_.close();
    pool_.remove(*this);
  }

 private:
  // Writes what the multiplexer queued, and reads for the answers.
  void write_queued() {
    if (pool_.answering_ == this) return;  // written once this read's answers are handled
    if (pool_.answering_)
      flush_soon();
    else
      flush();
    read();
  }

  // Holds the peer's description: the pool may go while this is suspended
  // (it closes the connection first, which ends the connect).
  asio::awaitable<void> connect() {
    const std::shared_ptr<const peer_info> info = pool_.info_;
    stream_.expires_at(std::chrono::steady_clock::now() +
                       std::min(info->options.connect_timeout, info->options.request_timeout));
    co_await info->connect(stream_);
    stream_.expires_never();
  }

  void on_connected(std::exception_ptr failure) {
    if (closed_) return;
    if (failure) {
      try {
        std::rethrow_exception(failure);
      } catch (const error& e) {
        // Down only when no other connection of the pool is connected.
        const bool offline = e.code() == errc::peer_offline ||
                             e.code() == errc::connect_timeout || e.code() == errc::unresolved;
        if (offline && std::none_of(pool_.connections_.begin(), pool_.connections_.end(),
                                    [this](const auto& c) {
                                      return c.get() != this && !c->closed() &&
                                             c->mux.current() != multiplexer::state::connecting;
                                    }))
          pool_.mark_down(e);
        return close(e);
      } catch (const std::exception& e) {
        return close(error(errc::connection_closed, e.what()));
      }
    }
    boost::system::error_code ignored;
    stream_.socket().non_blocking(true, ignored);  // for still_open()
    pool_.mark_up();
    mux.connected();
    flush();
    read();
  }

  // A read is outstanding only while answers are due.
  void read() {
    if (reading_ || closed_ || mux.current() == multiplexer::state::connecting ||
        !mux.awaits_answers())
      return;
    reading_ = true;
    auto [room, size] = in_.prepare(mux.bytes_needed());
    stream_.async_read_some(
        asio::buffer(room, size),
        [self = shared_from_this()](boost::system::error_code ec,
                                                                     std::size_t n) {
          self->on_read(ec, n);
        });
  }

  void on_read(boost::system::error_code ec, std::size_t n) {
    reading_ = false;
    if (closed_) return;
    if (ec) {
      if (ec == asio::error::operation_aborted && stopped_reading_) {
        stopped_reading_ = false;  // see stop_reading(); a send since then reads again
        if (mux.has_live_requests()) read();
        return;
      }
      if (mux.writing()) {
        // Which requests the host may have read is known once the write
        // says how much of it went out: end it now, close when it completes.
        lost_.emplace(pool_.info_->lost(ec, "reading the answer"));
        boost::system::error_code ignored;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
        return;
      }
      return close(pool_.info_->lost(ec, "reading the answer"));
    }
    in_.commit(n);
    pool_.answers_read_at_ = std::chrono::steady_clock::now();
    if (!session_kept_ && pool_.info_->sessions) {
      session_kept_ = true;  // the host's session tickets came before this answer
      pool_.info_->sessions->remember(stream_);
    }
    answer_buffered();
    if (closed_) return;
    flush();
    read();
  }

  // Settles the answers already received; the sends they resume submit
  // their next requests, written together afterwards.
  // The caller holds this connection: a resumed send may close the pool.
  void answer_buffered() {
    {
      const batch_guard batch(pool_, *this);
      auto settle = [this](pooled_request& r) {
        pool_.wake_next_queued();
        r.settle_inline();
      };
      const auto was = mux.current();
      in_.consume(mux.consume(in_.data(), settle));
      // A stream's begin may end the probe: room for waiting sends and streams.
      if (was == multiplexer::state::probing && mux.current() == multiplexer::state::open)
        pool_.wake_next_queued();
    }
    if (mux.current() == multiplexer::state::closed)
      return close(error(errc::connection_closed, pool_.info_->describe() + " closed the connection"));
    if (!mux.awaits_answers()) idle_since_ = pool_.answers_read_at_;
    pool_.recheck_deadlines();
  }

  // No caller waits on this connection any more, but late answers may come:
  // they are read only while the pool is in use, so that an idle pool holds
  // no pending read. A connection still connecting is dropped, and so is a
  // TLS one that is reading (a TLS read cannot be stopped cleanly).
  void quiesce(const error& why) {
    if (mux.current() == multiplexer::state::connecting || (stream_.secure() && reading_))
      return close(why);
    stop_reading();
  }

  // Stops the pending read (plain TCP: a cancelled read loses nothing)
  // until the pool is used again.
  void stop_reading() {
    if (!reading_) return;
    stopped_reading_ = true;
    boost::system::error_code ignored;
    stream_.socket().cancel(ignored);
  }

  // Before reusing a connection that had no read outstanding: reads what
  // arrived meanwhile (late answers are dropped) and says whether the host
  // still has it open. TLS: readable means the host closed or sent an
  // alert, since it never writes unasked.
  bool still_open() {
    if (stream_.secure()) {
      pollfd p{stream_.socket().native_handle(), POLLIN | POLLRDHUP, 0};
      if (::poll(&p, 1, 0) != 0 && !mux.awaits_answers()) {
        close(error(errc::connection_closed, pool_.info_->describe() + " closed the connection"));
        return false;
      }
      return true;
    }
    for (;;) {
      auto [room, size] = in_.prepare(mux.bytes_needed());
      boost::system::error_code ec;
      const std::size_t n = stream_.socket().read_some(asio::buffer(room, size), ec);
      if (ec == asio::error::would_block) return true;
      if (ec) {
        close(pool_.info_->lost(ec, "reading the answer"));
        return false;
      }
      in_.commit(n);
      answer_buffered();
      if (closed_) return false;
    }
  }

  // Writes once the connection reading answers has resumed their sends:
  // their next requests go out in one write. The connection that read them
  // flushes itself when done; this covers the others.
  void flush_soon() {
    if (flush_queued_ || mux.writing()) return;  // a finished write flushes too
    flush_queued_ = true;
    asio::post(pool_.strand_, [self = shared_from_this()] {
      self->flush_queued_ = false;
      self->flush();
    });
  }

  void flush() {
    if (closed_) return;
    const auto bytes = mux.prepare_write();
    if (bytes.empty()) return;
    stream_.async_write(
        asio::buffer(bytes.data(), bytes.size()),
        [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
          if (self->closed_) return self->mux.commit_write(n);
          if (self->lost_) {
            self->mux.write_failed(n);
            return self->close(*self->lost_);
          }
          if (ec) {
            // The host may have answered before closing (too_large): stop
            // sending and let the reader take what arrives; its end of
            // stream fails whatever is left.
            boost::system::error_code ignored;
            self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
            self->mux.write_failed(n);
            return self->read();
          }
          self->mux.commit_write(n);
          self->flush();
        });
  }

  read_buffer in_;
  bool reading_ = false;
  bool stopped_reading_ = false;
  bool flush_queued_ = false;
  bool session_kept_ = false;
  bool closed_ = false;
  // The read failed while a write ran: the write's completion closes with this.
  std::optional<error> lost_;
  std::chrono::steady_clock::time_point idle_since_ = std::chrono::steady_clock::now();
};

peer_pool::peer_pool(asio::any_io_executor serial, bool serial_is_own_thread,
                     std::shared_ptr<const peer_info> info, send_tracker& tracker)
    : strand_(std::move(serial)),
      own_thread_(serial_is_own_thread),
      info_(std::move(info)),
      tracker_(tracker),
      deadlines_(strand_, [this] { on_deadline(); }) {}

peer_pool::~peer_pool() = default;

std::shared_ptr<peer_pool> peer_pool::make(asio::any_io_executor serial, bool serial_is_own_thread,
                                           std::shared_ptr<const peer_info> info,
                                           send_tracker& tracker) {
  auto pool =
      std::make_shared<peer_pool>(std::move(serial), serial_is_own_thread, std::move(info), tracker);
  detail::call_at_shutdown(asio::query(pool->strand_, asio::execution::context), pool);
  return pool;
}

void peer_pool::context_shutting_down() noexcept {
  std::vector<asio::any_completion_handler<void()>> abandoned;
  abandoned_ = &abandoned;
  close(error(errc::client_closed,
              "the io_context running the client to " + info_->describe() + " shut down"));
  abandoned_ = nullptr;
  // Last: ending the sends may release the pool.
  abandoned.clear();
}

// One timer for the whole pool, at the earliest deadline of any request in
// flight, and off when none is: a request times out at its deadline, and an
// idle pool holds no timer.
void peer_pool::watch_deadlines(pooled_request::time_point deadline) {
  deadlines_.expires_by(deadline);
}

void peer_pool::recheck_deadlines() {
  for (auto& c : connections_)
    if (c->mux.has_live_requests()) return;
  deadlines_.expires_never();
}

void peer_pool::on_deadline() {
  const auto now = std::chrono::steady_clock::now();
  auto earliest = pooled_request::time_point::max();
  for (auto& c : std::vector(connections_)) earliest = std::min(earliest, c->expire(now));
  if (earliest != pooled_request::time_point::max()) deadlines_.expires_at(earliest);
}

bool peer_pool::inline_ok() const noexcept {
  if (!own_thread_) return false;
  const auto* ex = strand_.target<asio::io_context::executor_type>();
  return ex && ex->running_in_this_thread();
}

peer_pool::connection* peer_pool::pick(std::size_t content_size) {
  const auto& o = info_->options;
  const std::size_t max_in_flight = std::max<std::size_t>(1, o.max_in_flight);
  // A send resumed by an answer goes out on the connection that brought it,
  // with the other sends that answers of the same read resume: one write.
  if (answering_ && answering_->mux.accepts(max_in_flight, content_size)) return answering_;
  connection* best = nullptr;
  for (std::size_t i = 0; i < connections_.size(); ++i) {
    auto* c = connections_[i].get();
    if (best && c->mux.in_flight() >= best->mux.in_flight()) continue;
    if (!c->idle_check_due()) {
      if (c->usable(max_in_flight, content_size)) best = c;
      continue;
    }
    const auto held = connections_[i];  // the check may close it and drop it from the list
    if (c->usable(max_in_flight, content_size)) best = c;
    else if (c->closed()) --i;  // look at this index again
  }
  if (best) return best;
  if (connections_.size() >= std::max<std::size_t>(1, o.max_connections) || opening_blocked())
    return nullptr;
  return open_connection();
}

peer_pool::connection* peer_pool::open_connection() {
  connects_.fetch_add(1, std::memory_order_relaxed);
  auto fresh = std::make_shared<connection>(*this);
  connections_.push_back(fresh);
  fresh->start();
  return fresh.get();
}

peer_pool::connection* peer_pool::pick_for_stream() {
  // The one carrying the fewest streams: a stream stays for long.
  connection* best = nullptr;
  for (std::size_t i = 0; i < connections_.size(); ++i) {
    const auto held = connections_[i];  // the check may close it and drop it from the list
    auto* c = held.get();
    if (best && c->mux.streams() >= best->mux.streams()) continue;
    if (c->takes_stream())
      best = c;
    else if (c->closed())
      --i;  // look at this index again
  }
  if (best) return best;
  if (connections_.size() >= std::max<std::size_t>(1, info_->options.max_connections) ||
      opening_blocked())
    return nullptr;
  return open_connection();
}

peer_pool::connection* peer_pool::connection_of(const pooled_stream& stream) {
  const auto where = stream.where.lock();
  return static_cast<connection*>(where.get());
}

void peer_pool::grant(pooled_stream& stream, std::uint64_t items) {
  if (auto* c = connection_of(stream)) c->grant(stream, items);
}

void peer_pool::close_stream(pooled_stream& stream) {
  if (auto* c = connection_of(stream)) c->close_stream(stream);
  stream.where.reset();
}

asio::awaitable<void> peer_pool::open_stream(pooled_stream& stream, stream_part kind,
                                             std::string content, std::uint64_t credit,
                                             pooled_request::time_point deadline,
                                             std::chrono::milliseconds timeout,
                                             std::string traceparent) {
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  std::optional<asio::steady_timer> timer;
  std::optional<std::list<queued_send>::iterator> place;
  leave_queue leave{*this, place};
  for (;;) {
    if (closed_) throw *closed_why_;
    if (down_why_)
      if (auto down = down_failure()) throw *down;
    if (knowledge_.support == peer_knowledge::keep_alive::no)
      throw error(errc::unsupported,
                  info_->describe() +
                      " does not keep connections open (a COMET host), so it cannot stream; use "
                      "send() for a single answer");
    if (knowledge_.no_streams)
      throw error(errc::unsupported, info_->describe() +
                                         " does not speak streams (a COMET host, or comet-net "
                                         "before 0.10); use send() for a single answer");
    if (cancellation.cancelled() != asio::cancellation_type::none) throw info_->cancelled();
    // Streams do not take a request's place: they need no room, only a
    // connection that agreed "stream" (or may yet).
    if (connection* conn = pick_for_stream()) {
      leave.now();
      stream.id = next_id_++;
      stream.where = conn->shared_from_this();
      conn->submit_stream(stream, kind, content, credit, traceparent);
      co_return;
    }
    co_await wait_in_queue(timer, place, deadline, timeout);
  }
}

asio::awaitable<void> peer_pool::wait_in_queue(std::optional<asio::steady_timer>& timer,
                                               std::optional<std::list<queued_send>::iterator>& place,
                                               pooled_request::time_point deadline,
                                               std::chrono::milliseconds timeout) {
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  if (!place) {
    const std::size_t limit = info_->options.max_queued_sends;
    if (queued_.size() >= limit) throw info_->queue_full(limit);
    timer.emplace(strand_, deadline);
    place = queued_.insert(queued_.end(), queued_send{&*timer});
    queued_now_.store(queued_.size(), std::memory_order_relaxed);
    queued_total_.fetch_add(1, std::memory_order_relaxed);
  } else if ((*place)->woken) {  // woken, and the room went meanwhile
    (*place)->woken = false;
    --woken_;
  }
  auto [ec] = co_await timer->async_wait(use_tuple);
  // Nothing was sent yet: any type of cancellation holds.
  if (ec == asio::error::operation_aborted &&
      cancellation.cancelled() != asio::cancellation_type::none)
    throw info_->cancelled();
  if (std::chrono::steady_clock::now() >= deadline) throw info_->timed_out(timeout);
}

void peer_pool::remove(connection& conn) {
  auto held = conn.shared_from_this();  // it may be running
  std::erase_if(connections_, [&](const auto& c) { return c.get() == &conn; });
  recheck_deadlines();
  wake_next_queued();
}

// Places a send could take now without waiting: room on the connections
// that take requests, and on those the pool may still open (a new one to a
// peer not yet known to keep connections open carries its probe alone).
std::size_t peer_pool::free_places() const {
  const auto& o = info_->options;
  const std::size_t max_in_flight = std::max<std::size_t>(1, o.max_in_flight);
  std::size_t free = 0;
  for (const auto& c : connections_)
    if (!c->closed()) free += c->mux.room(max_in_flight);
  const std::size_t max_connections = std::max<std::size_t>(1, o.max_connections);
  if (connections_.size() < max_connections && !opening_blocked())
    free += (max_connections - connections_.size()) *
            (knowledge_.support == peer_knowledge::keep_alive::yes ? max_in_flight : 1);
  return free;
}

bool peer_pool::opening_blocked() const noexcept {
  if (up_) return false;
  if (down_why_ && std::chrono::steady_clock::now() < down_until_) return true;
  return std::any_of(connections_.begin(), connections_.end(), [](const auto& c) {
    return c->mux.current() == multiplexer::state::connecting;
  });
}

void peer_pool::mark_down(const error& why) {
  up_ = false;
  // 200 ms, doubling to 5 s, each drawn from [75%, 125%] so that the
  // clients of a restarted host do not all come back at once.
  using std::chrono::milliseconds;
  down_backoff_ = down_backoff_.count() == 0 ? milliseconds(200)
                                             : std::min(down_backoff_ * 2, milliseconds(5000));
  std::uniform_int_distribution<long long> spread(down_backoff_.count() * 3 / 4,
                                                  down_backoff_.count() * 5 / 4);
  const milliseconds wait(spread(jitter_));
  down_until_ = std::chrono::steady_clock::now() + wait;
  down_why_ = error(why.code() == errc::unresolved ? errc::unresolved : errc::peer_offline,
                    std::string(why.what()) + " (sends to it fail at once for " +
                        std::to_string(wait.count()) + " ms, then the next one tries again)");
  log(log_level::info, info_->describe() + " is down, next attempt in " +
                           std::to_string(wait.count()) + " ms: " + why.what());
  // Those waiting for room fail now rather than at their deadlines.
  wake_all_queued();
}

void peer_pool::mark_up() {
  up_ = true;
  down_why_.reset();
  down_backoff_ = std::chrono::milliseconds(0);
}

std::optional<error> peer_pool::down_failure() const {
  if (!down_why_) return std::nullopt;
  // Past the backoff, a send may try; while its attempt runs, the others wait for it.
  if (std::chrono::steady_clock::now() >= down_until_) return std::nullopt;
  return down_why_;
}

void peer_pool::wake_next_queued() {
  if (queued_.size() == woken_ || free_places() <= woken_) return;
  for (auto& q : queued_)
    if (!q.woken) {
      q.woken = true;
      ++woken_;
      queue_wakeups_.fetch_add(1, std::memory_order_relaxed);
      q.timer->cancel();
      return;
    }
}

void peer_pool::wake_all_queued() {
  for (auto& q : queued_)
    if (!q.woken) {
      q.woken = true;
      ++woken_;
      q.timer->cancel();
    }
}

void peer_pool::close(const error& why) {
  if (closed_) return;
  closed_ = true;
  closed_why_ = why;
  for (auto& c : std::vector(connections_)) c->close(why);
  deadlines_.stop();
  wake_all_queued();
}

void peer_pool::leave_queue::now() {
  if (!place) return;
  if ((*place)->woken) --pool.woken_;
  pool.queued_.erase(*std::exchange(place, std::nullopt));
  pool.queued_now_.store(pool.queued_.size(), std::memory_order_relaxed);
  pool.wake_next_queued();
}

asio::awaitable<json::value> peer_pool::send(const std::string& action, const json::value& value,
                                             std::chrono::milliseconds timeout, bool spawned,
                                             std::string_view traceparent,
                                             send_report& report) {
  // The caller holds the client, which holds this pool.
  // A coroutine of its own (not the caller's): it honours partial and
  // total cancellation too (total only while nothing of the request was
  // written), and reports cancellation as its own error.
  if (spawned) {
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  }
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  // A send resumed by an answer starts when that answer was read: no clock
  // read per request in a busy pool.
  const auto started = answering_ ? answers_read_at_ : std::chrono::steady_clock::now();
  const auto deadline = started + timeout;
  // A request the host never read is sent again, until its deadline: a
  // replay after a too_large refusal means another request was refused as
  // too large, and requests that large then go alone; one whose connection
  // was lost before it was written goes again a few times, then ends
  // unread; so does one a going-away notice named unread (the host closes
  // an old connection, or stops: then no connection takes it, and it ends
  // with the notice's failure).
  int lost_unwritten = 0;
  int went_away = 0;
  // The notice's failure, once one named this request unread.
  std::optional<error> going_away;
  const auto failure = [&going_away](error e) {
    return going_away && found_no_host(e) ? *going_away : std::move(e);
  };
  for (;;) {
    connection* conn = nullptr;
    // This send's place in the queue while it has one (leave_queue).
    std::optional<asio::steady_timer> timer;
    std::optional<std::list<queued_send>::iterator> place;
    leave_queue leave{*this, place};
    for (;;) {
      if (closed_) throw *closed_why_;
      if (down_why_)
        if (auto down = down_failure()) throw failure(std::move(*down));
      // Encoded into a buffer the pool reuses (again after any wait: other
      // sends use it meanwhile); nothing suspends from here to the submit.
      encoding_.clear();
      detail::append_request(encoding_, action, value);
      // A connection of its own when the peer closes after every answer (a
      // COMET host), or when a request this large was refused before: its
      // refusal closes the connection, which must not carry others.
      if (knowledge_.support == peer_knowledge::keep_alive::no ||
          encoding_.size() >= knowledge_.refused_size)
        break;
      // Sends already queued go first.
      if (place ? (*place)->woken : queued_.empty())
        if ((conn = pick(encoding_.size()))) break;
      co_await wait_in_queue(timer, place, deadline, timeout);
    }
    // A cancellation that arrived while a wait's completion was on its way
    // (or before a replay): nothing of this request was sent yet.
    if (cancellation.cancelled() != asio::cancellation_type::none) throw info_->cancelled();
    report.request_bytes = encoding_.size();
    if (!conn) {
      leave.now();
      // Named, not a temporary: GCC 12 destroys some temporaries of a co_await
      // full-expression twice.
      frame_header header;
      header.auth_token = info_->options.auth_token;
      std::string frame = encode_frame(header, encoding_);
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (!going_away)
        co_return co_await one_shot_exchange(info_, tracker_, std::move(frame),
                                             std::max(left, std::chrono::milliseconds(1)), &report);
      std::optional<error> one_shot_failure;
      try {
        co_return co_await one_shot_exchange(info_, tracker_, std::move(frame),
                                             std::max(left, std::chrono::milliseconds(1)), &report);
      } catch (const error& e) {
        one_shot_failure = e;
      }
      throw failure(std::move(*one_shot_failure));
    }

    pooled_request request;
    request.id = next_id_++;
    request.deadline = deadline;
    request.timeout = timeout;
    request.traceparent = traceparent;
    conn->submit(request, encoding_);
    leave.now();  // after the submit: the room it took is not offered again
    watch_deadlines(deadline);
    // Parks until the request is settled, or the caller cancels it: then it
    // is abandoned and the send completes at once.
    // While the request is parked its connection lists it, so is alive: a
    // connection settles what it lists before it leaves the pool.
    auto park = [&request, conn, this](auto handler) {
      auto slot = asio::get_associated_cancellation_slot(handler);
      request.park(std::move(handler));
      if (slot.is_connected()) {
        request.watch(slot);
        slot.assign([&request, conn, this](asio::cancellation_type type) {
          using ct = asio::cancellation_type;
          const bool ends = (type & (ct::terminal | ct::partial)) != ct::none;
          // Total cancellation promises the operation had no effect: it
          // holds only while none of the request was written.
          if (!request.parked() || (!ends && (type & ct::total) == ct::none)) return;
          if (!conn->cancel(request, /*only_if_unwritten=*/!ends)) return;
          request.failure = info_->cancelled();
          request.settle(strand_);
        });
      }
    };
    co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(park, asio::use_awaitable);
    if (request.replay) {
      if (closed_) throw *closed_why_;
      if (request.going_away && !going_away) going_away = request.failure;
      const bool again = !request.failure ||
                         (request.going_away ? ++went_away <= max_going_away_replays
                                             : ++lost_unwritten <= max_unwritten_replays);
      if (again && std::chrono::steady_clock::now() < deadline) continue;
      if (request.failure) throw failure(std::move(*request.failure));
      throw info_->timed_out(timeout);
    }
    if (request.failure) throw failure(std::move(*request.failure));
    report.answer_bytes = request.answer_size;
    co_return std::move(*request.result);
  }
}

}  // namespace comet
