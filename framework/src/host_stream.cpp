// Streams and subscriptions on a host connection: the sink a stream
// handler writes to, and host_connection's driving of them (the
// host_session::driver stream events, credit and room, the end of each).
#include "host_stream.hpp"

#include "host_impl.hpp"
#include "spawn.hpp"
#include "trace.hpp"

#include <comet/log.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace comet {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// docs/protocol.md: a vanished peer is found within about 20 s.
constexpr int keepalive_idle_s = 10;
constexpr int keepalive_interval_s = 5;
constexpr int keepalive_probes = 2;

}  // namespace

host_stream::host_stream(host_connection& connection, host_session::handle h,
                         std::chrono::milliseconds handler_timeout)
    : connection_(connection),
      h_(h),
      timeout_(handler_timeout),
      wait_(connection.strand_, asio::steady_timer::time_point::max()),
      deadline_(connection.strand_, [this] { connection_.stream_timed_out(h_); }) {
  if (timeout_.count() > 0) deadline_.expires_after(timeout_);
}

void host_stream::throw_ended() const {
  throw error(errc::cancelled,
              "the stream ended: the reader closed it or went away, the host is stopping, or "
              "the handler ran past handler_timeout");
}

asio::awaitable<void> host_stream::write(json::value item) {
  if (ended_) throw_ended();
  host_session& session = connection_.session_;
  std::string content = encode_response(item);
  if (!session.stream_writable(h_, content.size())) {
    // Waiting for credit or room is not the handler's own time.
    deadline_.expires_never();
    while (!session.stream_writable(h_, content.size())) {
      if (ended_ || !session.stream_live(h_)) throw_ended();
      if (session.stream_credit(h_) > 0) {
        auto& waiters = connection_.room_waiters_;
        if (std::find(waiters.begin(), waiters.end(), h_) == waiters.end()) waiters.push_back(h_);
      }
      wait_.expires_at(asio::steady_timer::time_point::max());
      // Woken (credit, room, end) or cancelled: either way, look again.
      (void)co_await wait_.async_wait(use_tuple);
      if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none)
        ended_ = true;
    }
  }
  if (ended_) throw_ended();
  session.stream_item(h_, content, std::nullopt);
  connection_.flush();
  // Moving the deadline later only stores it: no timer operation per item.
  if (timeout_.count() > 0) deadline_.expires_after(timeout_);
}

void host_stream::end() noexcept {
  ended_ = true;
  deadline_.stop();
  wait_.cancel();
}

void host_stream::wake() noexcept { wait_.cancel(); }

asio::awaitable<std::optional<encoded_response>> host::impl::run_stream(
    request_message request, std::uint64_t request_id, endpoint peer,
    asio::any_io_executor connection, std::string traceparent, std::shared_ptr<host_stream> sink) {
  const request_context context{std::move(peer), request_id, std::move(connection),
                                std::move(traceparent)};
  stream_writer out(*sink);
  co_return co_await router.stream(request.action, request.value, out, context);
}

std::optional<encoded_response> host_connection::admit_stream(const request_message& request,
                                                              bool subscribe) {
  if (subscribe) {
    if (request.action != "subscribe")
      return error_response(errc::bad_request, "a subscribe request's action is \"subscribe\", not '" +
                                                   request.action + "'");
    std::string why;
    if (!parse_subscribe(request.value, why)) return error_response(errc::bad_request, why);
    return std::nullopt;
  }
  if (!host_->router.has_stream(request.action))
    return error_response(errc::no_handler, "no stream handler for action '" + request.action + "'");
  return std::nullopt;
}

