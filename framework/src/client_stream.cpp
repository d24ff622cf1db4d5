#include "client_stream.hpp"

#include "endpoint_set.hpp"
#include "trace.hpp"

#include <comet/codec.hpp>
#include <comet/log.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/object.hpp>

#include <algorithm>

namespace comet {
namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Times an opening request the host provably never read is sent again.
constexpr int max_replays = 3;
// A subscription that lost its connection subscribes again at once, then
// after 100 ms, doubling up to this.
constexpr auto max_backoff = std::chrono::milliseconds(2000);

using ct = asio::cancellation_type;
}  // namespace

client_stream::client_stream(std::shared_ptr<client::impl> client, std::shared_ptr<peer_pool> pool,
                             request r)
    : client_(std::move(client)),
      pool_(std::move(pool)),
      request_(std::move(r)),
      window_(std::max<std::uint64_t>(1, client_->info->options.stream_credit)),
      window_bytes_(std::max<std::uint64_t>(1, client_->info->options.stream_credit_bytes)),
      signal_(pool_->strand()),
      backoff_(pool_->strand()) {}

client_stream::~client_stream() = default;

const asio::any_io_executor& client_stream::executor() const noexcept { return client_->executor; }

std::string client_stream::describe() const {
  if (request_.kind == stream_part::subscribe)
    return "subscription to '" + request_.name + "' at " + client_->info->describe();
  return "stream '" + request_.name + "' from " + client_->info->describe();
}

error client_stream::timed_out() const { return client_->info->timed_out(request_.timeout); }

asio::awaitable<void> client_stream::open() {
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  deadline_ = std::chrono::steady_clock::now() + request_.timeout;
  try {
    co_await attach();
  } catch (const error&) {
    close_here();
    throw;
  }
  for (;;) {
    // Begun: what came after it (items, even its end) is next()'s to say.
    if (phase_ == phase::open || begun_) co_return;
    if (phase_ == phase::ended) {
      if (!failure_) co_return;  // ended at once: next() says so
      const error e = *failure_;
      close_here();
      throw e;
    }
    signal_.expires_at(deadline_);
    co_await signal_.async_wait(use_tuple);  // woken, expired or cancelled: the state says
    if (phase_ == phase::open || phase_ == phase::ended || begun_) continue;
    if (cancellation.cancelled() != ct::none) {
      close_here();
      throw client_->info->cancelled();
    }
    if (std::chrono::steady_clock::now() >= deadline_) {
      close_here();
      throw timed_out();
    }
  }
}

asio::awaitable<void> client_stream::attach() {
  // Credit for what the buffer has room for (a subscription that
  // subscribes again may hold items still).
  std::uint64_t credit = window_ > items_.size() ? window_ - items_.size() : 1;
  if (items_seen_ > 0) {
    const std::uint64_t average = std::max<std::uint64_t>(1, bytes_seen_ / items_seen_);
    const std::uint64_t room = buffered_bytes_ < window_bytes_ ? window_bytes_ - buffered_bytes_ : 0;
    credit = std::clamp<std::uint64_t>(room / average, 1, credit);
  }
  const std::string content = request_.content;  // the pool takes its own copy
  co_await pool_->open_stream(*this, request_.kind, content, credit, deadline_, request_.timeout,
                              request_.traceparent);
  listed_ = true;
  host_credit_ = credit;
  if (phase_ == phase::ended) {  // closed while it waited for a connection
    listed_ = false;
    pool_->close_stream(*this);
    co_return;
  }
  phase_ = phase::opening;
}

void client_stream::attach_later(std::chrono::milliseconds delay) {
  phase_ = phase::attaching;
  auto go = [self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->phase_ == phase::ended) return;
    // A subscription's attempt gets a deadline of its own; a replay keeps the open's.
    if (self->begun_) self->deadline_ = std::chrono::steady_clock::now() + self->request_.timeout;
    self->attaching_ = true;
    asio::co_spawn(self->pool_->strand(), self->attach(),
                   asio::bind_cancellation_slot(
                       self->attach_cancel_.slot(), [self](std::exception_ptr failure) {
                         self->attaching_ = false;
                         self->attach_cancel_.slot().clear();
                         if (!failure) return;
                         try {
                           std::rethrow_exception(failure);
                         } catch (const error& e) {
                           self->attach_failed(e);
                         } catch (const std::exception& e) {
                           self->attach_failed(error(errc::connection_closed, e.what()));
                         }
                       }));
  };
  if (delay.count() == 0) {
    asio::post(pool_->strand(), [go]() mutable { go({}); });
    return;
  }
  backoff_.expires_after(delay);
  backoff_.async_wait(std::move(go));
}

