#include "client_metrics.hpp"

#include <algorithm>

namespace comet {

namespace {
constexpr auto first_local = static_cast<int>(errc::peer_offline);
constexpr auto last_local = static_cast<int>(errc::unsupported);
constexpr std::size_t wire_codes = static_cast<std::size_t>(errc::slow_consumer);  // 1..12
static_assert(client_metrics::code_count == 1 + wire_codes + (last_local - first_local + 1));

std::string escaped(std::string_view text) {
  std::string out;
  append_label_value(out, text);
  return out;
}
}  // namespace

client_metrics::client_metrics(std::string label, bool counting, std::optional<endpoint> peer)
    : escaped_label_(escaped(label)),
      counting_(counting),
      single_(peer.has_value()),
      cells_(histogram_cells + (peer ? 1 : list_slots) * code_count) {
  if (peer) {
    const auto text = peer->to_string();
    endpoints_.emplace_back(text, escaped(text));
  }
}

std::size_t client_metrics::code_slot(std::optional<errc> error) noexcept {
  if (!error) return 0;
  const int code = static_cast<int>(*error);
  if (code >= 1 && static_cast<std::size_t>(code) <= wire_codes) return static_cast<std::size_t>(code);
  if (code >= first_local && code <= last_local)
    return 1 + wire_codes + static_cast<std::size_t>(code - first_local);
  return static_cast<std::size_t>(errc::remote_error);
}

std::string_view client_metrics::code_name(std::size_t slot) noexcept {
  if (slot == 0) return "ok";
  const int code = slot <= wire_codes ? static_cast<int>(slot)
                                      : first_local + static_cast<int>(slot - 1 - wire_codes);
  const auto name = wire_name(static_cast<errc>(code));
  return name.empty() ? std::string_view("remote_error") : name;
}

std::uint32_t client_metrics::find(std::string_view address) const {
  for (std::size_t i = 0; i < endpoints_.size(); ++i)
    if (endpoints_[i].first == address) return static_cast<std::uint32_t>(i);
  return static_cast<std::uint32_t>(max_endpoint_labels);
}

std::uint32_t client_metrics::slot_of(const endpoint& address) {
  if (single_) return 0;
  const auto text = address.to_string();
  std::lock_guard lock(mutex_);
  if (const auto slot = find(text); slot < endpoints_.size()) return slot;
  if (endpoints_.size() == max_endpoint_labels) return static_cast<std::uint32_t>(max_endpoint_labels);
  endpoints_.emplace_back(text, escaped(text));
  return static_cast<std::uint32_t>(endpoints_.size() - 1);
}

void client_metrics::sent(std::uint32_t slot, std::optional<errc> error,
                          std::chrono::nanoseconds took) noexcept {
  if (!counting_) return;
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, took.count()));
  cells_.add(duration_buckets::of(ns), 1);
  cells_.add(duration_buckets::count, ns);
  const std::size_t last = single_ ? 0 : max_endpoint_labels;
  cells_.add(histogram_cells + std::min<std::size_t>(slot, last) * code_count + code_slot(error), 1);
}

void client_metrics::ejected(std::uint32_t slot) noexcept {
  ejections_[std::min<std::size_t>(slot, list_slots - 1)].fetch_add(1, std::memory_order_relaxed);
}

