#include "deadline_timer.hpp"

namespace comet {

struct deadline_timer::state {
  state(const asio::any_io_executor& ex, std::function<void()> f)
      : timer(ex), on_expire(std::move(f)) {}
  asio::steady_timer timer;
  std::function<void()> on_expire;
  time_point deadline = never;
  time_point armed_for = never;  // never: no wait pending
  bool stopped = false;
};

deadline_timer::deadline_timer(const asio::any_io_executor& executor,
                               std::function<void()> on_expire)
    : executor_(executor), on_expire_(std::move(on_expire)) {}

deadline_timer::~deadline_timer() { stop(); }

void deadline_timer::arm(const std::shared_ptr<state>& s, time_point at) {
  s->armed_for = at;
  s->timer.expires_at(at);  // a wait already pending completes as aborted
  s->timer.async_wait([weak = std::weak_ptr<state>(s)](boost::system::error_code ec) {
    if (ec) return;  // replaced by a new wait, cancelled, or the owner is gone
    if (auto s = weak.lock()) {
      s->armed_for = never;
      fired(s);
    }
  });
}

void deadline_timer::fired(const std::shared_ptr<state>& s) {
  if (s->stopped || s->deadline == never) return;
  if (clock::now() < s->deadline) return arm(s, s->deadline);  // moved later meanwhile
  s->deadline = never;
  s->on_expire();
}

void deadline_timer::expires_at(time_point deadline) {
  if (stopped_) return;
  if (deadline == never) return expires_never();
  if (!state_) {
    state_ = std::make_shared<state>(executor_, std::move(on_expire_));
    executor_ = {};
  }
  state_->deadline = deadline;
  if (deadline < state_->armed_for) arm(state_, deadline);
}

void deadline_timer::expires_never() {
  if (!state_) return;
  state_->deadline = never;
  if (state_->armed_for == never) return;
  state_->armed_for = never;
  state_->timer.cancel();
}

void deadline_timer::stop() {
  expires_never();
  stopped_ = true;
  if (state_) state_->stopped = true;
}

deadline_timer::time_point deadline_timer::expiry() const noexcept {
  return state_ ? state_->deadline : never;
}

}  // namespace comet
