// Internal: a host's counters, updated from any io thread with relaxed
// atomics and read as a consistent-enough snapshot by host::stats().
#pragma once

#include <comet/errors.hpp>
#include <comet/host.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>

namespace comet {

// Latencies in a log-linear histogram: 8 sub-buckets per power of two of
// nanoseconds, so a percentile is within 12.5% of the truth, in fixed memory.
class latency_histogram {
 public:
  void record(std::chrono::nanoseconds latency) noexcept;
  // The latency below which `fraction` (0..1) of the samples fall.
  std::chrono::nanoseconds percentile(double fraction) const noexcept;

 private:
  static constexpr int sub_buckets = 8;
  static constexpr int bucket_count = 64 * sub_buckets;
  static int bucket_of(std::uint64_t ns) noexcept;
  static std::uint64_t upper_bound_of(int bucket) noexcept;
  std::array<std::atomic<std::uint64_t>, bucket_count> counts_{};
};

class host_metrics {
 public:
  // Counts a response. Its latency is recorded when given: callers sample
  // it (reading the clock for every response costs more than it tells).
  void response(std::optional<errc> error, std::optional<std::chrono::nanoseconds> latency) noexcept;
  void received(std::size_t bytes) noexcept { bytes_received_.fetch_add(bytes, std::memory_order_relaxed); }
  void sent(std::size_t bytes) noexcept { bytes_sent_.fetch_add(bytes, std::memory_order_relaxed); }
  void accepted() noexcept { accepted_.fetch_add(1, std::memory_order_relaxed); }
  void refused() noexcept { refused_.fetch_add(1, std::memory_order_relaxed); }
  void aged() noexcept { aged_.fetch_add(1, std::memory_order_relaxed); }
  void tls_failed() noexcept { tls_failed_.fetch_add(1, std::memory_order_relaxed); }
  void tls_resumed() noexcept { tls_resumed_.fetch_add(1, std::memory_order_relaxed); }

  // Fills every field but uptime and connections_open.
  void fill(host_stats& s) const;

 private:
  static constexpr int error_slots = 12;  // errc::bad_request .. errc::slow_consumer
  std::atomic<std::uint64_t> responses_{0};
  std::array<std::atomic<std::uint64_t>, error_slots> errors_{};
  std::atomic<std::uint64_t> bytes_received_{0};
  std::atomic<std::uint64_t> bytes_sent_{0};
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::uint64_t> aged_{0};
  std::atomic<std::uint64_t> tls_failed_{0};
  std::atomic<std::uint64_t> tls_resumed_{0};
  latency_histogram latency_;
};

}  // namespace comet
