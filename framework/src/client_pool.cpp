// Keep-alive connections to one peer, shared by concurrent sends.
//
// A new connection carries one request (a probe) until the peer's answer
// shows whether it keeps connections open: a comet-net host echoes
// "keep-alive", and the connection then takes up to max_in_flight tagged
// requests at once; a COMET host answers without it and closes, and from
// then on this peer gets a connection per message. Requests are written in
// batches, answers matched by request id, and every wait is bounded by the
// request's deadline.
#include "client_impl.hpp"

#include <comet/log.hpp>

#include "json_text.hpp"
#include "spawn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>

namespace comet {
namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;
}  // namespace

// One send waiting for its answer. Settling it resumes the send through its
// own executor; the pool's sweeper settles it with a timeout at its deadline.
struct peer_pool::pending_request {
  // The parked coroutine's completion handler, type-erased and kept in
  // place (no allocation per send). Either call moves the handler out and
  // ends the resumer before the coroutine runs, since running it destroys
  // the frame this request lives in.
  struct resumer {
    virtual void post_to(const asio::any_io_executor& serial) = 0;
    virtual void invoke() = 0;

   protected:
    ~resumer() = default;
  };
  template <class Handler>
  struct resumer_for final : resumer {
    explicit resumer_for(Handler h) : handler(std::move(h)) {}
    void post_to(const asio::any_io_executor& serial) override {
      Handler h = std::move(handler);
      this->~resumer_for();
      asio::post(serial, std::move(h));
    }
    void invoke() override {
      Handler h = std::move(handler);
      this->~resumer_for();
      std::move(h)();
    }
    Handler handler;
  };

  std::uint64_t id = 0;
  std::chrono::steady_clock::time_point deadline;
  std::size_t content_size = 0;
  std::optional<json::value> result;
  std::optional<error> failure;
  // The host closed the connection without reading this request (it
  // refused one written before it as too_large): send it again.
  bool replay = false;

  template <class Handler>
  void park(Handler handler) {
    static_assert(sizeof(resumer_for<Handler>) <= sizeof storage_);
    resume_ = ::new (static_cast<void*>(storage_)) resumer_for<Handler>(std::move(handler));
  }
  // Resumes the waiting send through `serial`, the pool's executor.
  void settle(const asio::any_io_executor& serial) {
    if (auto* r = std::exchange(resume_, nullptr)) r->post_to(serial);
  }
  // Resumes the waiting send here and now: only on the pool's executor, and
  // only where its next request cannot disturb the caller (it may submit to
  // any connection, and this request is gone once it returns).
  void settle_inline() {
    if (auto* r = std::exchange(resume_, nullptr)) r->invoke();
  }

 private:
  resumer* resume_ = nullptr;
  alignas(std::max_align_t) unsigned char storage_[64];
};

// Marks the pool as handling a read's answers (see submit).
struct peer_pool::batch_guard {
  batch_guard(peer_pool& p, pooled_connection& c) : pool(p), outer(p.answering_) {
    pool.answering_ = &c;
  }
  ~batch_guard() { pool.answering_ = outer; }
  batch_guard(const batch_guard&) = delete;
  batch_guard& operator=(const batch_guard&) = delete;
  peer_pool& pool;
  pooled_connection* outer;
};

class peer_pool::pooled_connection : public std::enable_shared_from_this<pooled_connection> {
 public:
  enum class state { connecting, probing, open, closing, closed };

  explicit pooled_connection(peer_pool& pool)
      : pool_(pool.shared_from_this()),
        stream_(tcp::socket(pool.strand_), pool.info_->tls.get()),
        decoder_(pool.info_->options.max_content_length) {}

  // Normally removed when it closes; this covers an io_context destroyed
  // with the connection still open.
  ~pooled_connection() { std::erase(pool_->connections_, this); }

  state current = state::connecting;
  // At most max_in_flight entries, answered roughly in order: a vector
  // searched from the front beats a node-allocating map.
  std::vector<pending_request*> pending;

  void start() {
    asio::co_spawn(pool_->strand_, [self = shared_from_this()] { return self->run(); },
                   detail::log_failure("client connection"));
  }

  bool accepts(std::size_t max_in_flight) const noexcept {
    if (write_failed_) return false;
    const bool ready = current == state::open ||
                       (current == state::connecting && pool_->support_ == keep_alive_support::yes);
    return ready && pending.size() < max_in_flight;
  }