std::optional<std::uint64_t> host_connection::run_stream(handle h, request_message& request,
                                                        std::uint64_t request_id, bool subscribe,
                                                        std::string_view traceparent) {
  const detail::traceparent_scope scope(traceparent);  // as run()'s
  if (h >= handlers_.size()) handlers_.resize(h + 1);
  if (h >= streams_.size()) streams_.resize(h + 1);
  auto& handler = handlers_[h];
  handler.arrived = arrived_;
  // A subscription is built in (no route): <unrouted>.
  handler.label = subscribe ? request_metrics::unrouted : host_->metrics.requests.index_of(request.action);
  handler.stream = true;
  // Kept for the warning at handler_timeout, not only for the debug line.
  handler.action = subscribe ? "subscribe" : request.action;
  handler.subscription = subscribe;
  handler.end_observed = false;
  if (host_->options.observer) {
    handler.traceparent.assign(traceparent);
    std::string why;
    if (subscribe)
      if (auto wanted = parse_subscribe(request.value, why)) handler.topic = wanted->topic;
    observe(h, nullptr, false, {});
  }
  probe_peer();
  if (subscribe) return this->subscribe(h, request);

  if (!handler.signal) handler.signal = std::make_unique<asio::cancellation_signal>();
  auto sink = std::make_shared<host_stream>(*this, h, host_->options.handler_timeout);
  streams_[h].sink = sink;
  host_->streams_open.fetch_add(1, std::memory_order_relaxed);
  asio::co_spawn(traced(strand_, traceparent),
                 host_->run_stream(std::move(request), request_id, peer_, strand_,
                                   std::string(traceparent), sink),
                 asio::bind_cancellation_slot(
                     handler.signal->slot(),
                     asio::bind_executor(strand_, [self = shared_from_this(), h](
                                                      std::exception_ptr failure,
                                                      std::optional<encoded_response> end) {
                       self->on_stream_end(h, failure, std::move(end));
                     })));
  return std::nullopt;
}

void host_connection::on_stream_end(handle h, std::exception_ptr failure,
                                    std::optional<encoded_response> end) {
  handlers_[h].signal->slot().clear();
  if (auto sink = std::move(streams_[h].sink)) sink->end();
  host_->streams_open.fetch_sub(1, std::memory_order_relaxed);
  if (failure) end = error_response(errc::handler_failed, "internal error");
  sync_drain();
  std::erase(room_waiters_, h);
  session_.stream_finished(h, end);
  flush();
  wake();
  close_if_drained();
}

void host_connection::stream_timed_out(handle h) {
  const auto& sink = streams_[h].sink;
  if (!sink || sink->ended()) return;
  const auto timeout = host_->options.handler_timeout;
  log(log_level::warn, "stream handler for action '" + handlers_[h].action + "' from " +
                           peer_.to_string() + " ran past its deadline between writes; cancelled");
  session_.stream_end(h, error_response(errc::timeout, "the stream's handler ran past its deadline of " +
                                                           std::to_string(timeout.count()) +
                                                           " ms between writes"));
  cancel_stream(h);
  flush();
}

void host_connection::cancel_stream(handle h) {
  if (h >= streams_.size()) return;
  // The reader's cancel writes no end (a stop's did, and was observed).
  if (host_->options.observer && h < handlers_.size() && !handlers_[h].end_observed) {
    const auto closed = error_response(errc::cancelled, "the reader closed it");
    observe(h, &closed, false, std::chrono::steady_clock::now() - handlers_[h].arrived);
  }
  auto& stream = streams_[h];
  if (stream.sink) {
    stream.sink->end();
    if (auto& signal = handlers_[h].signal; signal && signal->slot().has_handler())
      signal->emit(asio::cancellation_type::terminal);
    return;
  }
  if (stream.subscriber)
    // Not from inside the session's call: the subscription's handle is
    // freed on the strand's next turn.
    asio::post(strand_, [self = shared_from_this(), h, subscriber = stream.subscriber] {
      if (h < self->streams_.size() && self->streams_[h].subscriber == subscriber)
        self->finish_subscription(h, std::nullopt);
    });
}

void host_connection::credited(handle h) {
  if (h >= streams_.size()) return;
  if (streams_[h].sink) return streams_[h].sink->wake();
  if (streams_[h].subscriber) drain_subscription(h);
}

