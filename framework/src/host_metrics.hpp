// Internal: a host's counters, updated from any io thread with relaxed
// atomics and read as a consistent-enough snapshot by host::stats() and
// host::metrics(). The per-request ones (request_metrics) live in
// per-thread shards, so that io threads never share a cache line for them.
#pragma once

#include <comet/errors.hpp>
#include <comet/host.hpp>

#include "metrics_text.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// Requests by action label and answer code, and their durations in the
// Prometheus buckets (comet_host_requests_total,
// comet_host_request_duration_seconds, comet_host_in_flight). The action
// labels are fixed by set_actions() when the host starts (its routes can no
// longer change then): an action is a small index, so that counting a
// request is a few relaxed adds into the calling thread's shard, with no
// lock, no allocation and no map insertion.
class request_metrics {
 public:
  // The label of every action without a route of its own, and of answers
  // made before a request reached a handler (docs/observability.md).
  static constexpr std::string_view unrouted_label = "<unrouted>";
  static constexpr std::uint32_t unrouted = 0;
  // ok, then errc::bad_request .. errc::slow_consumer (another code counts
  // as remote_error).
  static constexpr int code_count = 13;

  // Once, before any request is counted: the labels are `actions` (sorted
  // and made unique here) after <unrouted>. From then on the table is read
  // only, so that index_of() and render() need no lock. `counting` false:
  // requests are not counted (host_options::metrics).
  void set_actions(std::vector<std::string> actions, bool counting = true);
  // The label of `action`: its own, or unrouted. A binary search over the
  // routes; allocates nothing.
  std::uint32_t index_of(std::string_view action) const noexcept;

  // A handler started, or finished (in any order over threads: the gauge
  // is the sum of the differences).
  void started() noexcept { add(cell_started, 1); }
  void finished() noexcept { add(cell_finished, 1); }
  // An answer to a request of label `action`; its duration when it has one
  // (unary requests; not a stream's end).
  void answered(std::uint32_t action, std::optional<errc> error,
                std::optional<std::chrono::nanoseconds> duration) noexcept;
  // Whether requests are counted (set_actions was called, counting on).
  bool counting() const noexcept { return ready_.load(std::memory_order_relaxed); }

  // Sums over the shards.
  std::uint64_t in_flight() const noexcept;
  // requests_served, error_responses and errors_by_code.
  void fill(host_stats& s) const;
  // The requests_total, request_duration_seconds and in_flight families,
  // in the text exposition format (0.0.4), appended to `out`.
  void render(std::string& out) const;

  static int code_slot(std::optional<errc> error) noexcept;
  static std::string_view code_name(int slot) noexcept;

 private:
  // Cells: [started, finished], then per action label its codes, its
  // duration buckets and their sum.
  static constexpr std::size_t cell_started = 0, cell_finished = 1, header_cells = 2;
  static constexpr std::size_t action_cells = code_count + duration_buckets::cells;
  void add(std::size_t cell, std::uint64_t n) noexcept {
    if (ready_.load(std::memory_order_relaxed)) cells_->add(cell, n);
  }
  std::uint64_t sum(std::size_t cell) const noexcept {
    return ready_.load(std::memory_order_acquire) ? cells_->sum(cell) : 0;
  }

  std::atomic<bool> ready_{false};
  std::vector<std::string> actions_;  // routes, sorted (without <unrouted>)
  std::vector<std::string> escaped_;  // by label: the label value as rendered
  std::unique_ptr<counter_shards> cells_;
};

class host_metrics {
 public:
  // A response's latency, for stats()'s percentiles: callers sample them
  // (the histogram is shared by every thread). Responses are counted in
  // `requests`.
  void latency(std::chrono::nanoseconds latency) noexcept { latency_.record(latency); }
  void received(std::size_t bytes) noexcept { bytes_received_.fetch_add(bytes, std::memory_order_relaxed); }
  void sent(std::size_t bytes) noexcept { bytes_sent_.fetch_add(bytes, std::memory_order_relaxed); }
  void accepted() noexcept { accepted_.fetch_add(1, std::memory_order_relaxed); }
  void refused() noexcept { refused_.fetch_add(1, std::memory_order_relaxed); }
  void aged() noexcept { aged_.fetch_add(1, std::memory_order_relaxed); }
  void tls_failed() noexcept { tls_failed_.fetch_add(1, std::memory_order_relaxed); }
  void tls_resumed() noexcept { tls_resumed_.fetch_add(1, std::memory_order_relaxed); }

  // Fills every field but uptime and connections_open.
  void fill(host_stats& s) const;
  std::uint64_t connections_refused() const noexcept { return refused_.load(std::memory_order_relaxed); }

  request_metrics requests;

 private:
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