  void submit(pending_request& request, std::string_view content) {
    pending.push_back(&request);
    request.content_size = content.size();
    frame_header h;
    h.keep_alive = true;
    h.request_id = request.id;
    h.auth_token = pool_->info_->options.auth_token;
    append_frame(out_pending_, h, content);
    if (pool_->answering_ == this)
      return;  // written once the answers of this read are handled
    if (pool_->answering_)
      flush_soon();
    else
      flush();  // while a write is in progress, this waits for it
  }

  pending_request* take(std::uint64_t id) {
    auto it = std::find_if(pending.begin(), pending.end(), [id](auto* r) { return r->id == id; });
    if (it == pending.end()) return nullptr;
    pending_request* r = *it;
    pending.erase(it);
    return r;
  }

  // Settles every request past its deadline; true if any are left.
  bool expire(std::chrono::steady_clock::time_point now) {
    std::erase_if(pending, [&](pending_request* r) {
      if (r->deadline > now) return false;
      r->failure = pool_->info_->timed_out();
      r->settle(pool_->strand_);
      return true;
    });
    return !pending.empty();
  }

  void fail(const error& e) {
    for (auto* request : pending) {
      // Written after the refused request, on this connection: never read.
      if (refused_id_ && request->id > *refused_id_)
        request->replay = true;
      else
        request->failure = e;
      request->settle(pool_->strand_);
    }
    pending.clear();
    close();
  }

  void close() {
    if (current == state::closed) return;
    current = state::closed;
    stream_.close();
    pool_->remove(*this);
  }

 private:
  asio::awaitable<void> run() {
    const peer_info& info = *pool_->info_;
    asio::steady_timer guard(pool_->strand_);
    guard.expires_after(std::min(info.options.connect_timeout, info.options.request_timeout));
    bool connect_timed_out = false;
    guard.async_wait([&, self = shared_from_this()](boost::system::error_code ec) {
      if (ec || current != state::connecting) return;
      connect_timed_out = true;
      stream_.close();
    });
    boost::system::error_code ec;
    for (std::size_t attempt = 0;; ++attempt) {
      std::tie(ec) = co_await stream_.socket().async_connect(info.target, use_tuple);
      if (!ec || connect_timed_out || current == state::closed || !info.retry_connect(ec, attempt))
        break;
      boost::system::error_code ignored;
      stream_.socket().close(ignored);  // the next async_connect opens it afresh
      asio::steady_timer backoff(pool_->strand_, peer_info::retry_delay(attempt));
      co_await backoff.async_wait(use_tuple);
    }
    if (!ec && !connect_timed_out && current != state::closed && stream_.secure()) {
      ec = co_await info.handshake(stream_);
      if (current == state::closed) co_return;
      if (connect_timed_out) co_return fail(info.tls_timed_out());
      if (ec) co_return fail(info.tls_failed(ec));
    }
    guard.cancel();
    if (current == state::closed) co_return;
    if (ec || connect_timed_out)
      co_return fail(connect_timed_out ? info.connect_timed_out() : info.offline(ec));

    boost::system::error_code ignored;
    stream_.socket().set_option(tcp::no_delay(true), ignored);
    current = pool_->support_ == keep_alive_support::yes ? state::open : state::probing;
    flush();

    std::string in(read_chunk, '\0');
    std::size_t start = 0, end = 0;
    while (current != state::closed) {
      {
        // The sends these answers resume submit their next requests; they
        // are written together once every answer of this read is handled.
        const batch_guard batch(*pool_, *this);
        for (;;) {
          const auto status = decoder_.decode({in.data() + start, end - start});
          if (status == frame_decoder::status::need_more) break;
          if (status != frame_decoder::status::complete)
            co_return fail(error(errc::protocol_error, info.describe() + " sent a bad frame: " +
                                                           decoder_.error()));
          on_response(decoder_.header(), decoder_.content());
          start += decoder_.frame_size();
          decoder_.reset();
          if (current == state::closed) co_return;
        }
      }
      flush();
      if (start == end) start = end = 0;
      else if (start > 0) {
        std::copy(in.begin() + start, in.begin() + end, in.begin());
        end -= start;
        start = 0;
      }
      if (in.size() < decoder_.bytes_needed() || in.size() - end < read_chunk / 4)
        in.resize(std::max({decoder_.bytes_needed(), end + read_chunk, 2 * in.size()}));
      auto [read_ec, n] =
          co_await stream_.async_read_some(asio::buffer(in.data() + end, in.size() - end), use_tuple);
      if (read_ec) {
        if (current != state::closed) fail(info.lost(read_ec, "reading the answer"));
        co_return;
      }
      end += n;
      pool_->answers_read_at_ = std::chrono::steady_clock::now();
    }
  }

