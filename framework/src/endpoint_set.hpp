// Internal: the endpoints of a client made with a list (docs/api.md,
// "Several hosts"). Each endpoint is a client of one address (a
// client::impl of its own, with its own pool); the set picks one per send
// (the healthy one with the fewest sends outstanding, ties in turn), keeps
// their health (down after a failed connect, ejected by outlier detection),
// re-resolves names lazily, and sends a request again to another endpoint
// when it provably never reached a host, within the retry budget.
// Thread-safe: one mutex guards the choice and the health; the sends
// themselves run without it.
#pragma once

#include "client_impl.hpp"
#include "retry_window.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace comet {

class endpoint_set : public std::enable_shared_from_this<endpoint_set> {
 public:
  using clock = std::chrono::steady_clock;

  // `options` are the client's; each endpoint's client connects without
  // retries of its own (the set retries, over the other endpoints first).
  // `metrics` are the client's: its endpoints get their label slots there.
  endpoint_set(asio::any_io_executor ex, bool single_threaded, std::vector<endpoint> entries,
               client_options options, std::shared_ptr<const peer_info> describe_as,
               std::shared_ptr<client_metrics> metrics);

  // One attempt's work on an endpoint's client, within `timeout`.
  template <class T>
  using attempt_fn =
      std::function<asio::awaitable<T>(std::shared_ptr<client::impl>, std::chrono::milliseconds)>;

  // Runs `attempt` on the endpoint it picks, and again on others while the
  // failure is safe to send again (error::safe_to_retry(), or a lost
  // connection when `idempotent`), the deadline allows and the budget has
  // room; a refused connect everywhere is tried again after 50 ms, 100 ms
  // ... (connect_retries rounds). Completes with the first success, or
  // throws the last failure. Cancellation: the caller's, through the
  // attempt (a cancelled send is never sent again) and the wait between
  // rounds (terminal, partial). Outlives: nothing (the caller holds this).
  // `traceparent` (valid, or empty) goes with each attempt
  // (client::impl::deliver); `report` gets what the last attempt met.
  asio::awaitable<json::value> send(const std::string& action, const json::value& value,
                                    std::chrono::milliseconds timeout, bool idempotent,
                                    std::string_view traceparent, send_report& report);
  asio::awaitable<std::shared_ptr<detail::stream_channel>> open(
      attempt_fn<std::shared_ptr<detail::stream_channel>> attempt,
      std::chrono::milliseconds timeout);

  // Ends every endpoint's client now (close()) or once idle (async_close()).
  void close_now(const error& why);
  void close_when_idle(const error& why);

  client_stats stats() const;
  std::vector<endpoint_stats> endpoints() const;

 private:
  struct member;
  template <class T>
  asio::awaitable<T> with_failover(attempt_fn<T> attempt, std::chrono::milliseconds timeout,
                                   bool idempotent);

  // The endpoint a send goes to now, counted outstanding; null when none
  // may be used (every one tried by this send, or down). `probe_down`: a
  // down endpoint may be tried (a later round of a refused connect).
  std::shared_ptr<member> pick(const std::vector<const member*>& tried, bool probe_down);
  // An attempt on `m` ended: success, or the failure it met.
  void report(member& m, const error* failure);
  // Whether a name's addresses are due to be resolved again (and marks a
  // resolve as running when they are).
  bool resolve_due();
  asio::awaitable<void> resolve(clock::time_point deadline);
  void install(std::vector<std::shared_ptr<member>> resolved_names);
  // `address` is dialled (`target`, once resolved); `origin` is the entry.
  std::shared_ptr<member> make_member(endpoint address, const endpoint& origin,
                                      std::optional<tcp::endpoint> target);
  bool try_spend_retry();
  bool retired(const member& m) const;
  error all_down() const;  // under the mutex

  asio::any_io_executor executor_;
  bool single_threaded_;
  std::vector<endpoint> entries_;
  client_options options_;        // the endpoints' (connect_retries 0)
  std::size_t connect_rounds_;    // the client's connect_retries
  std::shared_ptr<asio::ssl::context> tls_;
  std::shared_ptr<const peer_info> describe_as_;
  std::shared_ptr<client_metrics> metrics_;
  bool has_names_ = false;

  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<member>> members_;
  // Endpoints a resolve dropped whose sends or streams still hold them (close_now ends them).
  std::vector<std::weak_ptr<client::impl>> retired_;
  std::size_t cursor_ = 0;  // where the next tie goes
  retry_window budget_;
  clock::time_point resolved_at_{};
  bool resolved_once_ = false;
  bool resolve_wanted_ = false;
  bool resolving_ = false;
  bool closed_ = false;
  std::optional<error> closed_why_;
  std::uint64_t retries_ = 0, retries_refused_ = 0, resolves_ = 0;
  std::minstd_rand jitter_{std::random_device{}()};
};

}  // namespace comet
