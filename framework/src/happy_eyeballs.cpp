#include "happy_eyeballs.hpp"

#include "peer.hpp"

#include <comet/endpoint.hpp>
#include <comet/log.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace comet {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// What the attempts share with the race. Held by the race and by each
// pending connect's handler, so a late completion finds it alive.
struct race_state {
  struct attempt {
    explicit attempt(const asio::any_io_executor& ex, const tcp::endpoint& at)
        : socket(ex), to(at) {}
    tcp::socket socket;
    tcp::endpoint to;
    bool done = false;
    boost::system::error_code ec;
  };

  explicit race_state(const asio::any_io_executor& ex) : wake(ex) {}

  // Closes every attempt; the race completes at its next wake-up.
  void stop() noexcept {
    stopped = true;
    close_all();
    wake.cancel();
  }
  void close_all() noexcept {
    boost::system::error_code ignored;
    for (auto& a : attempts) a.socket.close(ignored);
  }

  std::deque<attempt> attempts;  // a deque: references stay valid as it grows
  asio::steady_timer wake;       // the next attempt's start, cut short by any completion
  boost::system::error_code last_failure;
  bool stopped = false;
};

}  // namespace

std::vector<tcp::endpoint> interleave_families(const std::vector<tcp::endpoint>& addresses) {
  if (addresses.empty()) return {};
  const auto first_family = addresses.front().protocol();
  std::vector<tcp::endpoint> first, other, out;
  for (const auto& a : addresses) (a.protocol() == first_family ? first : other).push_back(a);
  for (std::size_t i = 0; i < first.size() || i < other.size(); ++i) {
    if (i < first.size()) out.push_back(first[i]);
    if (i < other.size()) out.push_back(other[i]);
  }
  return out;
}

asio::awaitable<race_outcome> happy_eyeballs_connect(transport& t,
                                                     const std::vector<tcp::endpoint>& addresses,
                                                     const std::string& peer_name,
                                                     std::chrono::milliseconds stagger) {
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  const auto executor = co_await asio::this_coro::executor;
  const std::vector<tcp::endpoint> targets = addresses;
  const std::string peer = peer_name;
  auto race = std::make_shared<race_state>(t.socket().get_executor());
  t.also_on_close([race] { race->stop(); });

  std::size_t started = 0;
  auto last_start = std::chrono::steady_clock::now();
  race_outcome outcome;
  for (;;) {
    if (was_cancelled(cancellation)) race->stop();
    if (race->stopped) {
      outcome.ec = asio::error::operation_aborted;
      break;
    }
    std::optional<std::size_t> winner;
    std::size_t failed = 0;
    for (std::size_t i = 0; i < race->attempts.size() && !winner; ++i) {
      const auto& a = race->attempts[i];
      if (!a.done) continue;
      if (!a.ec) winner = i;
      else ++failed;
    }
    if (winner) {
      auto& won = race->attempts[*winner];
      outcome.reached = won.to;
      t.socket() = std::move(won.socket);
      race->close_all();
      break;
    }
    const bool all_failed = failed == race->attempts.size();
    const auto now = std::chrono::steady_clock::now();
    if (started < targets.size() && (all_failed || now >= last_start + stagger)) {
      // The handler runs on the race's executor, as the transport's expiry
      // and close() do: the state needs no lock.
      auto& a = race->attempts.emplace_back(t.socket().get_executor(), targets[started]);
      const std::size_t index = started++;
      last_start = now;
      if (get_log_level() <= log_level::debug)
        log(log_level::debug, "connecting to " + peer + ": trying " +
                                  endpoint{a.to.address().to_string(), a.to.port()}.to_string() +
                                  " (address " + std::to_string(index + 1) + " of " +
                                  std::to_string(targets.size()) + ")");
      auto completed = [race, index](boost::system::error_code ec) {
        auto& done = race->attempts[index];
        done.done = true;
        done.ec = ec;
        if (ec) race->last_failure = ec;
        race->wake.cancel();
      };
      a.socket.async_connect(a.to, asio::bind_executor(executor, std::move(completed)));
      continue;
    }
    if (all_failed) {  // and none left to start
      bool refused = false;
      for (const auto& a : race->attempts) refused = refused || a.ec == asio::error::connection_refused;
      outcome.ec = refused ? asio::error::connection_refused : race->last_failure;
      break;
    }
    // Until the next attempt is due, or (with none left) until an attempt
    // completes: each completion cancels this wait.
    race->wake.expires_at(started < targets.size() ? last_start + stagger
                                                   : asio::steady_timer::time_point::max());
    (void)co_await race->wake.async_wait(use_tuple);
  }
  t.also_on_close({});
  co_return outcome;
}

}  // namespace comet