  void on_response(const frame_header& header, std::string_view content) {
    if (!session_kept_ && pool_->info_->sessions) {
      session_kept_ = true;  // the host's session tickets came before this answer
      pool_->info_->sessions->remember(stream_);
    }
    pending_request* request = nullptr;
    if (header.request_id) {
      request = take(*header.request_id);
    } else if (pending.size() == 1) {  // a COMET host does not echo ids
      request = pending.front();
      pending.clear();
    }
    std::optional<json::value> result;
    std::optional<error> failure;
    try {
      result = pool_->info_->result_of(header, content);
    } catch (const error& e) {
      failure = e;
    }
    if (header.keep_alive) {
      if (current == state::probing) {
        current = state::open;
        pool_->support_ = keep_alive_support::yes;
      }
    } else {
      // The peer closes after this answer. Only an ordinary answer says it
      // never keeps connections (a COMET host): a comet-net host also closes
      // after refusing a request (too_large, unauthorized).
      if (pool_->support_ == keep_alive_support::unknown && !failure)
        pool_->support_ = keep_alive_support::no;
      // A comet-net host reads nothing after a frame it refuses as too
      // large: the requests written after it never ran.
      if (failure && failure->code() == errc::too_large && header.request_id) {
        refused_id_ = header.request_id;
        // From now on, requests this large go on a connection of their own.
        if (request)
          pool_->refused_size_ = std::min(pool_->refused_size_, request->content_size);
      }
      current = state::closing;
    }
    if (current == state::closing && pending.empty()) close();
    pool_->notify_slot();
    // Last: the resumed send may already send its next request, which
    // then goes out with this batch's other ones.
    if (request) {
      request->result = std::move(result);
      request->failure = std::move(failure);
      request->settle_inline();
    }
  }

  // Writes once the connection reading answers has resumed their sends:
  // their next requests go out in one write. The connection that read them
  // flushes itself when done; this covers the others.
  void flush_soon() {
    if (flush_queued_ || writing_) return;  // a finished write flushes too
    flush_queued_ = true;
    asio::post(pool_->strand_, [self = shared_from_this()] {
      self->flush_queued_ = false;
      self->flush();
    });
  }

  void flush() {
    if (writing_ || write_failed_ || out_pending_.empty() ||
        (current != state::open && current != state::probing && current != state::closing))
      return;
    writing_ = true;
    std::swap(out_pending_, out_writing_);
    stream_.async_write(asio::buffer(out_writing_),
                      [self = shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->writing_ = false;
                        self->out_writing_.clear();
                        if (ec) {
                          // The host may have answered before closing (too_large):
                          // stop sending and let the reader take what arrives;
                          // its end of stream fails whatever is left.
                          boost::system::error_code ignored;
                          self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                          self->out_pending_.clear();
                          self->write_failed_ = true;
                          return;
                        }
                        self->flush();
                      });
  }

  std::shared_ptr<peer_pool> pool_;
  transport stream_;
  frame_decoder decoder_;
  std::string out_pending_, out_writing_;
  bool writing_ = false;
  bool flush_queued_ = false;
  bool session_kept_ = false;
  bool write_failed_ = false;
  // The request the host refused as too_large before closing, if it did.
  std::optional<std::uint64_t> refused_id_;
};

peer_pool::peer_pool(asio::any_io_executor serial, bool serial_is_own_thread,
                     std::shared_ptr<const peer_info> info)
    : strand_(std::move(serial)),
      own_thread_(serial_is_own_thread),
      info_(std::move(info)),
      sweeper_(strand_) {}

// One timer for the whole pool, ticking only while requests are pending,
// instead of a timer per request: a request times out within a tenth of
// request_timeout (at most 100 ms) after its deadline.
void peer_pool::watch_deadlines() {
  if (sweeping_) return;
  sweeping_ = true;
  const auto tick = std::clamp<std::chrono::milliseconds>(info_->options.request_timeout / 10,
                                                          std::chrono::milliseconds(1),
                                                          std::chrono::milliseconds(100));
  sweeper_.expires_after(tick);
  sweeper_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    self->sweeping_ = false;
    if (ec) return;
    const auto now = std::chrono::steady_clock::now();
    bool left = false;
    for (auto& c : self->live()) left = c->expire(now) || left;
    if (left) self->watch_deadlines();
  });
}