void client_stream::attach_failed(const error& e) {
  if (phase_ == phase::ended) return;
  if (resubscribes_after(e)) return attach_later(next_backoff());
  end(e);
}

std::chrono::milliseconds client_stream::next_backoff() noexcept {
  const auto now = backoff_delay_;
  backoff_delay_ = std::min(max_backoff, std::max(std::chrono::milliseconds(100), now * 2));
  return now;
}

bool client_stream::resubscribes_after(const error& e) const noexcept {
  if (!request_.resubscribe || request_.kind != stream_part::subscribe || !begun_ || closed_ ||
      pool_->closed())
    return false;
  switch (static_cast<errc>(e.code().value())) {
    case errc::connection_closed:
    case errc::unread:
    case errc::shutting_down:
    case errc::peer_offline:
    case errc::connect_timeout:
    case errc::request_timeout:
    case errc::unresolved:
    case errc::busy:
    case errc::host_full:
    case errc::too_many_streams: return true;
    default: return false;
  }
}

void client_stream::stream_begun(std::optional<std::uint64_t> sequence) {
  if (phase_ == phase::ended) return;
  // A subscription's begin says where the topic is: what was published
  // since the last item seen (while subscribing again) was lost.
  if (sequence) count_gap(*sequence, 0);
  if (!begun_) {
    opened_at_ = std::chrono::steady_clock::now();
    observe(nullptr);
  }
  begun_ = true;
  phase_ = phase::open;
  replays_ = 0;
  backoff_delay_ = std::chrono::milliseconds(0);
  wake();
}

void client_stream::stream_item(std::optional<std::uint64_t> sequence, json::value value,
                                std::size_t bytes) {
  if (phase_ == phase::ended) return;
  if (host_credit_ != 0) --host_credit_;
  ++items_seen_;
  bytes_seen_ += bytes;
  if (sequence) count_gap(*sequence, 1);
  got_item_ = true;
  items_.push_back({{sequence.value_or(0), std::move(value)}, bytes});
  buffered_bytes_ += bytes;
  wake();
}

void client_stream::count_gap(std::uint64_t sequence, std::uint64_t step) {
  // A gap is what this subscriber lost (the host dropped it, or it was
  // published while this subscribed again); a lower number, a host that
  // started again.
  if (last_sequence_ && sequence > *last_sequence_ + step)
    dropped_.fetch_add(sequence - *last_sequence_ - step, std::memory_order_relaxed);
  last_sequence_ = sequence;
}

void client_stream::stream_ended(std::optional<error> failure) {
  listed_ = false;
  where.reset();
  if (phase_ == phase::ended) return;
  if (failure && resubscribes_after(*failure)) return attach_later(next_backoff());
  end(std::move(failure));
}

void client_stream::stream_replay(const error& why) {
  listed_ = false;
  where.reset();
  if (phase_ == phase::ended) return;
  if (++replays_ > max_replays) return end(why);
  attach_later(std::chrono::milliseconds(0));
}

void client_stream::end(std::optional<error> why) {
  if (phase_ == phase::ended) return;
  phase_ = phase::ended;
  failure_ = std::move(why);
  if (begun_) {
    const auto ended = failure_ ? static_cast<errc>(failure_->code().value())
                                : closed_ ? errc::cancelled : errc{};
    observe(&ended);
  }
  if (listed_) {
    listed_ = false;
    pool_->close_stream(*this);
  }
  backoff_.cancel();
  if (attaching_) attach_cancel_.emit(ct::terminal);
  wake();
}

