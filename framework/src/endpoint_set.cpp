#include "endpoint_set.hpp"

#include <comet/log.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace comet {
namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::chrono::milliseconds left_until(endpoint_set::clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - endpoint_set::clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

enum class failure_kind { connect, transport, answered, neutral };

failure_kind kind_of(const error& e) {
  if (e.code().category() != error_category()) return failure_kind::neutral;
  switch (static_cast<errc>(e.code().value())) {
    case errc::peer_offline:
    case errc::connect_timeout:
    case errc::unresolved: return failure_kind::connect;
    case errc::connection_closed:
    case errc::request_timeout:
    case errc::protocol_error:
    case errc::tls_error: return failure_kind::transport;
    case errc::cancelled:
    case errc::client_closed:
    case errc::queue_full:
    case errc::unread:
    case errc::would_deadlock:
    case errc::usage_error:
    case errc::unknown_client:
    case errc::bind_failed:
    case errc::unsupported: return failure_kind::neutral;
    default: return failure_kind::answered;  // the host answered: it is up
  }
}

// A name's addresses, within `deadline`. Cancellation: the caller's
// (terminal, partial) cancels the resolver. Runs the resolver on a strand
// of its own, so that its deadline and a cancellation never race.
asio::awaitable<std::vector<tcp::endpoint>> resolve_name(const endpoint& name,
                                                         endpoint_set::clock::time_point deadline,
                                                         boost::system::error_code& failure) {
  auto strand = asio::make_strand(co_await asio::this_coro::executor);
  auto resolver = std::make_shared<tcp::resolver>(strand);
  auto timer = std::make_shared<asio::steady_timer>(strand, deadline);
  auto initiate = [&](auto handler) {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected())
      slot.assign([resolver, strand](asio::cancellation_type) {
        asio::post(strand, [resolver] { resolver->cancel(); });
      });
    resolver->async_resolve(name.ip, std::to_string(name.port), std::move(handler));
  };
  using results = tcp::resolver::results_type;
  const auto resolving = [&] {
    return asio::async_initiate<decltype(use_tuple), void(boost::system::error_code, results)>(
        initiate, use_tuple);
  };
  auto pending = resolving();
  timer->async_wait([resolver](boost::system::error_code ec) {
    if (!ec) resolver->cancel();
  });
  auto [ec, found] = co_await std::move(pending);
  asio::post(strand, [timer] { timer->cancel(); });
  std::vector<tcp::endpoint> addresses;
  failure = ec;
  if (ec) co_return addresses;
  for (const auto& entry : found)
    if (std::find(addresses.begin(), addresses.end(), entry.endpoint()) == addresses.end())
      addresses.push_back(entry.endpoint());
  co_return addresses;
}
}  // namespace

struct endpoint_set::member {
  endpoint address;  // dialled: an address, or a name not yet resolved
  endpoint origin;   // the list's entry it comes from
  std::string entry;
  bool from_name = false;
  std::shared_ptr<client::impl> via;
  std::size_t outstanding = 0;
  std::uint64_t sends = 0, failures = 0, ejections = 0;
  std::size_t consecutive = 0;  // transport failures in a row
  bool down = false;
  clock::time_point down_until{};
  std::chrono::milliseconds down_backoff{0};
  bool ejected = false;
  clock::time_point ejected_until{};
  std::size_t multiplier = 0;  // grows with each ejection, reset after a long healthy spell
  bool retired = false;        // no longer resolved: sends that picked it go elsewhere
  std::string last_failure;

  bool usable(clock::time_point now, bool probe_down) const {
    return !down || probe_down || now >= down_until;
  }
};

