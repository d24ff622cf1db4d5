// Internal: the pieces every metrics family is made of. Counters kept in
// per-thread shards (no lock and no shared cache line per count), and the
// Prometheus text exposition format (0.0.4) they are rendered in.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

namespace comet {

// This thread's number, taken on its first count: io_pool threads, made
// one after another, get consecutive numbers and so shards of their own.
std::size_t metrics_thread_number() noexcept;

// `cells` counters per shard, a shard per thread (its number mod the shard
// count; threads that share one stay correct, the adds being atomic). A
// shard is allocated when a thread first counts into it, so memory follows
// the threads that count, not the machine's cores.
class counter_shards {
 public:
  explicit counter_shards(std::size_t cells);
  ~counter_shards();
  counter_shards(const counter_shards&) = delete;
  counter_shards& operator=(const counter_shards&) = delete;

  void add(std::size_t cell, std::uint64_t n) noexcept {
    shard()[cell].fetch_add(n, std::memory_order_relaxed);
  }
  // Over every shard.
  std::uint64_t sum(std::size_t cell) const noexcept;
  std::size_t cells() const noexcept { return cells_; }

 private:
  static constexpr std::size_t max_shards = 64;
  std::atomic<std::uint64_t>* shard() noexcept;
  std::atomic<std::uint64_t>* allocate(std::size_t index) noexcept;
  std::size_t cells_;
  std::size_t shard_count_;  // a power of two
  std::array<std::atomic<std::atomic<std::uint64_t>*>, max_shards> shards_{};
};

// Request durations in the Prometheus buckets, 50 us to 60 s, and +Inf
// after them (comet_host_request_duration_seconds and the client's).
namespace duration_buckets {
inline constexpr std::array<std::uint64_t, 19> bounds_ns{
    50'000,        100'000,       250'000,        500'000,        1'000'000,
    2'500'000,     5'000'000,     10'000'000,     25'000'000,     50'000'000,
    100'000'000,   250'000'000,   500'000'000,    1'000'000'000,  2'500'000'000,
    5'000'000'000, 10'000'000'000, 30'000'000'000, 60'000'000'000};
// Buckets, the last one +Inf; then the sum of the durations in nanoseconds.
inline constexpr std::size_t count = bounds_ns.size() + 1;
inline constexpr std::size_t cells = count + 1;
// The bucket a duration falls in (le: the first bound at or above it).
std::size_t of(std::uint64_t ns) noexcept;
}  // namespace duration_buckets

// A label as rendered: its value is escaped by the appenders unless
// `escaped` says it was already (append_label_value).
struct metric_label {
  std::string_view name;
  std::string_view value;
  bool escaped = false;
};

// Escapes a label value for the text exposition format: \\, \" and \n.
void append_label_value(std::string& out, std::string_view value);
// "# HELP name help\n# TYPE name type\n".
void append_family_header(std::string& out, std::string_view name, std::string_view type,
                          std::string_view help);
// "name{a="x",b="y"} value\n".
void append_sample(std::string& out, std::string_view name,
                   std::initializer_list<metric_label> labels, std::uint64_t value);
// A histogram's _bucket, _sum and _count lines, from `cells`:
// duration_buckets::count buckets (not cumulative) and the sum in ns.
void append_duration_histogram(std::string& out, std::string_view name,
                               std::initializer_list<metric_label> labels,
                               const std::array<std::uint64_t, duration_buckets::cells>& cells);

}  // namespace comet
