// Streams and publish/subscribe (docs/api.md, "Streams and subscriptions";
// the wire is docs/protocol.md's).
//
// A stream is one request answered by many items, produced by a host's
// stream handler as fast as the reader grants credit:
//
//   host.on_stream("scan", [](const scan_request& r, comet::stream_writer& out)
//                              -> asio::awaitable<void> {
//     for (...) co_await out.write(measurement{...});
//   });
//   comet::stream_reader<measurement> s = co_await c.open_stream<measurement>("scan", req);
//   while (std::optional<measurement> m = co_await s.next()) { ... }
//
// A subscription is a stream of what a host publishes on a topic:
//
//   comet::subscription<double> sub = co_await c.subscribe<double>("temperature");
//   host.publish("temperature", 21.5);  // from any thread, never blocking
//   std::optional<comet::published<double>> p = co_await sub.next();
#pragma once

#include <comet/detail/asio_abi.hpp>

#include <comet/convert.hpp>
#include <comet/errors.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>

#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

namespace comet {

namespace asio = boost::asio;
namespace json = boost::json;

namespace detail {

// The host's end of one stream (framework/src/host_stream.cpp).
class stream_sink {
 public:
  virtual asio::awaitable<void> write(json::value item) = 0;
  virtual bool ended() const noexcept = 0;

 protected:
  ~stream_sink() = default;
};

// One item as a reader gets it: its value, and for a subscription its
// sequence number in the topic.
struct stream_item {
  std::uint64_t sequence = 0;
  json::value value;
};

// The client's end of one stream or subscription
// (framework/src/client_stream.cpp). Every member may be called from any
// thread; next() runs on executor().
class stream_channel {
 public:
  virtual ~stream_channel() = default;
  // The next item, or nullopt once the stream ended; throws comet::error.
  virtual asio::awaitable<std::optional<stream_item>> next() = 0;
  // next() from a thread that is not one of the executor's.
  virtual std::optional<stream_item> next_sync() = 0;
  virtual void close() noexcept = 0;
  virtual std::uint64_t dropped() const noexcept = 0;
  virtual const asio::any_io_executor& executor() const noexcept = 0;
  // "stream 'scan' from 127.0.0.1:5000", for messages.
  virtual std::string describe() const = 0;
};

inline void require_channel(const stream_channel* channel) {
  if (!channel)
    throw error(errc::usage_error,
                "this reader has no stream (default-constructed or moved from): assign it the "
                "result of open_stream() or subscribe() first");
}

// In a coroutine co_spawned for a completion token: lets partial
// cancellation through to next() (co_spawn's default passes terminal only)
// and leaves it to next() to report (comet::error(errc::cancelled)).
inline asio::awaitable<void> let_cancellation_through() {
  co_await asio::this_coro::throw_if_cancelled(false);
  co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
}

template <class T>
T item_as(const stream_channel& channel, json::value item) {
  if constexpr (std::is_same_v<T, json::value>)
    return item;
  else
    return convert_to<T>(item, "item", errc::protocol_error,
                         channel.describe() + " gave an item of another type: ");
}

}  // namespace detail

// What a stream handler writes its items to. Valid while the handler runs.
class stream_writer {
 public:
  explicit stream_writer(detail::stream_sink& sink) noexcept : sink_(&sink) {}
  stream_writer(const stream_writer&) = delete;
  stream_writer& operator=(const stream_writer&) = delete;

  // Sends one item to the reader. Completes once the item is queued on the
  // connection: at once while the reader has credit left, else when it
  // grants more (the wait for credit does not count toward the host's
  // handler_timeout, which bounds the handler's own time between writes).
  // Throws comet::error(errc::cancelled) once the stream has ended from the
  // other side: the reader closed it, its connection went, the host stops
  // (the handler is cancelled then too). Cancellation: the handler's own
  // (terminal), which the host emits in those cases and at handler_timeout.
  // Outlives: the writer must outlive the wait (it does, within the handler).
  asio::awaitable<void> write(json::value item) { return sink_->write(std::move(item)); }
  // Typed: the item goes through boost::json::value_from.
  template <class T>
    requires(!std::is_same_v<std::remove_cvref_t<T>, json::value>)
  asio::awaitable<void> write(const T& item) {
    json::value value = json::value_from(item);
    co_await sink_->write(std::move(value));
  }

  // The stream ended from the other side: the next write() throws cancelled.
  bool cancelled() const noexcept { return sink_->ended(); }

 private:
  detail::stream_sink* sink_;
};

// What a subscriber does when it falls a whole queue behind (subscribe_options).
enum class overflow_policy {
  end_subscription,  // it ends with errc::slow_consumer (the default)
  drop_oldest,       // the oldest queued items are dropped and counted (dropped())
};
// So that `subscribe_options{.overflow = comet::drop_oldest}` reads as it says.
inline constexpr overflow_policy drop_oldest = overflow_policy::drop_oldest;
inline constexpr overflow_policy end_subscription = overflow_policy::end_subscription;

struct subscribe_options {
  overflow_policy overflow = overflow_policy::end_subscription;
  // On connection loss, subscribe again (the sequence shows the gap) rather
  // than end with the error.
  bool resubscribe = false;
  // Items the host queues for this subscriber at most (0: the host's
  // subscriber_queue default); the host's own limit caps it.
  std::size_t queue = 0;
  // For the subscribe itself, within the client's request_timeout. Zero: request_timeout.
  std::chrono::milliseconds timeout{0};
};

// The items of one stream, read in order. Move-only; closing or destroying
// it ends the stream on the host (its handler sees cancellation).
template <class T = json::value>
class stream_reader {
 public:
  // No stream (a place to move one into); next() throws usage_error.
  stream_reader() noexcept = default;
  explicit stream_reader(std::shared_ptr<detail::stream_channel> channel) noexcept
      : channel_(std::move(channel)) {}
  stream_reader(stream_reader&&) noexcept = default;
  stream_reader& operator=(stream_reader&& other) noexcept {
    if (this != &other) {
      close();
      channel_ = std::move(other.channel_);
    }
    return *this;
  }
  ~stream_reader() { close(); }