endpoint_set::endpoint_set(asio::any_io_executor ex, bool single_threaded,
                           std::vector<endpoint> entries, client_options options,
                           std::shared_ptr<const peer_info> describe_as,
                           std::shared_ptr<client_metrics> metrics)
    : executor_(std::move(ex)),
      single_threaded_(single_threaded),
      entries_(std::move(entries)),
      options_(std::move(options)),
      connect_rounds_(options_.connect_retries),
      tls_(describe_as->tls),
      describe_as_(std::move(describe_as)),
      metrics_(std::move(metrics)),
      budget_(options_.retry_budget) {
  options_.connect_retries = 0;
  for (const auto& e : entries_) {
    if (e.is_address()) {
      const tcp::endpoint address(asio::ip::make_address(e.ip), e.port);
      const bool seen = std::any_of(members_.begin(), members_.end(), [&](const auto& m) {
        return m->address == endpoint{address.address().to_string(), e.port};
      });
      if (!seen) members_.push_back(make_member({address.address().to_string(), e.port}, e, address));
    } else {
      // Until its first resolve, a name is one endpoint that resolves for
      // each connection (as a client of one peer does).
      has_names_ = true;
      auto m = make_member(e, e, std::nullopt);
      m->from_name = true;
      members_.push_back(std::move(m));
    }
  }
}

std::shared_ptr<endpoint_set::member> endpoint_set::make_member(endpoint address,
                                                                const endpoint& origin,
                                                                std::optional<tcp::endpoint> target) {
  auto m = std::make_shared<member>();
  m->address = address;
  m->origin = origin;
  m->entry = origin.to_string();
  // A name's address keeps the name as its peer: TLS checks the
  // certificate against the name, and messages say both.
  const endpoint peer = origin.is_address() ? address : origin;
  auto sessions = tls_ ? std::make_shared<tls_session_cache>() : nullptr;
  auto info = std::make_shared<const peer_info>(
      peer_info{std::move(peer), options_, target, tls_, std::move(sessions)});
  m->via = std::make_shared<client::impl>(executor_, single_threaded_, std::move(info));
  m->via->dialled = address;
  m->via->metrics_slot = metrics_->slot_of(address);
  return m;
}

bool endpoint_set::resolve_due() {
  std::lock_guard lock(mutex_);
  if (!has_names_ || resolving_ || closed_) return false;
  const auto now = clock::now();
  if (resolved_once_ && !resolve_wanted_ && now - resolved_at_ < options_.resolve_max_age)
    return false;
  resolving_ = true;
  return true;
}

asio::awaitable<void> endpoint_set::resolve(clock::time_point deadline) {
  struct done_scope {
    endpoint_set& set;
    ~done_scope() {
      std::lock_guard lock(set.mutex_);
      set.resolving_ = false;
      set.resolve_wanted_ = false;
      set.resolved_once_ = true;
      set.resolved_at_ = clock::now();
      ++set.resolves_;
    }
  } done{*this};
  std::vector<std::shared_ptr<member>> resolved;
  std::vector<std::string> failed;
  for (const auto& e : entries_) {
    if (e.is_address()) continue;
    boost::system::error_code ec;
    const auto addresses = co_await resolve_name(e, deadline, ec);
    if (addresses.empty()) {
      failed.push_back(e.to_string());
      log(log_level::debug, "resolving " + e.to_string() + " for " + describe_as_->describe() +
                                " failed: " + (ec ? ec.message() : std::string("no addresses")));
      continue;
    }
    for (const auto& a : addresses) {
      auto m = std::make_shared<member>();
      m->address = {a.address().to_string(), a.port()};
      m->origin = e;
      m->entry = e.to_string();
      m->from_name = true;
      resolved.push_back(std::move(m));  // made into an endpoint by install(), if new
    }
  }
  {
    // Names that did not resolve keep what they had.
    std::lock_guard lock(mutex_);
    for (const auto& m : members_)
      if (std::find(failed.begin(), failed.end(), m->entry) != failed.end() && m->from_name)
        resolved.push_back(m);
  }
  install(std::move(resolved));
}

