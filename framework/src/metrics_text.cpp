#include "metrics_text.hpp"

#include <algorithm>
#include <bit>
#include <charconv>
#include <thread>

namespace comet {

std::size_t metrics_thread_number() noexcept {
  static std::atomic<std::size_t> next{0};
  thread_local const std::size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

namespace {
// A shard is whole cache lines, so two shards never share one.
struct alignas(64) cache_line {
  std::atomic<std::uint64_t> cells[64 / sizeof(std::atomic<std::uint64_t>)];
};
constexpr std::size_t cells_per_line = sizeof(cache_line) / sizeof(std::atomic<std::uint64_t>);
}  // namespace

counter_shards::counter_shards(std::size_t cells)
    : cells_(cells),
      shard_count_(std::min<std::size_t>(
          max_shards, std::bit_ceil(std::max(1u, std::thread::hardware_concurrency())))) {}

counter_shards::~counter_shards() {
  for (auto& s : shards_)
    delete[] reinterpret_cast<cache_line*>(s.load(std::memory_order_relaxed));
}

std::atomic<std::uint64_t>* counter_shards::shard() noexcept {
  const std::size_t index = metrics_thread_number() & (shard_count_ - 1);
  if (auto* s = shards_[index].load(std::memory_order_acquire)) return s;
  return allocate(index);
}

std::atomic<std::uint64_t>* counter_shards::allocate(std::size_t index) noexcept {
  // Two threads of one shard may race to make it: one wins, the other's goes.
  auto* lines = new cache_line[(cells_ + cells_per_line - 1) / cells_per_line]();
  auto* mine = lines->cells;
  std::atomic<std::uint64_t>* expected = nullptr;
  if (shards_[index].compare_exchange_strong(expected, mine, std::memory_order_acq_rel))
    return mine;
  delete[] lines;
  return expected;
}

std::uint64_t counter_shards::sum(std::size_t cell) const noexcept {
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < shard_count_; ++s)
    if (const auto* shard = shards_[s].load(std::memory_order_acquire))
      total += shard[cell].load(std::memory_order_relaxed);
  return total;
}

std::size_t duration_buckets::of(std::uint64_t ns) noexcept {
  return static_cast<std::size_t>(std::lower_bound(bounds_ns.begin(), bounds_ns.end(), ns) -
                                  bounds_ns.begin());
}

namespace {

// The bucket bounds as Prometheus reads them (le="0.00005").
constexpr std::array<std::string_view, duration_buckets::bounds_ns.size()> bound_labels{
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

void append_labels(std::string& out, std::initializer_list<metric_label> labels,
                   std::string_view le = {}) {
  if (labels.size() == 0 && le.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& l : labels) {
    if (!first) out += ',';
    first = false;
    out += l.name;
    out += "=\"";
    if (l.escaped)
      out += l.value;
    else
      append_label_value(out, l.value);
    out += '"';
  }
  if (!le.empty()) {
    if (!first) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
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

void append_family_header(std::string& out, std::string_view name, std::string_view type,
                          std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void append_sample(std::string& out, std::string_view name,
                   std::initializer_list<metric_label> labels, std::uint64_t value) {
  out += name;
  append_labels(out, labels);
  out += ' ';
  append_number(out, value);
  out += '\n';
}

void append_duration_histogram(std::string& out, std::string_view name,
                               std::initializer_list<metric_label> labels,
                               const std::array<std::uint64_t, duration_buckets::cells>& cells) {
  std::uint64_t cumulative = 0;
  for (std::size_t b = 0; b < duration_buckets::count; ++b) {
    cumulative += cells[b];
    out += name;
    out += "_bucket";
    append_labels(out, labels, b < bound_labels.size() ? bound_labels[b] : std::string_view("+Inf"));
    out += ' ';
    append_number(out, cumulative);
    out += '\n';
  }
  out += name;
  out += "_sum";
  append_labels(out, labels);
  out += ' ';
  append_seconds(out, cells[duration_buckets::count]);
  out += '\n';
  out += name;
  out += "_count";
  append_labels(out, labels);
  out += ' ';
  append_number(out, cumulative);
  out += '\n';
}

}  // namespace comet