  // The next item, or nullopt once the stream ended cleanly. Throws
  // comet::error: the error the stream ended with (the handler's, or
  // shutting_down, connection_closed, request_timeout before the first
  // item...), protocol_error for an item that is not a T (the stream goes
  // on), or cancelled. Completes when an item arrives or the stream ends.
  // Cancellation: terminal ends the stream (as close()); partial ends only
  // this wait (cancelled), and the next next() goes on. Outlives: the reader.
  asio::awaitable<std::optional<T>> next() {
    detail::require_channel(channel_.get());
    std::optional<detail::stream_item> item = co_await channel_->next();
    if (!item) co_return std::nullopt;
    co_return detail::item_as<T>(*channel_, std::move(item->value));
  }
  // next() with any completion token, signature void(std::exception_ptr,
  // std::optional<T>); runs on the client's executor.
  template <class CompletionToken>
  auto async_next(CompletionToken&& token) {
    detail::require_channel(channel_.get());
    return asio::co_spawn(
        channel_->executor(),
        [channel = channel_]() -> asio::awaitable<std::optional<T>> {
          co_await detail::let_cancellation_through();
          std::optional<detail::stream_item> item = co_await channel->next();
          if (!item) co_return std::nullopt;
          co_return detail::item_as<T>(*channel, std::move(item->value));
        },
        std::forward<CompletionToken>(token));
  }
  // Blocks this thread for next(). Throws comet::error(errc::would_deadlock)
  // on a thread the client's executor needs, as send_sync does.
  std::optional<T> next_sync() {
    detail::require_channel(channel_.get());
    std::optional<detail::stream_item> item = channel_->next_sync();
    if (!item) return std::nullopt;
    return detail::item_as<T>(*channel_, std::move(item->value));
  }

  // Ends the stream now: the host's handler is cancelled, items not yet
  // read are dropped, and next() returns nullopt. From any thread;
  // idempotent.
  void close() noexcept {
    if (channel_) channel_->close();
  }

 private:
  std::shared_ptr<detail::stream_channel> channel_;
};

// One item of a subscription: its sequence number in the topic (one more
// than the last published; a gap is what this subscriber lost) and its value.
template <class T>
struct published {
  std::uint64_t sequence = 0;
  T value;
};

// What a host publishes on one topic, from the moment subscribe() completed.
// Move-only; closing or destroying it unsubscribes.
template <class T = json::value>
class subscription {
 public:
  // No subscription (a place to move one into); next() throws usage_error.
  subscription() noexcept = default;
  explicit subscription(std::shared_ptr<detail::stream_channel> channel) noexcept
      : channel_(std::move(channel)) {}
  subscription(subscription&&) noexcept = default;
  subscription& operator=(subscription&& other) noexcept {
    if (this != &other) {
      close();
      channel_ = std::move(other.channel_);
    }
    return *this;
  }
  ~subscription() { close(); }

  // The next item published, or nullopt once the subscription ended
  // cleanly (closed, or the topic's host ended it). Throws comet::error:
  // slow_consumer (it fell a whole queue behind, with the default
  // overflow), shutting_down, connection_closed (unless resubscribe is
  // set), protocol_error for an item that is not a T, or cancelled.
  // Completion, cancellation and lifetimes as stream_reader::next().
  asio::awaitable<std::optional<published<T>>> next() {
    detail::require_channel(channel_.get());
    std::optional<detail::stream_item> item = co_await channel_->next();
    if (!item) co_return std::nullopt;
    co_return published<T>{item->sequence, detail::item_as<T>(*channel_, std::move(item->value))};
  }
  template <class CompletionToken>
  auto async_next(CompletionToken&& token) {
    detail::require_channel(channel_.get());
    return asio::co_spawn(
        channel_->executor(),
        [channel = channel_]() -> asio::awaitable<std::optional<published<T>>> {
          co_await detail::let_cancellation_through();
          std::optional<detail::stream_item> item = co_await channel->next();
          if (!item) co_return std::nullopt;
          co_return published<T>{item->sequence, detail::item_as<T>(*channel, std::move(item->value))};
        },
        std::forward<CompletionToken>(token));
  }
  std::optional<published<T>> next_sync() {
    detail::require_channel(channel_.get());
    std::optional<detail::stream_item> item = channel_->next_sync();
    if (!item) return std::nullopt;
    return published<T>{item->sequence, detail::item_as<T>(*channel_, std::move(item->value))};
  }

  // Items this subscriber lost: dropped by the host (drop_oldest), or
  // published while it was resubscribing (the gaps in the sequence).
  std::uint64_t dropped() const noexcept { return channel_ ? channel_->dropped() : 0; }

  void close() noexcept {
    if (channel_) channel_->close();
  }

 private:
  std::shared_ptr<detail::stream_channel> channel_;
};

}  // namespace comet
