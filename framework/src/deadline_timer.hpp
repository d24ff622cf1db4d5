// Internal: the one timer discipline of comet-net. Every bound on a socket
// or a request (connect, handshake, request, idle, per-request deadlines of
// a pool) is a deadline_timer, as Beast's basic_stream keeps an expiry.
//
// The deadline may move. Moving it later only stores it: the timer, when it
// fires early, re-arms for the stored deadline, so a hot path pays a store,
// not a timer operation. Moving it earlier re-arms. When the deadline
// passes, `on_expire` runs (it may set a new deadline). With no deadline
// set no wait is pending, so an idle owner holds no work and io.run() can
// return. Everything runs on the owner's serial executor; the owner holds
// the timer and a pending wait holds it only weakly, so the timer ends
// with its owner (or at stop()).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <functional>
#include <memory>

namespace comet {

namespace asio = boost::asio;

class deadline_timer {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;
  static constexpr time_point never = time_point::max();

  deadline_timer(const asio::any_io_executor& executor, std::function<void()> on_expire);
  deadline_timer(const deadline_timer&) = delete;
  deadline_timer& operator=(const deadline_timer&) = delete;
  ~deadline_timer();

  // Sets the deadline (never: none).
  void expires_at(time_point deadline);
  void expires_after(clock::duration d) { expires_at(clock::now() + d); }
  // Brings the deadline forward to `deadline` if it is later.
  void expires_by(time_point deadline) {
    if (deadline < expiry()) expires_at(deadline);
  }
  // No deadline: cancels the pending wait.
  void expires_never();
  // For good: no wait is pending afterwards, and setting a deadline does nothing.
  void stop();
  time_point expiry() const noexcept;

 private:
  struct state;
  static void arm(const std::shared_ptr<state>& s, time_point at);
  static void fired(const std::shared_ptr<state>& s);
  // The state (and its Asio timer) is made when a deadline is first set:
  // an owner that never sets one (a connection's drain timers, mostly)
  // keeps only these.
  asio::any_io_executor executor_;
  std::function<void()> on_expire_;
  bool stopped_ = false;
  std::shared_ptr<state> state_;
};

}  // namespace comet