void endpoint_set::install(std::vector<std::shared_ptr<member>> names) {
  std::vector<std::shared_ptr<member>> fresh;
  {
    // New addresses get an endpoint (made outside the lock: it may read TLS settings).
    std::lock_guard lock(mutex_);
    for (auto& n : names) {
      const bool known = std::any_of(members_.begin(), members_.end(), [&](const auto& m) {
        return m.get() == n.get() || (m->entry == n->entry && m->address == n->address);
      });
      if (!known) fresh.push_back(n);
    }
  }
  for (auto& n : fresh) {
    const tcp::endpoint target(asio::ip::make_address(n->address.ip), n->address.port);
    auto made = make_member(n->address, n->origin, target);
    made->from_name = true;
    n = std::move(made);
  }
  std::lock_guard lock(mutex_);
  if (closed_) {
    for (auto& n : fresh) n->via->close_pools(*closed_why_);
    return;
  }
  std::vector<std::shared_ptr<member>> next;
  for (auto& m : members_) {
    const bool kept = !m->from_name || std::any_of(names.begin(), names.end(), [&](const auto& n) {
      return n.get() == m.get() || (n->entry == m->entry && n->address == m->address);
    });
    if (kept) {
      next.push_back(m);
    } else {
      // Sends and streams on it go on; it is no longer picked, and closes
      // when the last of them lets go of it.
      m->retired = true;
      retired_.push_back(m->via);
      log(log_level::debug, describe_as_->describe() + ": " + m->address.to_string() + " (" +
                                m->entry + ") no longer resolves; it takes no new sends");
    }
  }
  for (auto& n : fresh) next.push_back(n);
  members_ = std::move(next);
  std::erase_if(retired_, [](const auto& r) { return r.expired(); });
  cursor_ %= std::max<std::size_t>(1, members_.size());
}

std::shared_ptr<endpoint_set::member> endpoint_set::pick(const std::vector<const member*>& tried,
                                                         bool probe_down) {
  std::lock_guard lock(mutex_);
  if (closed_ || members_.empty()) return nullptr;
  const auto now = clock::now();
  std::size_t healthy = 0;
  for (auto& m : members_) {
    if (m->ejected && now >= m->ejected_until) m->ejected = false;
    if (m->usable(now, false) && !m->ejected) ++healthy;
  }
  // Below the panic threshold, outlier detection may be what is wrong.
  const bool panic = healthy * 100 < options_.outlier_detection.panic_threshold_percent * members_.size();
  const std::size_t n = members_.size();
  std::size_t chosen = n;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t at = (cursor_ + i) % n;
    const member& m = *members_[at];
    if (std::find(tried.begin(), tried.end(), &m) != tried.end()) continue;
    if (!m.usable(now, probe_down) || (m.ejected && !panic)) continue;
    if (chosen == n || m.outstanding < members_[chosen]->outstanding) chosen = at;
  }
  if (chosen == n) return nullptr;
  cursor_ = (chosen + 1) % n;
  ++members_[chosen]->outstanding;
  return members_[chosen];
}