void host_connection::stream_room() {
  if (room_waiters_.empty()) return;
  std::vector<handle> waiting;
  waiting.swap(room_waiters_);
  for (const handle h : waiting) {
    if (h >= streams_.size()) continue;
    if (streams_[h].sink)
      streams_[h].sink->wake();
    else if (streams_[h].subscriber)
      drain_subscription(h);
  }
}

std::uint64_t host_connection::subscribe(handle h, const request_message& request) {
  std::string why;
  const auto wanted = parse_subscribe(request.value, why);  // admit_stream checked it
  const auto& options = host_->options;
  const std::size_t items =
      wanted->queue > 0 ? std::min(wanted->queue, options.subscriber_queue) : options.subscriber_queue;
  // The notify runs on the publisher's thread: it only posts here.
  auto subscriber = std::make_shared<topic_subscriber>(
      wanted->topic, wanted->overflow, items, options.subscriber_queue_bytes,
      [weak = weak_from_this(), strand = strand_, h] {
        asio::post(strand, [weak, h] {
          if (auto self = weak.lock()) self->drain_subscription(h);
        });
      });
  streams_[h].subscriber = subscriber;
  // Registered before its begin frame is queued.
  return host_->topics.subscribe(subscriber);
}

void host_connection::drain_subscription(handle h) {
  if (closed_ || h >= streams_.size() || !streams_[h].subscriber) return;
  const auto subscriber = streams_[h].subscriber;
  const std::uint64_t credit = session_.stream_credit(h);
  const std::size_t count = static_cast<std::size_t>(std::min<std::uint64_t>(credit, 1u << 16));
  subscriber->take(count, session_.room(), host_session::stream_frame_overhead, session_.fits(0), batch_);
  for (const auto& item : batch_.items) session_.stream_item(h, *item.content, item.sequence);
  batch_.items.clear();
  if (batch_.overflowed) {
    log(log_level::info, "host: subscriber " + peer_.to_string() + " of topic '" + subscriber->topic() +
                             "' fell a whole queue behind; ending its subscription (slow_consumer)");
    return finish_subscription(
        h, error_response(errc::slow_consumer,
                          "this subscriber fell a whole queue behind (subscriber_queue items or "
                          "subscriber_queue_bytes); read faster, grant more credit, or subscribe "
                          "with overflow drop-oldest"));
  }
  // Items left behind wait for credit (credited()) or room (stream_room()).
  if (batch_.more && session_.stream_credit(h) > 0 &&
      std::find(room_waiters_.begin(), room_waiters_.end(), h) == room_waiters_.end())
    room_waiters_.push_back(h);
  flush();
}

void host_connection::finish_subscription(handle h, const std::optional<encoded_response>& error) {
  auto subscriber = std::move(streams_[h].subscriber);
  if (!subscriber) return;
  host_->topics.unsubscribe(subscriber);
  std::erase(room_waiters_, h);
  session_.stream_finished(h, error);
  flush();
  wake();
  asio::post(strand_, [self = shared_from_this()] { self->close_if_drained(); });
}

void host_connection::end_streams(const std::optional<encoded_response>& error) {
  for (handle h = 0; h < streams_.size(); ++h) {
    if (!streams_[h].sink && !streams_[h].subscriber) continue;
    if (error) session_.stream_end(h, *error);
    if (streams_[h].subscriber && closed_) {
      finish_subscription(h, std::nullopt);
      continue;
    }
    cancel_stream(h);
  }
}

void host_connection::probe_peer() {
  if (probing_) return;
  probing_ = true;
  const int fd = stream_.socket().native_handle();
  const int on = 1, idle = keepalive_idle_s, interval = keepalive_interval_s, count = keepalive_probes;
  if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count) != 0)
    log(log_level::warn, "host: cannot turn TCP keepalive on for " + peer_.to_string() +
                             "; a vanished peer of its streams is not noticed while they stay open");
}

}  // namespace comet
