// Internal: a host's publish/subscribe registry (host::publish, "subscribe"
// streams; docs/protocol.md, "Streams and subscriptions"). host::impl owns
// one. publish() runs on any thread and never waits for a subscriber: each
// has a bounded queue of its own, filled here and drained by its
// connection on that connection's strand (host_stream.cpp), as credit and
// the write buffer allow. A publish serializes the item once; every queue
// shares that text.
#pragma once

#include <comet/stream.hpp>

#include <boost/json/value.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace comet {

// One published item as its subscribers' frames carry it.
struct published_item {
  std::shared_ptr<const std::string> content;  // {"result": value}
  std::uint64_t sequence = 0;
};

// A subscribe request's value: {"topic": T, "overflow": "end" | "drop-oldest", "queue": N}.
struct subscribe_request {
  std::string topic;
  overflow_policy overflow = overflow_policy::end_subscription;
  std::size_t queue = 0;  // 0: the host's subscriber_queue
};
// nullopt and why for a value that is not one (answered bad_request).
std::optional<subscribe_request> parse_subscribe(const boost::json::value& value, std::string& why);

// One subscription's queue. The publisher pushes under its mutex; the
// connection takes from it on its strand.
class topic_subscriber {
 public:
  // `notify` runs (on the publishing thread, under no lock of this queue)
  // when the queue needs its connection to look at it: it posts there.
  topic_subscriber(std::string topic, overflow_policy overflow, std::size_t max_items,
                   std::size_t max_bytes, std::function<void()> notify);

  const std::string& topic() const noexcept { return topic_; }

  // Queues `item`; returns how many items it dropped (drop_oldest).
  std::size_t push(const published_item& item);

  // What take() found.
  struct batch {
    std::vector<published_item> items;
    bool overflowed = false;  // the queue overflowed with overflow "end": end the subscription
    bool more = false;        // items are left behind (credit or room ran out)
  };
  // Takes up to `count` items whose frames (content and `overhead`) add
  // up to `bytes` at most; one however large when `one_alone`. Once it
  // takes the last item, the next push notifies again.
  void take(std::size_t count, std::size_t bytes, std::size_t overhead, bool one_alone, batch& out);
  // No more pushes are queued (unsubscribed).
  void close();

 private:
  const std::string topic_;
  const overflow_policy overflow_;
  const std::size_t max_items_, max_bytes_;
  const std::function<void()> notify_;
  std::mutex mutex_;
  std::deque<published_item> queue_;
  std::size_t bytes_ = 0;
  bool overflowed_ = false;
  bool closed_ = false;
  // The connection will look at the queue without a notify: one is posted,
  // or it waits for credit or room with items queued.
  bool scheduled_ = false;
};

class host_topics {
 public:
  // Sequence numbers count a topic's publishes from 1, subscribers or none.
  std::uint64_t publish(std::string_view topic, const boost::json::value& value);
  // From now on, publishes on its topic reach `subscriber`. Returns the
  // topic's last sequence number (0: nothing published yet).
  std::uint64_t subscribe(const std::shared_ptr<topic_subscriber>& subscriber);
  void unsubscribe(const std::shared_ptr<topic_subscriber>& subscriber);

  std::uint64_t published() const noexcept { return published_.load(std::memory_order_relaxed); }
  std::uint64_t dropped() const noexcept { return dropped_.load(std::memory_order_relaxed); }
  std::uint64_t subscriptions() const noexcept { return subscriptions_.load(std::memory_order_relaxed); }

 private:
  struct topic {
    std::uint64_t sequence = 0;
    std::vector<std::shared_ptr<topic_subscriber>> subscribers;
  };
  // Held while a publish fans out, so that every subscriber sees a
  // topic's items in sequence order; a push takes one queue's mutex for
  // a few instructions, never waiting on a connection.
  std::mutex mutex_;
  // A topic stays once published to or subscribed: its sequence goes on.
  std::map<std::string, topic, std::less<>> topics_;
  std::atomic<std::uint64_t> published_{0}, dropped_{0}, subscriptions_{0};
};

}  // namespace comet
