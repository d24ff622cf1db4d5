#include "report.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace comet_bench {
namespace json = boost::json;

std::string_view to_string(load_mode m) noexcept {
  switch (m) {
    case load_mode::one_shot: return "one-shot";
    case load_mode::keep_alive: return "keep-alive";
    case load_mode::pipelined: return "pipelined";
    case load_mode::multiplexed: return "multiplexed";
  }
  return "?";
}

std::optional<load_mode> parse_load_mode(std::string_view name) noexcept {
  for (auto m : {load_mode::one_shot, load_mode::keep_alive, load_mode::pipelined,
                 load_mode::multiplexed})
    if (to_string(m) == name) return m;
  return std::nullopt;
}

std::string_view to_string(server_kind s) noexcept {
  switch (s) {
    case server_kind::comet: return "comet-host";
    case server_kind::baseline: return "baseline";
    case server_kind::external: return "external";
    case server_kind::floor: return "floor";
  }
  return "?";
}

std::string_view to_string(driver_kind d) noexcept {
  return d == driver_kind::raw ? "raw" : "comet-client";
}

namespace {

std::string server_label(const scenario& s) {
  std::string label(to_string(s.server));
  if (s.server == server_kind::comet) label += " T=" + std::to_string(s.threads);
  if (s.relay) label += " relay";
  if (s.tls) label += " TLS";
  if (!s.metrics) label += " no-metrics";
  return label;
}

double us(std::uint64_t ns) { return static_cast<double>(ns) / 1000.0; }

// The row `r` is compared with, if it is in `rows`.
const result* reference_of(const result& r, const std::vector<result>& rows, std::string& name) {
  const scenario& w = r.what;
  if (w.relay) {  // the same host answering directly
    for (const result& other : rows) {
      const scenario& o = other.what;
      if (!o.relay && o.metrics == w.metrics && !o.tls && o.same_load(w) && o.server == w.server &&
          o.driver == w.driver && o.threads == w.threads) {
        name = "direct";
        return &other;
      }
    }
    return nullptr;
  }
  if (!w.metrics) {  // the same run with the counters on
    for (const result& other : rows) {
      const scenario& o = other.what;
      if (o.metrics && !o.relay && o.tls == w.tls && o.same_load(w) && o.server == w.server &&
          o.driver == w.driver && o.threads == w.threads) {
        name = "metrics on";
        return &other;
      }
    }
    return nullptr;
  }
  if (w.tls) {  // the same run without TLS
    for (const result& other : rows) {
      const scenario& o = other.what;
      if (!o.tls && o.metrics && o.same_load(w) && o.server == w.server && o.driver == w.driver &&
          o.threads == w.threads) {
        name = "plain";
        return &other;
      }
    }
    return nullptr;
  }
  // With the floor in the run, every raw-client row reads as a fraction of it.
  if (w.driver == driver_kind::raw && w.server != server_kind::floor)
    for (const result& other : rows)
      if (other.what.server == server_kind::floor && other.what.same_load(w)) {
        name = "floor";
        return &other;
      }
  for (const result& other : rows) {
    const scenario& o = other.what;
    if (&other == &r || o.tls || o.relay || !o.metrics || !o.same_load(w) ||
        o.driver != driver_kind::raw)
      continue;
    if (w.driver == driver_kind::raw && w.server != server_kind::baseline &&
        o.server == server_kind::baseline) {
      name = "baseline";
      return &other;
    }
    if (w.driver == driver_kind::comet_client && o.server == w.server &&
        (w.server != server_kind::comet || o.threads == w.threads)) {
      name = "raw client";
      return &other;
    }
  }
  return nullptr;
}

std::string with_commas(double v) {
  std::string digits = std::to_string(static_cast<long long>(v + 0.5));
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3)
    digits.insert(static_cast<std::size_t>(i), ",");
  return digits;
}

}  // namespace

void assign_ratios(std::vector<result>& rows) {
  for (result& r : rows) {
    std::string name;
    const result* ref = reference_of(r, rows, name);
    r.ratio.reset();
    r.ratio_to.clear();
    if (!ref || ref->rate() <= 0) continue;
    r.ratio = r.rate() / ref->rate();
    r.ratio_to = name;
  }
}

