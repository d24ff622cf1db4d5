// Latency statistics for comet-bench: a fixed-size log-linear histogram of
// nanosecond durations, so a run of any length records every request in
// constant memory and still answers p50 / p99 / p99.9.
//
// Buckets: values below 2^sub_bits ns are exact; above, each power of two
// is split into 2^sub_bits equal sub-buckets, so a reported percentile is
// within 1/2^sub_bits (about 1.6%) of the true value. 64 exponents x 64
// sub-buckets x 8 bytes = 32 KiB per histogram.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <limits>

namespace comet_bench {

class latency_histogram {
 public:
  static constexpr unsigned sub_bits = 6;
  static constexpr std::uint64_t sub_count = std::uint64_t{1} << sub_bits;

  void record(std::uint64_t ns) noexcept {
    ++counts_[index_of(ns)];
    ++total_;
    min_ = std::min(min_, ns);
    max_ = std::max(max_, ns);
  }

  void merge(const latency_histogram& other) noexcept {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    total_ += other.total_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t min() const noexcept { return total_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }

  // The value at quantile q in [0, 1]: the midpoint of the bucket holding
  // the ceil(q * count)-th smallest sample, clamped to [min, max]. 0 when empty.
  std::uint64_t quantile(double q) const noexcept {
    if (total_ == 0) return 0;
    q = std::clamp(q, 0.0, 1.0);
    auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_) + 0.999999);
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(midpoint_of(i), min(), max_);
    }
    return max_;
  }

 private:
  static constexpr std::size_t buckets = 64 * sub_count;

  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < sub_count) return static_cast<std::size_t>(v);
    // v has `top` significant bits; keep the sub_bits below the leading one.
    const unsigned top = 64 - static_cast<unsigned>(std::countl_zero(v));
    const unsigned shift = top - 1 - sub_bits;
    const std::uint64_t sub = (v >> shift) & (sub_count - 1);
    return static_cast<std::size_t>((shift + 1) * sub_count + sub);
  }

  static std::uint64_t midpoint_of(std::size_t index) noexcept {
    if (index < sub_count) return index;
    const std::uint64_t shift = index / sub_count - 1;
    const std::uint64_t sub = index % sub_count;
    const std::uint64_t low = (sub_count + sub) << shift;
    return low + ((std::uint64_t{1} << shift) >> 1);
  }

  std::array<std::uint64_t, buckets> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

}  // namespace comet_bench
