#include "endpoints.hpp"

#include "platform.hpp"
#include "send_loop.hpp"

#include <comet/client.hpp>
#include <comet/errors.hpp>
#include <comet/host.hpp>
#include <comet/io_pool.hpp>

#include <boost/asio/co_spawn.hpp>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <thread>

namespace comet_bench {
namespace asio = boost::asio;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

namespace {

const std::string payload(32, 'x');
constexpr std::size_t hosts = 3;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// How a row's client is made and loaded.
struct row_spec {
  const char* name;
  bool keep_alive;
  std::size_t senders;    // coroutines, each sending in turn
  std::size_t endpoints;  // 1 or 3: the hosts it sends to
  bool list;              // a client of an endpoint list (else of one peer)
};

// A row of each mode's first is its mode's reference (ratio 1.00x).
constexpr row_spec specs[] = {
    {"keep-alive x64: 1 endpoint", true, 64, 1, true},
    {"keep-alive x64: 1 peer", true, 64, 1, false},
    {"keep-alive x64: 3 endpoints", true, 64, 3, true},
    {"one-shot x16: 1 endpoint", false, 16, 1, true},
    {"one-shot x16: 1 peer", false, 16, 1, false},
    {"one-shot x16: 3 endpoints", false, 16, 3, true},
};

// Three comet hosts answering "echo", on 127.0.0.2, .3 and .4, each on an
// io_pool of one thread (made on the calling thread: they inherit its CPUs).
class fleet {
 public:
  fleet() {
    for (std::size_t i = 0; i < hosts; ++i) {
      pools_.push_back(std::make_unique<comet::io_pool>(1));
      comet::host_options o;
      o.listen = {"127.0.0." + std::to_string(2 + i), 0};
      o.shutdown_timeout = std::chrono::milliseconds(500);
      auto& h = hosts_.emplace_back(std::make_unique<comet::host>(*pools_.back(), o));
      h->on("echo", [](const std::string&, const json::value& v) { return v; });
      at_.push_back(h->start());
    }
  }
  ~fleet() {
    for (auto& h : hosts_) h->stop();
    for (auto& h : hosts_)
      for (int i = 0; i < 100 && h->stats().connections_open != 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    hosts_.clear();
    pools_.clear();
  }
  const std::vector<comet::endpoint>& at() const { return at_; }
  std::uint64_t served(std::size_t i) const { return hosts_[i]->stats().requests_served; }

 private:
  std::vector<std::unique_ptr<comet::io_pool>> pools_;
  std::vector<std::unique_ptr<comet::host>> hosts_;
  std::vector<comet::endpoint> at_;
};

// Runs one row on this thread (pinned by run_bounded): msgs/s over the
// measured window.
double run_row(const row_spec& spec, const fleet& f, double warmup, double seconds, endpoint_row& row) {
  send_run t;
  t.begin = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                    std::chrono::duration<double>(warmup));
  t.end = t.begin + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
  comet::client_options options;
  options.name = spec.name;
  options.keep_alive = spec.keep_alive;
  options.request_timeout = std::chrono::seconds(2);
  options.connect_timeout = std::chrono::seconds(2);
  {
    comet::io_pool pool(1);
    const std::vector<comet::endpoint> to(f.at().begin(),
                                          f.at().begin() + static_cast<std::ptrdiff_t>(spec.endpoints));
    const comet::client client = spec.list ? comet::client(pool, to, options)
                                           : comet::client(pool, to.front(), options);
    t.live = spec.senders;
    auto finished = t.finished.get_future();
    const json::value value(payload);
    for (std::size_t i = 0; i < spec.senders; ++i)
      asio::co_spawn(pool.get_executor(), send_loop(client, value, t, ""), [&t](std::exception_ptr failure) {
        if (failure) t.fail("a send loop ended with an exception");
        if (--t.live == 0) t.finished.set_value();
      });
    // A send never outlives request_timeout, so every loop ends by then.
    if (finished.wait_until(t.end + std::chrono::seconds(3)) != std::future_status::ready) {
      pool.stop();
      pool.join();
      t.fail("sends still pending after request_timeout");
    }
  }  // joins the pool
  row.latency.merge(t.latency);
  row.errors += t.errors;
  if (row.first_error.empty()) row.first_error = t.first_error;
  return static_cast<double>(t.answers) / seconds;
}

}  // namespace

std::vector<endpoint_row> run_endpoint_suite(int rounds, double warmup, double seconds,
                                             const std::vector<int>& load_cpus) {
  std::vector<endpoint_row> rows;
  for (const auto& s : specs) rows.push_back({s.name, {}, {}, {}, std::vector<std::uint64_t>(hosts), 0, {}});
  const auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(warmup + seconds + 30));
  for (int r = 0; r < rounds; ++r) {
    fleet f;
    std::vector<double> rate(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
      std::vector<std::uint64_t> before(hosts);
      for (std::size_t h = 0; h < hosts; ++h) before[h] = f.served(h);
      rate[i] = run_bounded<double>([&] { return run_row(specs[i], f, warmup, seconds, rows[i]); },
                                    load_cpus, limit, specs[i].name);
      for (std::size_t h = 0; h < hosts; ++h) rows[i].served[h] += f.served(h) - before[h];
    }
    std::size_t reference = 0;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      rows[i].rates.push_back(rate[i]);
      if (i == 0 || specs[i].keep_alive != specs[i - 1].keep_alive) reference = i;
      if (i != reference && rate[reference] > 0) rows[i].ratios.push_back(rate[i] / rate[reference]);
      std::fprintf(stderr, "[round %d] %-28s %10.0f msgs/s, %zu errors\n", r + 1, rows[i].name.c_str(),
                   rate[i], rows[i].errors);
    }
  }
  return rows;
}

void print_endpoint_rows(std::FILE* out, const std::vector<endpoint_row>& rows) {
  std::fprintf(out, "%-28s %12s %9s %9s %22s %-16s %7s\n", "row", "msgs/s", "p50 us", "p99 us",
               "vs 1 endpoint", "spread (hosts)", "errors");
  for (const auto& row : rows) {
    std::fprintf(out, "%-28s %12.0f %9.1f %9.1f", row.name.c_str(), median(row.rates),
                 static_cast<double>(row.latency.quantile(0.5)) / 1000.0,
                 static_cast<double>(row.latency.quantile(0.99)) / 1000.0);
    if (row.ratios.empty()) {
      std::fprintf(out, " %22s", "1.00x");
    } else {
      auto [lo, hi] = std::minmax_element(row.ratios.begin(), row.ratios.end());
      std::fprintf(out, " %8.2fx [%.2f-%.2f]", median(row.ratios), *lo, *hi);
    }
    // Each host's share of the row's requests, warm-up included.
    std::uint64_t total = 0;
    for (auto n : row.served) total += n;
    std::string spread;
    for (auto n : row.served)
      spread += (spread.empty() ? "" : "/") +
                std::to_string(total ? (n * 100 + total / 2) / total : 0);
    std::fprintf(out, " %-16s %7zu\n", (spread + "%").c_str(), row.errors);
    if (!row.first_error.empty()) std::fprintf(out, "  first error: %s\n", row.first_error.c_str());
  }
}

}  // namespace comet_bench