std::vector<result> merge_rounds(const std::vector<std::vector<result>>& rounds) {
  std::vector<result> merged = rounds.front();
  for (std::size_t i = 0; i < merged.size(); ++i) {
    result& m = merged[i];
    m.round_ratios.clear();
    for (std::size_t k = 0; k < rounds.size(); ++k) {
      const result& r = rounds[k][i];
      if (k > 0) {
        m.seconds += r.seconds;
        m.messages += r.messages;
        m.window_allocations += r.window_allocations;
        m.errors += r.errors;
        if (m.first_error.empty()) m.first_error = r.first_error;
        m.latency.merge(r.latency);
      }
      if (r.ratio) m.round_ratios.push_back(*r.ratio);
    }
    if (m.round_ratios.size() != rounds.size()) {  // a reference missing from some round
      m.ratio.reset();
      m.round_ratios.clear();
      continue;
    }
    std::vector<double> sorted = m.round_ratios;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t n = sorted.size();
    m.ratio = n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }
  return merged;
}

std::string row_label(const result& r) {
  const scenario& s = r.what;
  std::string label = server_label(s) + " / " + std::string(to_string(s.driver)) + ", " +
                      std::string(to_string(s.mode)) + " C=" + std::to_string(s.connections);
  if (s.depth > 1) label += " depth=" + std::to_string(s.depth);
  return label + " S=" + std::to_string(s.payload);
}

void print_table(std::FILE* out, const std::vector<result>& rows) {
  // printf pads bytes, not characters: "\u00b5" is two bytes, hence the widths 10 here.
  int width = 14;
  for (const result& r : rows) width = std::max(width, static_cast<int>(server_label(r.what).size()));
  std::fprintf(out, "%-*s %-12s %-11s %5s %5s %7s %2s %11s %10s %10s %10s %6s %6s  %s\n", width,
               "server", "client", "mode", "C", "depth", "S", "T", "msgs/s", "p50 \u00b5s",
               "p99 \u00b5s", "p99.9 \u00b5s", "allocs", "errors", "ratio");
  for (const result& r : rows) {
    const scenario& s = r.what;
    const std::string threads = s.server == server_kind::comet ? std::to_string(s.threads) : "-";
    std::string ratio = "-";
    if (r.ratio) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.2fx %s", *r.ratio, r.ratio_to.c_str());
      ratio = buf;
      if (r.round_ratios.size() > 1) {
        const auto [low, high] = std::minmax_element(r.round_ratios.begin(), r.round_ratios.end());
        std::snprintf(buf, sizeof buf, " [%.2f-%.2f]", *low, *high);
        ratio += buf;
      }
    }
    std::fprintf(out, "%-*s %-12s %-11s %5zu %5zu %7zu %2s %11s %9.1f %9.1f %9.1f %6.2f %6llu  %s\n",
                 width, server_label(s).c_str(), std::string(to_string(s.driver)).c_str(),
                 std::string(to_string(s.mode)).c_str(), s.connections, s.depth, s.payload,
                 threads.c_str(), with_commas(r.rate()).c_str(), us(r.latency.quantile(0.5)),
                 us(r.latency.quantile(0.99)), us(r.latency.quantile(0.999)), r.allocations(),
                 static_cast<unsigned long long>(r.errors), ratio.c_str());
  }
  for (const result& r : rows)
    if (r.errors)
      std::fprintf(out, "errors in %s: %llu, first: %s\n", row_label(r).c_str(),
                   static_cast<unsigned long long>(r.errors), r.first_error.c_str());
}

namespace {

// A JSON object written field by field: numbers in plain decimal (Boost.JSON
// writes doubles as 2.509E4, correct but hard to read in a results file).
class json_fields {
 public:
  json_fields& text(std::string_view key, std::string_view v) {
    return raw(key, json::serialize(json::string_view(v.data(), v.size())));
  }
  json_fields& number(std::string_view key, double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return raw(key, buf);
  }
  json_fields& integer(std::string_view key, std::uint64_t v) { return raw(key, std::to_string(v)); }
  json_fields& raw(std::string_view key, std::string_view json_text) {
    out_ += out_.empty() ? "{" : ", ";
    out_ += json::serialize(json::string_view(key.data(), key.size()));
    out_ += ": ";
    out_ += json_text;
    return *this;
  }
  std::string str() const { return out_ + "}"; }

 private:
  std::string out_;
};

}  // namespace