void client_metrics::render(std::string& out, const std::vector<view>& clients) {
  append_family_header(out, "comet_client_requests_total", "counter",
                       "Sends completed, by client, endpoint (the last one tried) and code "
                       "(\"ok\", the host's error code, or the client's own).");
  for (const auto& c : clients) {
    const auto& m = *c.metrics;
    std::lock_guard lock(m.mutex_);
    // Its endpoints' slots, then <other>'s (index max_endpoint_labels).
    std::vector<std::size_t> slots;
    for (std::size_t slot = 0; slot < m.endpoints_.size(); ++slot) slots.push_back(slot);
    if (!m.single_) slots.push_back(max_endpoint_labels);
    for (const auto slot : slots) {
      const bool other = slot >= m.endpoints_.size();
      const std::string_view endpoint = other ? other_endpoint : std::string_view(m.endpoints_[slot].second);
      for (std::size_t code = 0; code < code_count; ++code) {
        const auto n = m.cells_.sum(histogram_cells + slot * code_count + code);
        // An endpoint's "ok" from the start; <other> and error codes once counted.
        if (n == 0 && (code != 0 || other)) continue;
        append_sample(out, "comet_client_requests_total",
                      {{"client", m.escaped_label_, true},
                       {"endpoint", endpoint, true},
                       {"code", code_name(code), true}},
                      n);
      }
    }
  }
  append_family_header(out, "comet_client_request_duration_seconds", "histogram",
                       "Time a send took, its connect, queueing and retries included.");
  for (const auto& c : clients) {
    std::array<std::uint64_t, duration_buckets::cells> cells{};
    for (std::size_t b = 0; b < cells.size(); ++b) cells[b] = c.metrics->cells_.sum(b);
    append_duration_histogram(out, "comet_client_request_duration_seconds",
                              {{"client", c.metrics->escaped_label_, true}}, cells);
  }
  const auto per_client = [&](std::string_view name, std::string_view type, std::string_view help,
                              auto value) {
    append_family_header(out, name, type, help);
    for (const auto& c : clients)
      append_sample(out, name, {{"client", c.metrics->escaped_label_, true}}, value(c));
  };
  per_client("comet_client_in_flight", "gauge", "Sends begun and not completed.",
             [](const view& c) { return std::uint64_t(c.in_flight); });
  per_client("comet_client_queued", "gauge",
             "Keep-alive sends waiting for room on a connection.",
             [](const view& c) { return std::uint64_t(c.stats.queued); });
  per_client("comet_client_connections_opened_total", "counter",
             "Keep-alive connections the client began to open.",
             [](const view& c) { return c.stats.connects; });
  per_client("comet_client_retries_total", "counter",
             "Sends made again, to another endpoint or after a backoff (endpoint lists).",
             [](const view& c) { return c.stats.retries; });
  per_client("comet_client_retries_refused_total", "counter",
             "Failed sends not made again because the retry budget was spent.",
             [](const view& c) { return c.stats.retries_refused; });

  append_family_header(out, "comet_client_endpoint_up", "gauge",
                       "1 while an endpoint of a list takes sends (not down, not ejected).");
  for (const auto& c : clients) {
    if (!c.endpoint_list) continue;
    const auto& m = *c.metrics;
    std::lock_guard lock(m.mutex_);
    // By slot: two entries may resolve to one address, and the endpoints
    // past the labels share <other>.
    std::array<std::uint64_t, list_slots> up{};
    std::array<bool, list_slots> listed{};
    for (const auto& e : c.endpoints) {
      const auto slot = std::min<std::size_t>(m.find(e.address.to_string()), max_endpoint_labels);
      listed[slot] = true;
      up[slot] += e.state == endpoint_stats::health::healthy;
    }
    for (std::size_t slot = 0; slot < list_slots; ++slot) {
      if (!listed[slot]) continue;
      append_sample(out, "comet_client_endpoint_up",
                    {{"client", m.escaped_label_, true},
                     {"endpoint", slot < m.endpoints_.size() ? std::string_view(m.endpoints_[slot].second)
                                                             : other_endpoint,
                      true}},
                    up[slot]);
    }
  }
  append_family_header(out, "comet_client_endpoint_ejections_total", "counter",
                       "Times outlier detection ejected an endpoint of a list.");
  for (const auto& c : clients) {
    if (!c.endpoint_list) continue;
    const auto& m = *c.metrics;
    std::lock_guard lock(m.mutex_);
    for (std::size_t slot = 0; slot < m.endpoints_.size(); ++slot)
      append_sample(out, "comet_client_endpoint_ejections_total",
                    {{"client", m.escaped_label_, true}, {"endpoint", m.endpoints_[slot].second, true}},
                    m.ejections_[slot].load(std::memory_order_relaxed));
    if (const auto n = m.ejections_[max_endpoint_labels].load(std::memory_order_relaxed))
      append_sample(out, "comet_client_endpoint_ejections_total",
                    {{"client", m.escaped_label_, true}, {"endpoint", other_endpoint, true}}, n);
  }
}

}  // namespace comet
