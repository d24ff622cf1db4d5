// Internal: the retry budget of a client of an endpoint list
// (client_options::retry_budget): within any 10 s, retries may number
// `ratio` of the sends that succeeded plus `per_second` a second. Counted in
// ten one-second buckets, so what a burst of failures may spend is bounded
// by what the last 10 s earned. Not thread-safe: the endpoint set's mutex
// guards it.
#pragma once

#include <comet/client.hpp>

#include <array>
#include <chrono>
#include <cstdint>

namespace comet {

class retry_window {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::size_t seconds = 10;

  explicit retry_window(retry_budget budget) : budget_(budget) {}

  void on_success(clock::time_point now) { bucket(now).successes += 1; }

  // Takes one retry from the budget; false when it is spent.
  bool try_spend(clock::time_point now) {
    bucket(now);  // ages out what is older than the window
    std::uint64_t successes = 0, retries = 0;
    for (const auto& b : buckets_) {
      successes += b.successes;
      retries += b.retries;
    }
    const double allowed = budget_.ratio * static_cast<double>(successes) +
                           static_cast<double>(budget_.per_second * seconds);
    if (static_cast<double>(retries) + 1 > allowed) return false;
    bucket(now).retries += 1;
    return true;
  }

 private:
  struct counts {
    std::int64_t second = -1;  // which second since the epoch of the clock
    std::uint64_t successes = 0;
    std::uint64_t retries = 0;
  };

  counts& bucket(clock::time_point now) {
    const std::int64_t second =
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    for (auto& b : buckets_)
      if (b.second >= 0 && b.second <= second - static_cast<std::int64_t>(seconds)) b = counts{};
    counts& b = buckets_[static_cast<std::size_t>(second) % seconds];
    if (b.second != second) b = counts{second, 0, 0};
    return b;
  }

  retry_budget budget_;
  std::array<counts, seconds> buckets_{};
};

}  // namespace comet
