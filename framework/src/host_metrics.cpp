#include "host_metrics.hpp"

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

void host_metrics::response(std::optional<errc> error,
                            std::optional<std::chrono::nanoseconds> latency) noexcept {
  responses_.fetch_add(1, std::memory_order_relaxed);
  if (error) {
    const int slot = static_cast<int>(*error) - static_cast<int>(errc::bad_request);
    if (slot >= 0 && slot < error_slots)
      errors_[static_cast<std::size_t>(slot)].fetch_add(1, std::memory_order_relaxed);
  }
  if (latency) latency_.record(*latency);
}

void host_metrics::fill(host_stats& s) const {
  s.requests_served = responses_.load(std::memory_order_relaxed);
  s.error_responses = 0;
  for (int slot = 0; slot < error_slots; ++slot) {
    const auto n = errors_[static_cast<std::size_t>(slot)].load(std::memory_order_relaxed);
    s.error_responses += n;
    if (n == 0) continue;
    const auto code = static_cast<errc>(static_cast<int>(errc::bad_request) + slot);
    const auto name = wire_name(code);
    s.errors_by_code[name.empty() ? "remote_error" : std::string(name)] = n;
  }
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
