// Internal: a client's per-send counters (client::metrics()), in per-thread
// shards: comet_client_requests_total{client, endpoint, code} and
// comet_client_request_duration_seconds{client}. An endpoint is a small
// label slot, given to an address when the client first dials it (under a
// lock, once per endpoint, never per send); past max_endpoint_labels the
// addresses share the "<other>" slot.
#pragma once

#include <comet/client.hpp>
#include <comet/errors.hpp>

#include "metrics_text.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace comet {

class client_metrics {
 public:
  static constexpr std::size_t max_endpoint_labels = 32;
  static constexpr std::string_view other_endpoint = "<other>";
  // ok, the codes a host answers (errc 1..12), then the client's own (errc 100..115).
  static constexpr std::size_t code_count = 29;

  // `label` names the client; `counting` false keeps no per-send counts
  // (client_options::metrics). A client of one peer has one endpoint,
  // `peer`; a client of a list (`peer` nullopt) up to max_endpoint_labels.
  client_metrics(std::string label, bool counting, std::optional<endpoint> peer);

  // The slot of an endpoint address, given on first sight (a client of one
  // peer: always its peer's).
  std::uint32_t slot_of(const endpoint& address);
  // A send ended at the endpoint of `slot`, ok or with `error`, after `took`.
  void sent(std::uint32_t slot, std::optional<errc> error, std::chrono::nanoseconds took) noexcept;
  // Outlier detection ejected the endpoint of `slot`.
  void ejected(std::uint32_t slot) noexcept;

  static std::size_t code_slot(std::optional<errc> error) noexcept;
  static std::string_view code_name(std::size_t slot) noexcept;

  // What a render reads of one client besides its counters.
  struct view {
    const client_metrics* metrics;
    client_stats stats;
    std::size_t in_flight = 0;
    bool endpoint_list = false;
    std::vector<endpoint_stats> endpoints;
  };
  // Every comet_client_* family, each once, with every client's series in it.
  static void render(std::string& out, const std::vector<view>& clients);

 private:
  static constexpr std::size_t list_slots = max_endpoint_labels + 1;
  static constexpr std::size_t histogram_cells = duration_buckets::cells;
  std::string escaped_label_;
  bool counting_;
  bool single_;
  counter_shards cells_;  // [histogram][slot 0's codes][slot 1's codes]...
  mutable std::mutex mutex_;
  std::vector<std::pair<std::string, std::string>> endpoints_;  // by slot: address, escaped
  std::array<std::atomic<std::uint64_t>, list_slots> ejections_{};
  // The label slot of `address` if it has one, else <other>'s; under the mutex.
  std::uint32_t find(std::string_view address) const;
};

}  // namespace comet
