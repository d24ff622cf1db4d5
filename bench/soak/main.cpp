// comet-soak: runs a comet::host in this process on 127.0.0.1 (an ephemeral
// port), drives it with many concurrent workers for --duration seconds, then
// checks the tallies, the host's own counters and the RSS, and prints a
// summary. Everything is on loopback and bounded in count and time.
#include "soak.hpp"

#include <comet/host.hpp>
#include <comet/io_pool.hpp>
#include <comet/log.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <future>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace comet_soak {
namespace {

// --- The host under test -----------------------------------------------------

comet::host_options host_limits() {
  comet::host_options o;
  o.listen = {"127.0.0.1", 0};
  o.max_content_length = host_max_content;
  o.idle_timeout = host_idle_timeout;
  o.handler_timeout = host_handler_timeout;
  o.write_buffer_limit = host_write_buffer_limit;
  o.shutdown_timeout = 2000ms;
  return o;
}

std::uint64_t id_in(const json::value& v) {
  const auto* o = v.if_object();
  const auto* id = o ? o->if_contains("id") : nullptr;
  if (!id || !id->is_number()) return 0;
  boost::system::error_code ec;
  const auto n = id->to_number<std::uint64_t>(ec);
  return ec ? 0 : n;
}

asio::awaitable<json::value> slow_echo(const std::string&, const json::value& value) {
  asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(1 + id_in(value) % 5));
  co_await pause.async_wait(asio::use_awaitable);
  co_return value;
}

json::value fail(const std::string&, const json::value& value) {
  throw std::runtime_error("deliberate failure for id " + std::to_string(id_in(value)));
}

void add_handlers(comet::host& h) {
  h.on(std::string(echo_action), [](const std::string&, const json::value& v) { return v; });
  h.on(std::string(slow_echo_action), slow_echo);
  h.on(std::string(fail_action), fail);
}

// --- Resident memory ---------------------------------------------------------

std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::string mib(std::size_t bytes) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (1 << 20) << " MiB";
  return s.str();
}

struct rss_watch {
  std::size_t at_start = 0, baseline = 0, peak = 0, bound = 0, last = 0;
  bool breached = false;

  void sample(bool warmed_up, std::size_t slack) {
    last = rss_bytes();
    peak = std::max(peak, last);
    if (!warmed_up) return;
    if (baseline == 0) {
      baseline = last;
      bound = baseline + slack;
    }
    breached = breached || last > bound;
  }
};

// --- Workers ------------------------------------------------------------------

