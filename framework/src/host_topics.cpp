#include "host_topics.hpp"

#include <comet/codec.hpp>

#include <algorithm>

namespace comet {

std::optional<subscribe_request> parse_subscribe(const boost::json::value& value, std::string& why) {
  const auto* object = value.if_object();
  const auto* topic = object ? object->if_contains("topic") : nullptr;
  if (!topic || !topic->is_string() || topic->as_string().empty()) {
    why = "a subscribe's value is {\"topic\": \"name\"}, with an optional \"overflow\" "
          "(\"end\" or \"drop-oldest\") and \"queue\" (items)";
    return std::nullopt;
  }
  subscribe_request r;
  r.topic = topic->as_string();
  if (const auto* overflow = object->if_contains("overflow")) {
    if (overflow->is_string() && overflow->as_string() == "drop-oldest")
      r.overflow = overflow_policy::drop_oldest;
    else if (!(overflow->is_string() && overflow->as_string() == "end")) {
      why = "a subscribe's \"overflow\" is \"end\" or \"drop-oldest\"";
      return std::nullopt;
    }
  }
  if (const auto* queue = object->if_contains("queue")) {
    if (queue->is_uint64())
      r.queue = static_cast<std::size_t>(queue->as_uint64());
    else if (queue->is_int64() && queue->as_int64() >= 0)
      r.queue = static_cast<std::size_t>(queue->as_int64());
    else {
      why = "a subscribe's \"queue\" is a number of items, 0 or more (0: the host's default)";
      return std::nullopt;
    }
  }
  return r;
}

topic_subscriber::topic_subscriber(std::string topic, overflow_policy overflow, std::size_t max_items,
                                   std::size_t max_bytes, std::function<void()> notify)
    : topic_(std::move(topic)),
      overflow_(overflow),
      max_items_(std::max<std::size_t>(1, max_items)),
      max_bytes_(max_bytes),
      notify_(std::move(notify)) {}

std::size_t topic_subscriber::push(const published_item& item) {
  const std::size_t size = item.content->size();
  std::size_t dropped = 0;
  bool notify = false;
  {
    std::lock_guard lock(mutex_);
    if (closed_ || overflowed_) return 0;
    // One item alone is always queued, whatever its size.
    auto full = [&] { return !queue_.empty() && (queue_.size() >= max_items_ || bytes_ + size > max_bytes_); };
    if (full()) {
      if (overflow_ == overflow_policy::end_subscription) {
        overflowed_ = true;
        queue_.clear();
        bytes_ = 0;
        // Once: the connection ends it, even one waiting for credit.
        scheduled_ = false;
      } else {
        while (full()) {
          bytes_ -= queue_.front().content->size();
          queue_.pop_front();
          ++dropped;
        }
      }
    }
    if (!overflowed_) {
      queue_.push_back(item);
      bytes_ += size;
    }
    notify = !scheduled_;
    scheduled_ = true;
  }
  if (notify) notify_();
  return dropped;
}

void topic_subscriber::take(std::size_t count, std::size_t bytes, std::size_t overhead, bool one_alone,
                            batch& out) {
  out.items.clear();
  std::lock_guard lock(mutex_);
  out.overflowed = overflowed_;
  std::size_t taken_bytes = 0;
  while (!overflowed_ && !queue_.empty() && out.items.size() < count &&
         ((out.items.empty() && one_alone) ||
          taken_bytes + queue_.front().content->size() + overhead <= bytes)) {
    taken_bytes += queue_.front().content->size() + overhead;
    bytes_ -= queue_.front().content->size();
    out.items.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  out.more = !queue_.empty();
  // Left behind, the items wait for credit or room, which look again.
  if (queue_.empty() || overflowed_) scheduled_ = false;
}

void topic_subscriber::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
  queue_.clear();
  bytes_ = 0;
}

std::uint64_t host_topics::publish(std::string_view name, const boost::json::value& value) {
  const published_item item{std::make_shared<const std::string>(encode_response(value)), 0};
  std::uint64_t dropped = 0;
  std::uint64_t sequence = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = topics_.find(name);
    if (it == topics_.end()) it = topics_.emplace(std::string(name), topic{}).first;
    sequence = ++it->second.sequence;
    published_item numbered{item.content, sequence};
    for (const auto& subscriber : it->second.subscribers) dropped += subscriber->push(numbered);
  }
  published_.fetch_add(1, std::memory_order_relaxed);
  if (dropped) dropped_.fetch_add(dropped, std::memory_order_relaxed);
  return sequence;
}

std::uint64_t host_topics::subscribe(const std::shared_ptr<topic_subscriber>& subscriber) {
  std::uint64_t sequence = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = topics_.find(subscriber->topic());
    if (it == topics_.end()) it = topics_.emplace(subscriber->topic(), topic{}).first;
    it->second.subscribers.push_back(subscriber);
    sequence = it->second.sequence;
  }
  subscriptions_.fetch_add(1, std::memory_order_relaxed);
  return sequence;
}

void host_topics::unsubscribe(const std::shared_ptr<topic_subscriber>& subscriber) {
  subscriber->close();
  bool found = false;
  {
    std::lock_guard lock(mutex_);
    const auto it = topics_.find(subscriber->topic());
    if (it == topics_.end()) return;
    auto& list = it->second.subscribers;
    const auto at = std::find(list.begin(), list.end(), subscriber);
    if (at != list.end()) {
      *at = std::move(list.back());
      list.pop_back();
      found = true;
    }
  }
  if (found) subscriptions_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace comet