void endpoint_set::report(member& m, const error* failure) {
  std::lock_guard lock(mutex_);
  --m.outstanding;
  ++m.sends;
  const auto now = clock::now();
  if (!failure) {
    m.consecutive = 0;
    m.down = false;
    m.down_backoff = std::chrono::milliseconds(0);
    budget_.on_success(now);
    return;
  }
  switch (kind_of(*failure)) {
    case failure_kind::neutral: --m.sends; return;
    case failure_kind::answered: m.consecutive = 0; return;
    case failure_kind::connect: {
      ++m.failures;
      m.last_failure = failure->what();
      if (m.from_name) resolve_wanted_ = true;
      // 200 ms, doubling to 5 s, each drawn from [75%, 125%] (as a pool
      // marks its peer down), so that clients do not all come back at once.
      using std::chrono::milliseconds;
      m.down_backoff = m.down_backoff.count() == 0 ? milliseconds(200)
                                                   : std::min(m.down_backoff * 2, milliseconds(5000));
      std::uniform_int_distribution<long long> spread(m.down_backoff.count() * 3 / 4,
                                                      m.down_backoff.count() * 5 / 4);
      m.down = true;
      m.down_until = now + milliseconds(spread(jitter_));
      return;
    }
    case failure_kind::transport: break;
  }
  ++m.failures;
  m.last_failure = failure->what();
  const auto& od = options_.outlier_detection;
  if (od.consecutive_failures == 0 || ++m.consecutive < od.consecutive_failures || m.ejected) return;
  std::size_t ejected = 0, healthy = 0;
  for (const auto& other : members_) {
    if (other->ejected) ++ejected;
    else if (other->usable(now, false)) ++healthy;
  }
  const std::size_t may_eject =
      std::max<std::size_t>(1, members_.size() * od.max_ejection_percent / 100);
  const bool listed = std::any_of(members_.begin(), members_.end(),
                                  [&](const auto& x) { return x.get() == &m; });
  // Never the last healthy endpoint, nor past the share that may be out.
  if (!listed || ejected >= may_eject || healthy <= 1) return;
  if (now - m.ejected_until > od.max_ejection_time) m.multiplier = 0;
  ++m.multiplier;
  ++m.ejections;
  metrics_->ejected(m.via->metrics_slot);
  m.consecutive = 0;
  m.ejected = true;
  const std::chrono::milliseconds length = std::min<std::chrono::milliseconds>(
      od.base_ejection_time * static_cast<std::chrono::milliseconds::rep>(m.multiplier),
                               std::max(od.base_ejection_time, od.max_ejection_time));
  m.ejected_until = now + length;
  log(log_level::info, describe_as_->describe() + ": " + m.address.to_string() + " failed " +
                           std::to_string(od.consecutive_failures) +
                           " times in a row; left out for " + std::to_string(length.count()) +
                           " ms (outlier detection): " + m.last_failure);
}

bool endpoint_set::retired(const member& m) const {
  std::lock_guard lock(mutex_);
  return m.retired;
}

bool endpoint_set::try_spend_retry() {
  std::lock_guard lock(mutex_);
  if (budget_.try_spend(clock::now())) {
    ++retries_;
    return true;
  }
  ++retries_refused_;
  return false;
}

error endpoint_set::all_down() const {
  std::string states;
  for (const auto& m : members_) {
    states += states.empty() ? "" : "; ";
    states += m->address.to_string() + (m->ejected ? " ejected" : m->down ? " down" : " tried");
    if (!m->last_failure.empty()) states += " (" + m->last_failure + ")";
  }
  return error(errc::peer_offline, "no endpoint of " + describe_as_->describe() +
                                       " can take the send now: " +
                                       (states.empty() ? std::string("none resolved") : states));
}

