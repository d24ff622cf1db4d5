#include "host_metrics.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <thread>

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

namespace {

// Each thread's number, taken on its first count: io_pool threads, made
// one after another, get consecutive numbers and so shards of their own.
std::size_t thread_number() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

constexpr std::size_t cache_line_cells = 64 / sizeof(std::atomic<std::uint64_t>);

// The bucket bounds as Prometheus reads them (le="0.00005").
constexpr std::array<std::string_view, request_metrics::bounds_ns.size()> bound_labels{
    "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
    "0.01",    "0.025",  "0.05",    "0.1",    "0.25",  "0.5",    "1",
    "2.5",     "5",      "10",      "30",     "60"};

void append_number(std::string& out, std::uint64_t n) {
  char text[24];
  const auto end = std::to_chars(text, text + sizeof text, n).ptr;
  out.append(text, end);
}

void append_seconds(std::string& out, std::uint64_t ns) {
  char text[32];
  const auto end = std::to_chars(text, text + sizeof text, static_cast<double>(ns) / 1e9).ptr;
  out.append(text, end);
}

}  // namespace

void append_label_value(std::string& out, std::string_view value) {
  for (const char c : value) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
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

void request_metrics::set_actions(std::vector<std::string> actions) {
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
  const std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  shard_count_ = std::min<std::size_t>(64, std::bit_ceil(threads));
  const std::size_t used = header_cells + escaped_.size() * action_cells;
  shard_cells_ = (used + cache_line_cells - 1) / cache_line_cells * cache_line_cells;
  cells_ = std::make_unique<std::atomic<std::uint64_t>[]>(shard_count_ * shard_cells_ +
                                                         cache_line_cells);
  const auto address = reinterpret_cast<std::uintptr_t>(cells_.get());
  base_ = (64 - address % 64) % 64 / sizeof(std::atomic<std::uint64_t>);
  ready_.store(true, std::memory_order_release);
}

std::uint32_t request_metrics::index_of(std::string_view action) const noexcept {
  const auto it = std::lower_bound(actions_.begin(), actions_.end(), action,
                                   [](const std::string& a, std::string_view b) { return a < b; });
  if (it == actions_.end() || *it != action) return unrouted;
  return static_cast<std::uint32_t>(it - actions_.begin()) + 1;
}

std::atomic<std::uint64_t>* request_metrics::shard() const noexcept {
  return cells_.get() + base_ + (thread_number() & (shard_count_ - 1)) * shard_cells_;
}

void request_metrics::answered(std::uint32_t action, std::optional<errc> error,
                               std::optional<std::chrono::nanoseconds> duration) noexcept {
  if (!ready_.load(std::memory_order_relaxed) || action >= escaped_.size()) return;
  auto* cells = shard() + header_cells + action * action_cells;
  cells[code_slot(error)].fetch_add(1, std::memory_order_relaxed);
  if (!duration) return;
  const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, duration->count()));
  // le is "less than or equal": the first bound at or above the duration.
  const auto bucket = static_cast<std::size_t>(
      std::lower_bound(bounds_ns.begin(), bounds_ns.end(), ns) - bounds_ns.begin());
  cells[code_count + bucket].fetch_add(1, std::memory_order_relaxed);
  cells[code_count + bucket_count].fetch_add(ns, std::memory_order_relaxed);
}

std::uint64_t request_metrics::sum(std::size_t cell) const noexcept {
  if (!ready_.load(std::memory_order_acquire)) return 0;
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s)
    total += cells_[base_ + s * shard_cells_ + cell].load(std::memory_order_relaxed);
  return total;
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
  const bool ready = ready_.load(std::memory_order_acquire);
  const std::size_t labels = ready ? escaped_.size() : 0;
  out += "# HELP comet_host_requests_total Requests answered, by action and answer code "
         "(\"ok\", or the error code answered).\n"
         "# TYPE comet_host_requests_total counter\n";
  for (std::size_t a = 0; a < labels; ++a) {
    const std::size_t first = header_cells + a * action_cells;
    for (int code = 0; code < code_count; ++code) {
      const auto n = sum(first + static_cast<std::size_t>(code));
      // Every action's "ok" is there from the start (so that rate() sees
      // its first requests); an error code once it was answered.
      if (n == 0 && code != 0) continue;
      out += "comet_host_requests_total{action=\"";
      out += escaped_[a];
      out += "\",code=\"";
      out += code_name(code);
      out += "\"} ";
      append_number(out, n);
      out += '\n';
    }
  }
  out += "# HELP comet_host_request_duration_seconds Time from a request's arrival to its "
         "answer, by action (streams and subscriptions excluded).\n"
         "# TYPE comet_host_request_duration_seconds histogram\n";
  for (std::size_t a = 0; a < labels; ++a) {
    const std::size_t first = header_cells + a * action_cells + code_count;
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < bucket_count; ++b) {
      cumulative += sum(first + b);
      out += "comet_host_request_duration_seconds_bucket{action=\"";
      out += escaped_[a];
      out += "\",le=\"";
      out += b < bound_labels.size() ? bound_labels[b] : std::string_view("+Inf");
      out += "\"} ";
      append_number(out, cumulative);
      out += '\n';
    }
    out += "comet_host_request_duration_seconds_sum{action=\"";
    out += escaped_[a];
    out += "\"} ";
    append_seconds(out, sum(first + bucket_count));
    out += "\ncomet_host_request_duration_seconds_count{action=\"";
    out += escaped_[a];
    out += "\"} ";
    append_number(out, cumulative);
    out += '\n';
  }
  out += "# HELP comet_host_in_flight Requests whose coroutine handler is running.\n"
         "# TYPE comet_host_in_flight gauge\n"
         "comet_host_in_flight ";
  append_number(out, in_flight());
  out += '\n';
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