// Counts the workers still running; the main thread waits on it.
class worker_latch {
 public:
  void started() {
    std::lock_guard lock(mutex_);
    ++running_;
  }
  void finished() {
    std::lock_guard lock(mutex_);
    --running_;
    done_.notify_all();
  }
  // True when every worker has finished; waits at most `step`.
  bool wait_for(std::chrono::milliseconds step) {
    std::unique_lock lock(mutex_);
    return done_.wait_for(lock, step, [this] { return running_ == 0; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::size_t running_ = 0;
};

struct worker_mix {
  std::size_t hostile, keep_alive, one_shot;
};

worker_mix split(std::size_t clients) {
  const std::size_t hostile = std::max<std::size_t>(1, clients / 4);
  const std::size_t keep_alive = (clients - hostile) / 2;
  return {hostile, keep_alive, clients - hostile - keep_alive};
}

using worker_fn = asio::awaitable<void> (*)(soak_context&, std::uint64_t);

void spawn_workers(comet::io_pool& pool, soak_context& ctx, worker_latch& latch) {
  const auto mix = split(ctx.options.clients);
  const auto executors = pool.executors();
  std::size_t n = 0;
  auto spawn = [&](worker_fn fn, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i, ++n) {
      latch.started();
      // A strand each: a worker's raw sockets and their timers never race.
      asio::co_spawn(asio::make_strand(executors[n % executors.size()]),
                     fn(ctx, ctx.options.seed * 1000003 + n),
                     [&latch, &ctx](std::exception_ptr failure) {
                       if (failure) ctx.counts.failure("a worker ended with an exception");
                       latch.finished();
                     });
    }
  };
  spawn(hostile_worker, mix.hostile);
  spawn(keep_alive_worker, mix.keep_alive);
  spawn(one_shot_worker, mix.one_shot);
}

// --- Log lines -------------------------------------------------------------------

// The framework logs every hostile peer it drops (warn): counted, printed
// with --verbose. An error line means a coroutine of the framework threw,
// which must not happen.
struct log_counter {
  std::mutex mutex;
  std::map<comet::log_level, std::uint64_t> by_level;
};

void capture_logs(log_counter& logs, tally& counts, bool verbose) {
  comet::set_log_level(comet::log_level::warn);
  comet::set_log_sink([&logs, &counts, verbose](comet::log_level level, std::string_view line) {
    {
      std::lock_guard lock(logs.mutex);
      ++logs.by_level[level];
    }
    if (level >= comet::log_level::error) counts.failure("framework error log: " + std::string(line));
    if (verbose) std::cerr << "[" << comet::to_string(level) << "] " << line << "\n";
  });
}

// --- Checks after the run -------------------------------------------------------

std::uint64_t count_of(const tally::counts& c, std::string_view key) {
  const auto it = c.find(key);
  return it == c.end() ? 0 : it->second;
}

// Every error response the host counted was read by a peer of the soak (or
// lost to a known client issue), and the other way round: nothing answered
// went unseen.
void compare_error_counts(const comet::host_stats& stats, tally& counts) {
  const auto seen = counts.wire_errors();
  const auto unread = counts.unread_errors();
  std::map<std::string, std::uint64_t, std::less<>> all(stats.errors_by_code.begin(),
                                                        stats.errors_by_code.end());
  for (const auto& [code, n] : seen) all.try_emplace(code, 0);
  for (const auto& [code, host_n] : all) {
    const std::uint64_t seen_n = count_of(seen, code);
    const std::uint64_t unread_n = count_of(unread, code);
    if (host_n != seen_n + unread_n)
      counts.failure("the host answered " + code + " " + std::to_string(host_n) +
                     " times, the soak's peers read it " + std::to_string(seen_n) +
                     " times (and lost " + std::to_string(unread_n) + " to known issues)");
  }
}

// With every peer gone, the host lets go of every connection (the idle
// timeout drops any it missed).
bool connections_drain(const comet::host& h) {
  const auto limit = clock_type::now() + host_idle_timeout * 2 + 2000ms;
  while (h.stats().connections_open != 0 && clock_type::now() < limit)
    std::this_thread::sleep_for(50ms);
  return h.stats().connections_open == 0;
}

// A graceful stop finishes by itself once no peer is left.
void stop_host(comet::host& h, comet::io_pool& pool, tally& counts) {
  auto stopped = asio::co_spawn(pool.get_executor(), h.async_stop(), asio::use_future);
  if (stopped.wait_for(5s) != std::future_status::ready)
    counts.failure("the host's async_stop() did not finish within 5 s with no peer left");
  else
    stopped.get();
}

// --- Report -------------------------------------------------------------------------

void print_counts(const char* title, const tally::counts& c) {
  std::cout << "  " << std::left << std::setw(22) << title;
  if (c.empty()) std::cout << "none";
  for (const auto& [k, n] : c) std::cout << k << " " << n << "  ";
  std::cout << "\n";
}

void print_summary(const soak_options& o, double elapsed_s, const tally& counts,
                   const comet::host_stats& stats, const rss_watch& rss,
                   const std::map<comet::log_level, std::uint64_t>& logs) {
  const auto mix = split(o.clients);
  std::cout << "comet-soak: " << o.duration_s << " s, " << o.clients << " clients ("
            << mix.one_shot << " one-shot, " << mix.keep_alive << " keep-alive, " << mix.hostile
            << " hostile), host threads " << o.host_threads << ", seed " << o.seed << "\n";
  std::cout << "valid requests\n"
            << "  sent                  " << counts.sent_count() << "\n"
            << "  answered exactly      " << counts.answered_count() << "\n";
  print_counts("expected errors", counts.expected_errors());
  print_counts("known issues", counts.known_issues());
  std::cout << "  lost                  " << counts.lost_count() << "\n";
  print_counts("lost by kind", counts.lost_by_kind());
  std::cout << "  mismatched            " << counts.mismatched_count() << "\n"
            << "  answers/s             " << std::fixed << std::setprecision(0)
            << static_cast<double>(counts.answered_count()) / elapsed_s << "\n";
  std::cout << "hostile exchanges (as documented / problems)\n";
  for (const auto& [name, c] : counts.hostile_counts())
    std::cout << "  " << std::left << std::setw(22) << name << c.as_documented << " / " << c.problems << "\n";
  for (const auto& [what, n] : counts.observations()) std::cout << "  (" << what << ": " << n << ")\n";
  std::cout << "host\n"
            << "  requests served       " << stats.requests_served << "\n"
            << "  connections accepted  " << stats.connections_accepted << ", open at the end "
            << stats.connections_open << ", refused " << stats.connections_refused << "\n"
            << "  latency p50/p99/p999  " << stats.latency_p50.count() << " / "
            << stats.latency_p99.count() << " / " << stats.latency_p999.count() << " us\n";
  tally::counts host_errors(stats.errors_by_code.begin(), stats.errors_by_code.end());
  print_counts("errors answered", host_errors);
  print_counts("errors read by peers", counts.wire_errors());
  print_counts("errors lost by client", counts.unread_errors());
  std::cout << "  framework log lines   warn " << (logs.count(comet::log_level::warn) ? logs.at(comet::log_level::warn) : 0)
            << ", error " << (logs.count(comet::log_level::error) ? logs.at(comet::log_level::error) : 0) << "\n";
  std::cout << "rss\n"
            << "  start " << mib(rss.at_start) << ", baseline " << mib(rss.baseline) << ", max "
            << mib(rss.peak) << ", end " << mib(rss.last) << ", bound " << mib(rss.bound)
            << (rss.breached ? "  EXCEEDED" : "") << "\n";
  const auto samples = counts.samples();
  if (!samples.empty()) {
    std::cout << "first problems\n";
    for (const auto& s : samples) std::cout << "  " << s << "\n";
  }
}

bool passed(const soak_options& o, const tally& counts, const rss_watch& rss) {
  return counts.lost_count() == 0 && counts.mismatched_count() == 0 &&
         counts.hostile_problems() == 0 && counts.other_failures() == 0 && !rss.breached &&
         counts.answered_count() > 0 && (!o.strict || counts.known_issues().empty());
}

// --- The run ------------------------------------------------------------------------

int run(const soak_options& o) {
  tally counts;
  log_counter logs;
  capture_logs(logs, counts, o.verbose);
  rss_watch rss;
  rss.at_start = rss_bytes();

  comet::io_pool host_pool(o.host_threads, comet::io_pool_layout::context_per_thread);
  comet::host host(host_pool, host_limits());
  add_handlers(host);
  const comet::endpoint at = host.start();

  comet::io_pool client_pool(o.client_threads, comet::io_pool_layout::context_per_thread);
  comet::client_options one_shot_options{.name = "soak", .connect_timeout = 3000ms,
                                         .request_timeout = 5000ms};
  comet::client_options keep_alive_options = one_shot_options;
  keep_alive_options.keep_alive = true;

  const auto started = clock_type::now();
  const auto stop_at = started + std::chrono::duration_cast<clock_type::duration>(
                                     std::chrono::duration<double>(o.duration_s));
  const auto warm_at = started + std::chrono::duration_cast<clock_type::duration>(
                                     std::chrono::duration<double>(o.warmup_s));
  const auto hard_limit = stop_at + 40s;

  std::unique_ptr<soak_context> ctx(new soak_context{
      o, at, comet::client(client_pool, at, one_shot_options),
      comet::client(client_pool, at, keep_alive_options), counts, stop_at});
  worker_latch latch;
  spawn_workers(client_pool, *ctx, latch);

  const std::size_t slack = o.rss_slack_mib << 20;
  while (!latch.wait_for(1000ms)) {
    rss.sample(clock_type::now() >= warm_at, slack);
    if (clock_type::now() > hard_limit) {
      std::cout << "comet-soak: the workers did not finish 40 s after the end of the run\n";
      print_summary(o, o.duration_s, counts, host.stats(), rss, {});
      std::cout.flush();
      std::_Exit(3);
    }
  }
  const double elapsed_s = std::chrono::duration<double>(clock_type::now() - started).count();
  ctx.reset();  // the clients close their keep-alive connections
  if (!connections_drain(host))
    counts.failure("the host still holds " + std::to_string(host.stats().connections_open) +
                   " connections after every peer has gone");
  rss.sample(true, slack);

  const comet::host_stats stats = host.stats();
  compare_error_counts(stats, counts);
  stop_host(host, host_pool, counts);
  std::map<comet::log_level, std::uint64_t> log_lines;
  {
    std::lock_guard lock(logs.mutex);
    log_lines = logs.by_level;
  }
  print_summary(o, elapsed_s, counts, stats, rss, log_lines);
  run_refusal_phases(counts);
  const bool ok = passed(o, counts, rss);
  std::cout << (ok ? "PASS" : "FAIL") << "\n";
  std::cout.flush();
  comet::set_log_sink({});
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace comet_soak

int main(int argc, char** argv) {
  int status = 0;
  const auto options = comet_soak::parse_options(argc, argv, status);
  if (!options) return status;
  try {
    return comet_soak::run(*options);
  } catch (const std::exception& e) {
    std::cerr << "comet-soak: " << e.what() << "\n";
    return 1;
  }
}