template <class T>
asio::awaitable<T> endpoint_set::with_failover(attempt_fn<T> attempt,
                                               std::chrono::milliseconds timeout, bool idempotent) {
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  const auto deadline = clock::now() + timeout;
  std::vector<const member*> tried;
  // The failure of the last attempt, when it may be sent again.
  std::optional<error> last;
  std::size_t round = 0;
  for (;;) {
    if (resolve_due())
      co_await resolve(std::min(deadline, clock::now() + options_.connect_timeout));
    if (was_cancelled(cancellation)) throw describe_as_->cancelled();
    std::shared_ptr<member> m = pick(tried, round > 0);
    if (!m) {
      // Every endpoint refused the connect: another round after a backoff,
      // as a client of one peer retries a refused connect.
      if (last && last->code() == errc::peer_offline && round < connect_rounds_ &&
          clock::now() + peer_info::retry_delay(round) < deadline) {
        asio::steady_timer backoff(co_await asio::this_coro::executor,
                                   peer_info::retry_delay(round));
        co_await backoff.async_wait(use_tuple);
        if (was_cancelled(cancellation)) throw describe_as_->cancelled();
        ++round;
        tried.clear();
        continue;
      }
      if (last) throw std::move(*last);
      std::lock_guard lock(mutex_);
      if (closed_) throw *closed_why_;
      throw all_down();
    }
    // Sent again only where it can go: the budget pays for attempts, not for looking.
    if (last && !try_spend_retry()) {
      {
        std::lock_guard lock(mutex_);
        --m->outstanding;
      }
      throw error(static_cast<errc>(last->code().value()),
                  std::string(last->what()) +
                      "; not sent to another endpoint: the retry budget "
                      "(client_options::retry_budget) is spent");
    }
    if (last)
      log(log_level::debug, describe_as_->describe() + ": sending again to " +
                                m->address.to_string() + " after: " + last->what());
    std::optional<error> failure;
    try {
      T result = co_await attempt(m->via, left_until(deadline));
      report(*m, nullptr);
      co_return result;
    } catch (const error& e) {
      report(*m, &e);
      failure = e;
    } catch (...) {
      std::lock_guard lock(mutex_);
      --m->outstanding;
      throw;
    }
    const errc code = static_cast<errc>(failure->code().value());
    tried.push_back(m.get());
    // Picked just before a resolve retired it: it never took the send.
    if (code == errc::client_closed && retired(*m)) continue;
    const bool again =
        failure->safe_to_retry() || (idempotent && code == errc::connection_closed);
    if (!again || clock::now() >= deadline) throw std::move(*failure);
    last = std::move(failure);
  }
}

asio::awaitable<json::value> endpoint_set::send(const std::string& action,
                                                const json::value& value,
                                                std::chrono::milliseconds timeout,
                                                bool idempotent, std::string_view traceparent,
                                                send_report& report) {
  attempt_fn<json::value> attempt = [&action, &value, traceparent, &report](
                                        std::shared_ptr<client::impl> via,
                                        std::chrono::milliseconds left) {
    return client::impl::deliver(std::move(via), action, value, left, traceparent, report);
  };
  co_return co_await with_failover(std::move(attempt), timeout, idempotent);
}

asio::awaitable<std::shared_ptr<detail::stream_channel>> endpoint_set::open(
    attempt_fn<std::shared_ptr<detail::stream_channel>> attempt,
    std::chrono::milliseconds timeout) {
  co_return co_await with_failover(std::move(attempt), timeout, false);
}

void endpoint_set::close_now(const error& why) {
  std::vector<std::shared_ptr<client::impl>> all;
  {
    std::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    closed_why_ = why;
    for (const auto& m : members_) all.push_back(m->via);
    for (const auto& r : retired_)
      if (auto held = r.lock()) all.push_back(std::move(held));
    retired_.clear();
  }
  for (const auto& via : all) {
    via->tracker.close_now();
    via->close_pools(why);
  }
}

void endpoint_set::close_when_idle(const error& why) {
  // The client's own tracker was idle: so is every endpoint's.
  close_now(why);
}

client_stats endpoint_set::stats() const {
  std::lock_guard lock(mutex_);
  client_stats total;
  for (const auto& m : members_) {
    const client_stats s = m->via->pool ? m->via->pool->stats() : client_stats{};
    total.queued += s.queued;
    total.queued_total += s.queued_total;
    total.queue_wakeups += s.queue_wakeups;
    total.connects += s.connects;
  }
  total.retries = retries_;
  total.retries_refused = retries_refused_;
  total.resolves = resolves_;
  return total;
}

std::vector<endpoint_stats> endpoint_set::endpoints() const {
  std::lock_guard lock(mutex_);
  const auto now = clock::now();
  std::vector<endpoint_stats> out;
  for (const auto& m : members_) {
    endpoint_stats s;
    s.address = m->address;
    s.entry = m->entry;
    s.state = m->ejected && now < m->ejected_until ? endpoint_stats::health::ejected
              : m->down && now < m->down_until     ? endpoint_stats::health::down
                                                   : endpoint_stats::health::healthy;
    s.outstanding = m->outstanding;
    s.sends = m->sends;
    s.failures = m->failures;
    s.ejections = m->ejections;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace comet