void client_stream::observe(const errc* ended) const {
  const auto& observer = client_->info->options.observer;
  if (!observer) return;
  const stream_event event{
      .kind = request_.kind == stream_part::subscribe ? stream_kind::subscription : stream_kind::stream,
      .name = request_.name,
      .peer = client_->dialled ? *client_->dialled : client_->info->peer,
      .error = ended && *ended != errc{} ? std::optional(*ended) : std::nullopt,
      .duration = ended ? std::chrono::steady_clock::now() - opened_at_ : std::chrono::nanoseconds(0),
      .traceparent = request_.traceparent};
  try {
    if (ended)
      observer->stream_ended(event);
    else
      observer->stream_opened(event);
  } catch (const std::exception& e) {
    log(log_level::warn, "the observer of " + client_->info->describe() + " threw: " + e.what());
  } catch (...) {
    log(log_level::warn, "the observer of " + client_->info->describe() + " threw");
  }
}

void client_stream::close_here() {
  if (closed_) return;
  closed_ = true;
  items_.clear();
  buffered_bytes_ = 0;
  end(std::nullopt);
  failure_.reset();  // later next() returns nullopt
}

void client_stream::close() noexcept {
  if (close_requested_.exchange(true)) return;
  try {
    if (auto self = weak_from_this().lock())
      asio::post(pool_->strand(), [self] { self->close_here(); });
  } catch (const std::exception&) {
    // Out of memory: the stream ends with its client.
  }
}

void client_stream::grant_freed() {
  if (phase_ != phase::open || !listed_) return;
  const std::uint64_t ahead = host_credit_ + items_.size();
  if (ahead >= window_) return;
  std::uint64_t grant = window_ - ahead;
  if (items_seen_ > 0) {
    const std::uint64_t average = std::max<std::uint64_t>(1, bytes_seen_ / items_seen_);
    const std::uint64_t bytes_ahead = buffered_bytes_ + host_credit_ * average;
    grant = bytes_ahead >= window_bytes_ ? 0 : std::min(grant, (window_bytes_ - bytes_ahead) / average);
  }
  // One frame per half window; but a host with no credit left and a
  // reader with nothing buffered always get some, so it never stalls.
  const bool starved = host_credit_ == 0 && items_.empty();
  if (grant == 0 && !starved) return;
  if (!starved && grant * 2 < window_) return;
  grant = std::max<std::uint64_t>(grant, 1);
  host_credit_ += grant;
  pool_->grant(*this, grant);
}

asio::awaitable<std::optional<detail::stream_item>> client_stream::next() {
  const auto self = shared_from_this();
  // A cancellation the caller's state recorded before the wait could begin
  // (it would not reach the wait on the pool's executor).
  const asio::cancellation_type early = (co_await asio::this_coro::cancellation_state).cancelled();
  // Named, not a temporary of the co_await: GCC 12 destroys some of those twice.
  auto waiting = asio::co_spawn(pool_->strand(), self->next_here(early), asio::use_awaitable);
  co_return co_await std::move(waiting);
}

asio::awaitable<std::optional<detail::stream_item>> client_stream::next_here(
    asio::cancellation_type early) {
  // A coroutine of its own: partial and total cancellation end only this
  // wait, terminal the stream.
  co_await asio::this_coro::throw_if_cancelled(false);
  co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  if (waiting_)
    throw error(errc::usage_error, "next() of " + describe() +
                                       " was called while another next() of it waits; call it "
                                       "again once that one completed");
  for (;;) {
    if (!items_.empty()) {
      buffered b = std::move(items_.front());
      items_.pop_front();
      buffered_bytes_ -= b.bytes;
      grant_freed();
      co_return std::move(b.item);
    }
    if (phase_ == phase::ended) {
      if (failure_) throw *failure_;
      co_return std::nullopt;
    }
    if (early != ct::none) break;
    // A stream's first item is due within the open's deadline.
    const bool bounded = request_.kind == stream_part::open && !got_item_;
    signal_.expires_at(bounded ? deadline_ : std::chrono::steady_clock::time_point::max());
    waiting_ = true;
    co_await signal_.async_wait(use_tuple);  // woken, expired or cancelled: the state says
    waiting_ = false;
    if (!items_.empty() || phase_ == phase::ended) continue;
    if (cancellation.cancelled() != ct::none) break;
    if (bounded && std::chrono::steady_clock::now() >= deadline_) end(timed_out());
  }
  const auto type = cancellation.cancelled() | early;
  const bool terminal = (type & ct::terminal) != ct::none;
  if (terminal) close_here();
  throw error(errc::cancelled, "next() of " + describe() + " was cancelled" +
                                   (terminal ? "; the stream is closed" : ""));
}