bool write_json(const std::string& path, const run_info& info, const std::vector<result>& rows,
                std::string& error) {
  json_fields run;
  run.text("command", info.command)
      .integer("cpus", info.cpus)
      .text("pinning", info.cpu_plan)
      .text("target", info.target)
      .number("warmup_s", info.warmup_s, 3)
      .number("duration_s", info.duration_s, 3)
      .integer("rounds", static_cast<std::uint64_t>(info.rounds));
  std::string text = "{\"run\": " + run.str() + ",\n \"results\": [";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const result& r = rows[i];
    const scenario& s = r.what;
    json_fields row;
    row.text("server", to_string(s.server))
        .raw("tls", s.tls ? "true" : "false")
        .raw("metrics", s.metrics ? "true" : "false")
        .text("client", to_string(s.driver))
        .text("mode", to_string(s.mode))
        .integer("connections", s.connections)
        .integer("depth", s.depth)
        .integer("payload_bytes", s.payload);
    if (s.server == server_kind::comet)
      row.integer("io_threads", s.threads);
    else
      row.raw("io_threads", "null");
    row.number("seconds", r.seconds, 3)
        .integer("messages", r.messages)
        .number("msgs_per_s", r.rate(), 0)
        .number("p50_us", us(r.latency.quantile(0.5)), 1)
        .number("p99_us", us(r.latency.quantile(0.99)), 1)
        .number("p999_us", us(r.latency.quantile(0.999)), 1)
        .number("max_us", us(r.latency.max()), 1)
        .number("allocations_per_message", r.allocations(), 2)
        .integer("errors", r.errors)
        .text("first_error", r.first_error);
    if (r.ratio) row.number("ratio", *r.ratio, 3).text("ratio_to", r.ratio_to);
    if (!r.round_ratios.empty()) {
      std::string list = "[";
      for (std::size_t k = 0; k < r.round_ratios.size(); ++k) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%s%.3f", k ? ", " : "", r.round_ratios[k]);
        list += buf;
      }
      row.raw("round_ratios", list + "]");
    }
    text += (i ? ",\n  " : "\n  ") + row.str();
  }
  text += "\n]}\n";
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << text;
  file.close();
  if (!file) {
    error = "cannot write " + path;
    return false;
  }
  return true;
}

std::optional<std::string> find_gnuplot() {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/bin:/bin";
  while (!dirs.empty()) {
    const auto colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? std::string_view{} : dirs.substr(colon + 1);
    const std::string candidate = (dir.empty() ? std::string(".") : dir) + "/gnuplot";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

bool write_plot(const std::string& gnuplot, const std::string& png,
                const std::vector<result>& rows, std::string& error) {
  // x = requests in flight. One series per server/client/mode/payload, and
  // per connection count for the modes with a depth, so that 4 x 16 and
  // 16 x 4 stay separate points.
  std::map<std::string, std::map<std::size_t, double>> series;
  for (const result& r : rows) {
    const scenario& s = r.what;
    std::string name = server_label(s) + " / " + std::string(to_string(s.driver)) + " " +
                       std::string(to_string(s.mode));
    if (s.mode == load_mode::pipelined || s.mode == load_mode::multiplexed)
      name += " C=" + std::to_string(s.connections);
    name += " S=" + std::to_string(s.payload);
    series[name][s.connections * s.depth] = r.rate();
  }
  auto quoted = [](const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
    return q + "'";
  };
  std::string script =
      "set terminal png size 1200,700\n"
      "set output " + quoted(png) + "\n"
      "set title 'comet-bench: throughput vs requests in flight'\n"
      "set xlabel 'requests in flight (connections x depth)'\n"
      "set ylabel 'messages/s'\n"
      "set logscale x 2\nset grid\nset key outside right\nset format y '%.0f'\n"
      "set offsets graph 0.05, graph 0.05, graph 0.05, 0\n";
  std::string plot = "plot ";
  std::size_t index = 0;
  for (const auto& [name, points] : series) {
    script += "$d" + std::to_string(index) + " << EOD\n";
    for (const auto& [x, y] : points) script += std::to_string(x) + " " + std::to_string(y) + "\n";
    script += "EOD\n";
    plot += (index ? ", " : "") + std::string("$d") + std::to_string(index) +
            " using 1:2 with linespoints pointsize 1.5 title " + quoted(name);
    ++index;
  }
  script += plot + "\n";
  const std::string script_path = png + ".gp";
  {
    std::ofstream file(script_path, std::ios::trunc);
    file << script;
    if (!file) {
      error = "cannot write " + script_path;
      return false;
    }
  }
  const char* argv[] = {"gnuplot", script_path.c_str(), nullptr};
  pid_t pid = 0;
  if (posix_spawn(&pid, gnuplot.c_str(), nullptr, nullptr, const_cast<char* const*>(argv),
                  environ) != 0) {
    error = "cannot run " + gnuplot;
    return false;
  }
  int status = 0;
  if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    error = "gnuplot failed on " + script_path;
    return false;
  }
  return true;
}

}  // namespace comet_bench
