#include "client_impl.hpp"

#include <boost/asio/post.hpp>

namespace comet {

bool send_tracker::begin() noexcept {
  active_.fetch_add(1, std::memory_order_acq_rel);
  if (!closed()) return true;
  end();
  return false;
}

void send_tracker::end() noexcept {
  if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1 && closed()) notify();
}

void send_tracker::track(const std::shared_ptr<cancellable>& c) {
  std::lock_guard lock(mutex_);
  tracked_.push_back(c);
}

void send_tracker::untrack(const cancellable* c) {
  std::lock_guard lock(mutex_);
  std::erase_if(tracked_, [c](const std::weak_ptr<cancellable>& w) {
    auto held = w.lock();
    return !held || held.get() == c;
  });
}

void send_tracker::close_now() {
  refuse_new();
  closed_now_.store(true, std::memory_order_release);
  std::lock_guard lock(mutex_);
  for (auto& w : tracked_)
    if (auto c = w.lock()) asio::post(c->executor(), [c] { c->cancel_for_close(); });
}

void send_tracker::when_idle(asio::any_io_executor ex, asio::any_completion_handler<void()> done) {
  {
    std::lock_guard lock(mutex_);
    if (active_.load(std::memory_order_acquire) != 0) {
      waiters_.emplace_back(std::move(ex), std::move(done));
      return;
    }
  }
  asio::post(ex, std::move(done));
}

void send_tracker::notify() {
  std::vector<std::pair<asio::any_io_executor, asio::any_completion_handler<void()>>> ready;
  {
    std::lock_guard lock(mutex_);
    if (active_.load(std::memory_order_acquire) != 0) return;
    ready.swap(waiters_);
  }
  for (auto& [ex, done] : ready) asio::post(ex, std::move(done));
}

}  // namespace comet
