#include "host_metrics.hpp"

#include <algorithm>
#include <bit>

namespace comet {

int latency_histogram::bucket_of(std::uint64_t ns) noexcept {
  if (ns < sub_buckets) return static_cast<int>(ns);
  const int power = std::bit_width(ns) - 1;  // ns in [2^power, 2^(power+1))
  const int shift = power - 3;               // 8 = 2^3 sub-buckets per power
  const int sub = static_cast<int>((ns >> shift) & (sub_buckets - 1));
  return (power - 2) * sub_buckets + sub;
}

std::uint64_t latency_histogram::upper_bound_of(int bucket) noexcept {
  if (bucket < sub_buckets) return static_cast<std::uint64_t>(bucket) + 1;
  const int power = bucket / sub_buckets + 2;
  const int sub = bucket % sub_buckets;
  const int shift = power - 3;
  return ((static_cast<std::uint64_t>(sub_buckets + sub) + 1) << shift);
}

void latency_histogram::record(std::chrono::nanoseconds latency) noexcept {
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, latency.count()));
  counts_[static_cast<std::size_t>(std::min(bucket_of(ns), bucket_count - 1))].fetch_add(
      1, std::memory_order_relaxed);
}

std::chrono::nanoseconds latency_histogram::percentile(double fraction) const noexcept {
  std::uint64_t total = 0;
  for (const auto& c : counts_) total += c.load(std::memory_order_relaxed);
  if (total == 0) return {};
  const auto rank = static_cast<std::uint64_t>(fraction * static_cast<double>(total - 1)) + 1;
  std::uint64_t seen = 0;
  for (int b = 0; b < bucket_count; ++b) {
    seen += counts_[static_cast<std::size_t>(b)].load(std::memory_order_relaxed);
    if (seen >= rank) return std::chrono::nanoseconds(upper_bound_of(b));
  }
  return std::chrono::nanoseconds(upper_bound_of(bucket_count - 1));
}

int request_metrics::code_slot(std::optional<errc> error) noexcept {
  if (!error) return 0;
  const int code = static_cast<int>(*error);
  return code >= 1 && code < code_count ? code : static_cast<int>(errc::remote_error);
}

std::string_view request_metrics::code_name(int slot) noexcept {
  if (slot == 0) return "ok";
  const auto name = wire_name(static_cast<errc>(slot));
  return name.empty() ? std::string_view("remote_error") : name;
}

void request_metrics::set_actions(std::vector<std::string> actions, bool counting) {
  std::sort(actions.begin(), actions.end());
  actions.erase(std::unique(actions.begin(), actions.end()), actions.end());
  actions_ = std::move(actions);
  escaped_.clear();
  escaped_.emplace_back(unrouted_label);
  for (const auto& a : actions_) {
    std::string text;
    append_label_value(text, a);
    escaped_.push_back(std::move(text));
  }
  if (!counting) return;
  cells_ = std::make_unique<counter_shards>(header_cells + escaped_.size() * action_cells);
  ready_.store(true, std::memory_order_release);
}

std::uint32_t request_metrics::index_of(std::string_view action) const noexcept {
  const auto it = std::lower_bound(actions_.begin(), actions_.end(), action,
                                   [](const std::string& a, std::string_view b) { return a < b; });
  if (it == actions_.end() || *it != action) return unrouted;
  return static_cast<std::uint32_t>(it - actions_.begin()) + 1;
}

void request_metrics::answered(std::uint32_t action, std::optional<errc> error,
                               std::optional<std::chrono::nanoseconds> duration) noexcept {
  if (!ready_.load(std::memory_order_relaxed) || action >= escaped_.size()) return;
  const std::size_t first = header_cells + action * action_cells;
  cells_->add(first + static_cast<std::size_t>(code_slot(error)), 1);
  if (!duration) return;
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, duration->count()));
  cells_->add(first + code_count + duration_buckets::of(ns), 1);
  cells_->add(first + code_count + duration_buckets::count, ns);
}

// Finished may run ahead of started in one shard, never in the sum; the
// unsigned differences add up right.
std::uint64_t request_metrics::in_flight() const noexcept {
  const auto started = sum(cell_started);
  const auto finished = sum(cell_finished);
  return started > finished ? started - finished : 0;
}

void request_metrics::fill(host_stats& s) const {
  s.requests_served = 0;
  s.error_responses = 0;
  if (!ready_.load(std::memory_order_acquire)) return;
  for (int code = 0; code < code_count; ++code) {
    std::uint64_t n = 0;
    for (std::size_t a = 0; a < escaped_.size(); ++a)
      n += sum(header_cells + a * action_cells + static_cast<std::size_t>(code));
    s.requests_served += n;
    if (code == 0 || n == 0) continue;
    s.error_responses += n;
    s.errors_by_code[std::string(code_name(code))] += n;
  }
}

void request_metrics::render(std::string& out) const {
  // Every route is listed from the start, counted or not (so that rate()
  // sees its first requests).
  const std::size_t labels = escaped_.size();
  append_family_header(out, "comet_host_requests_total", "counter",
                       "Requests answered, by action and answer code (\"ok\", or the error "
                       "code answered).");
  for (std::size_t a = 0; a < labels; ++a) {
    const std::size_t first = header_cells + a * action_cells;
    for (int code = 0; code < code_count; ++code) {
      const auto n = sum(first + static_cast<std::size_t>(code));
      // Every action's "ok" is there from the start; an error code once it
      // was answered.
      if (n == 0 && code != 0) continue;
      append_sample(out, "comet_host_requests_total",
                    {{"action", escaped_[a], true}, {"code", code_name(code), true}}, n);
    }
  }
  append_family_header(out, "comet_host_request_duration_seconds", "histogram",
                       "Time from a request's arrival to its answer, by action (streams and "
                       "subscriptions excluded).");
  for (std::size_t a = 0; a < labels; ++a) {
    const std::size_t first = header_cells + a * action_cells + code_count;
    std::array<std::uint64_t, duration_buckets::cells> cells{};
    for (std::size_t b = 0; b < cells.size(); ++b) cells[b] = sum(first + b);
    append_duration_histogram(out, "comet_host_request_duration_seconds",
                              {{"action", escaped_[a], true}}, cells);
  }
  append_family_header(out, "comet_host_in_flight", "gauge",
                       "Requests whose coroutine handler is running.");
  append_sample(out, "comet_host_in_flight", {}, in_flight());
}

void host_metrics::fill(host_stats& s) const {
  requests.fill(s);
  s.bytes_received = bytes_received_.load(std::memory_order_relaxed);
  s.bytes_sent = bytes_sent_.load(std::memory_order_relaxed);
  s.connections_accepted = accepted_.load(std::memory_order_relaxed);
  s.connections_refused = refused_.load(std::memory_order_relaxed);
  s.connections_aged = aged_.load(std::memory_order_relaxed);
  s.tls_handshakes_failed = tls_failed_.load(std::memory_order_relaxed);
  s.tls_sessions_resumed = tls_resumed_.load(std::memory_order_relaxed);
  using std::chrono::duration_cast;
  using std::chrono::microseconds;
  s.latency_p50 = duration_cast<microseconds>(latency_.percentile(0.50));
  s.latency_p99 = duration_cast<microseconds>(latency_.percentile(0.99));
  s.latency_p999 = duration_cast<microseconds>(latency_.percentile(0.999));
}

}  // namespace comet
