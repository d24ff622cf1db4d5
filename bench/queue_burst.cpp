#include "queue_burst.hpp"

#include "comet_side.hpp"
#include "platform.hpp"

#include <comet/client.hpp>
#include <comet/errors.hpp>
#include <comet/io_pool.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <future>

namespace comet_bench {
namespace asio = boost::asio;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

namespace {

// One burst: `sends` sends made in one handler, then waited for.
double one_burst(std::uint16_t port, std::size_t sends, burst_result& row) {
  comet::io_pool pool(1);
  comet::client c(pool, {"127.0.0.1", port},
                  {.request_timeout = std::chrono::seconds(60),
                   .keep_alive = true,
                   .max_queued_sends = sends});
  c.send_sync("echo", "warm");  // the connection is open and known to keep alive
  std::promise<void> all_done;
  std::size_t left = sends;
  const json::value value = "0123456789abcdef0123456789abcdef";
  const auto began = clock_type::now();
  asio::post(pool.get_executor(), [&] {
    for (std::size_t i = 0; i < sends; ++i)
      asio::co_spawn(pool.get_executor(), c.send("echo", value),
                     [&](std::exception_ptr e, const json::value&) {
                       if (e) {
                         ++row.errors;
                         if (row.first_error.empty()) try {
                             std::rethrow_exception(e);
                           } catch (const std::exception& x) {
                             row.first_error = x.what();
                           }
                       }
                       if (--left == 0) all_done.set_value();
                     });
  });
  auto done = all_done.get_future();
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    std::fprintf(stderr, "comet-bench: a burst of %zu queued sends did not finish in 60 s\n", sends);
    std::exit(3);
  }
  return std::chrono::duration<double>(clock_type::now() - began).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

std::vector<burst_result> run_queue_bursts(const std::vector<std::size_t>& sizes, int rounds,
                                           const std::vector<int>& load_cpus) {
  comet_host_target host(1, {});
  std::vector<burst_result> rows(sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) rows[i].sends = sizes[i];
  for (int r = 0; r < rounds; ++r)
    for (auto& row : rows) {
      const double s = run_bounded<double>([&] { return one_burst(host.port(), row.sends, row); },
                                           load_cpus, std::chrono::seconds(70), "a queued burst");
      row.seconds.push_back(s);
      std::fprintf(stderr, "[round %d] %zu queued sends: %.3f s\n", r + 1, row.sends, s);
    }
  return rows;
}

void print_bursts(std::FILE* out, const std::vector<burst_result>& rows) {
  std::fprintf(out, "%-14s %12s %14s %18s %8s\n", "queued sends", "seconds", "us per send",
               "per send vs first", "errors");
  if (rows.empty()) return;
  // Each round's ratio is taken within that round; the median is shown.
  const auto& first = rows.front();
  for (const auto& row : rows) {
    std::vector<double> ratios;
    for (std::size_t r = 0; r < row.seconds.size(); ++r)
      ratios.push_back((row.seconds[r] / static_cast<double>(row.sends)) /
                       (first.seconds[r] / static_cast<double>(first.sends)));
    const double s = median(row.seconds);
    std::fprintf(out, "%-14zu %12.3f %14.2f %17.2fx %8zu\n", row.sends, s,
                 s * 1e6 / static_cast<double>(row.sends), median(ratios), row.errors);
    if (!row.first_error.empty()) std::fprintf(out, "  first error: %s\n", row.first_error.c_str());
  }
}

}  // namespace comet_bench