std::optional<detail::stream_item> client_stream::next_sync() {
  if (runs_on_this_thread(client_->executor))
    throw error(errc::would_deadlock,
                "next_sync() of " + describe() +
                    " was called on a thread of the executor that must run it, which would "
                    "deadlock; in a coroutine or handler use `co_await reader.next()`");
  auto item = asio::co_spawn(client_->executor, next(), asio::use_future);
  return item.get();
}

namespace {

// Counts the open as a send in flight (async_close() waits for it);
// the open stream is not counted.
struct open_scope {
  send_tracker& tracker;
  ~open_scope() { tracker.end(); }
};

asio::awaitable<std::shared_ptr<detail::stream_channel>> open_with(
    std::shared_ptr<client::impl> self, client_stream::request r) {
  detail::check_send_traceparent(r.traceparent);
  if (!self->tracker.begin()) throw self->info->client_closed();
  const open_scope counted{self->tracker};
  const std::shared_ptr<peer_pool> pool = self->stream_pool();
  auto channel = std::make_shared<client_stream>(self, pool, std::move(r));
  // A coroutine of its own, which lets partial and total cancellation
  // through. Named, not temporaries of the co_await: GCC 12 destroys some
  // of those twice (a captured shared_ptr, released twice).
  auto opening = [channel]() -> asio::awaitable<void> {
    co_await asio::this_coro::throw_if_cancelled(false);
    co_await asio::this_coro::reset_cancellation_state(asio::enable_total_cancellation());
    co_await channel->open();
  };
  auto opened = asio::co_spawn(pool->strand(), opening, asio::use_awaitable);
  co_await std::move(opened);
  co_return channel;
}

// Over an endpoint list: each attempt opens on an endpoint's client, and
// the open is counted as this client's send in flight too.
asio::awaitable<std::shared_ptr<detail::stream_channel>> open_over_set(
    std::shared_ptr<client::impl> self, client_stream::request r) {
  detail::check_send_traceparent(r.traceparent);
  if (!self->tracker.begin()) throw self->info->client_closed();
  const open_scope counted{self->tracker};
  const auto timeout = r.timeout;
  endpoint_set::attempt_fn<std::shared_ptr<detail::stream_channel>> attempt =
      [r = std::move(r)](std::shared_ptr<client::impl> via, std::chrono::milliseconds left) {
        client_stream::request once = r;
        once.timeout = left;
        return open_with(std::move(via), std::move(once));
      };
  co_return co_await self->set->open(std::move(attempt), timeout);
}

asio::awaitable<std::shared_ptr<detail::stream_channel>> open_on(std::shared_ptr<client::impl> self,
                                                                 client_stream::request r) {
  if (self->set) return open_over_set(std::move(self), std::move(r));
  return open_with(std::move(self), std::move(r));
}

}  // namespace

asio::awaitable<std::shared_ptr<detail::stream_channel>> client::open_channel(
    std::string action, json::value value, send_options options) const {
  client_stream::request r;
  r.kind = stream_part::open;
  r.content = encode_request(action, value);
  r.name = std::move(action);
  r.timeout = impl_->timeout_of(options);
  r.traceparent = *traced(std::move(options)).traceparent;
  return open_on(impl_, std::move(r));
}

asio::awaitable<std::shared_ptr<detail::stream_channel>> client::subscribe_channel(
    std::string topic, subscribe_options options) const {
  json::object value;
  value["topic"] = topic;
  value["overflow"] = options.overflow == overflow_policy::drop_oldest ? "drop-oldest" : "end";
  if (options.queue != 0) value["queue"] = options.queue;
  client_stream::request r;
  r.kind = stream_part::subscribe;
  r.content = encode_request("subscribe", value);
  r.name = std::move(topic);
  r.resubscribe = options.resubscribe;
  send_options send;
  send.timeout = options.timeout;
  r.timeout = impl_->timeout_of(send);
  r.traceparent = *traced(std::move(send)).traceparent;
  return open_on(impl_, std::move(r));
}

}  // namespace comet