bool peer_pool::inline_ok() const noexcept {
  if (!own_thread_) return false;
  const auto* ex = strand_.target<asio::io_context::executor_type>();
  return ex && ex->running_in_this_thread();
}

peer_pool::pooled_connection* peer_pool::pick() {
  const auto& o = info_->options;
  const std::size_t max_in_flight = std::max<std::size_t>(1, o.max_in_flight);
  // A send resumed by an answer goes out on the connection that brought it,
  // with the other sends that answers of the same read resume: one write.
  if (answering_ && answering_->accepts(max_in_flight)) return answering_;
  pooled_connection* best = nullptr;
  for (auto* c : connections_)
    if (c->accepts(max_in_flight) && (!best || c->pending.size() < best->pending.size()))
      best = c;
  if (best) return best;
  if (connections_.size() >= std::max<std::size_t>(1, o.max_connections)) return nullptr;
  auto fresh = std::make_shared<pooled_connection>(*this);
  connections_.push_back(fresh.get());
  fresh->start();
  return fresh.get();
}

std::vector<std::shared_ptr<peer_pool::pooled_connection>> peer_pool::live() {
  std::vector<std::shared_ptr<pooled_connection>> alive;
  for (auto* c : connections_)
    if (auto held = c->weak_from_this().lock()) alive.push_back(std::move(held));
  return alive;
}

void peer_pool::remove(pooled_connection& conn) {
  std::erase(connections_, &conn);
  notify_slot();
}

void peer_pool::notify_slot() {
  for (auto* waiter : slot_waiters_) waiter->cancel();
}

void peer_pool::shutdown() {
  shut_down_ = true;
  for (auto& c : live())
    c->fail(error(errc::connection_closed, "the client to " + info_->describe() + " was destroyed"));
  notify_slot();
}

asio::awaitable<json::value> peer_pool::send(std::string action, json::value value) {
  // A send resumed by an answer starts when that answer was read: no clock
  // read per request in a busy pool.
  const auto started = answering_ ? answers_read_at_ : std::chrono::steady_clock::now();
  const auto deadline = started + info_->options.request_timeout;
  // A request the host closed the connection without reading is sent
  // again, until its deadline; each replay means another request was
  // refused as too large, and requests that large then go alone.
  for (;;) {
    std::shared_ptr<pooled_connection> conn;
    for (;;) {
      if (shut_down_)
        throw error(errc::connection_closed, "the client to " + info_->describe() + " was destroyed");
      // Encoded into a buffer the pool reuses (again after any wait: other
      // sends use it meanwhile); nothing suspends from here to the submit.
      encoding_.clear();
      detail::append_request(encoding_, action, value);
      // A connection of its own when the peer closes after every answer (a
      // COMET host), or when a request this large was refused before: its
      // refusal closes the connection, which must not carry others.
      if (support_ == keep_alive_support::no || encoding_.size() >= refused_size_) break;
      if (auto* picked = pick()) {
        conn = picked->shared_from_this();
        break;
      }
      asio::steady_timer waiter(strand_, deadline);
      slot_waiters_.push_back(&waiter);
      const auto position = std::prev(slot_waiters_.end());
      co_await waiter.async_wait(use_tuple);
      slot_waiters_.erase(position);
      if (std::chrono::steady_clock::now() >= deadline) throw info_->timed_out();
    }
    if (!conn) {
      // Named, not a temporary: GCC 12 destroys some temporaries of a co_await
      // full-expression twice.
      frame_header header;
      header.auth_token = info_->options.auth_token;
      std::string frame = encode_frame(header, encoding_);
      co_return co_await client::impl::exchange(info_, std::move(frame));
    }

    pending_request request;
    request.id = next_id_++;
    request.deadline = deadline;
    conn->submit(request, encoding_);
    watch_deadlines();
    // Named, not a temporary: GCC 12 destroys some temporaries of a co_await
    // full-expression twice.
    auto park = [&request](auto handler) { request.park(std::move(handler)); };
    co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(park, asio::use_awaitable);
    if (request.replay) {
      if (std::chrono::steady_clock::now() < deadline) continue;
      throw info_->timed_out();
    }
    if (request.failure) throw std::move(*request.failure);
    co_return std::move(*request.result);
  }
}

}  // namespace comet
