// Chaos over several hosts (issue 19, item 7): three comet-host processes
// on 127.0.0.2, .3 and .4 under steady load from one keep-alive client of
// the three endpoints; one is killed with SIGKILL mid-run and, later,
// another is stopped gracefully with SIGTERM. The test accounts for every
// request and asserts what it observes: nothing routed to the stopped host
// is lost, the only failures are requests that may have been read by the
// killed one (connection_closed, never sent again unless idempotent; never
// a timeout), and the survivors keep answering. It prints the failover
// times and the spread of the sends over the hosts.
#include <comet/client.hpp>

#include "processes.hpp"
#include "support.hpp"
#include "temp_file.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace comet;
using namespace comet::test;

namespace {

using steady = std::chrono::steady_clock;

double ms_between(steady::time_point from, steady::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

// comet-host on `ip` (a port of its own), from a config file of its own.
struct chaos_host {
  explicit chaos_host(const std::string& ip)
      : config("[Socket_connection.Host]\nIP = \"" + ip +
               "\"\nPort = 0\n\n[comet]\nshutdown_timeout = 10.0\n"),
        process({"--config", config.path().string()}) {
    const auto at = parse_endpoint(process.address);
    REQUIRE(at);
    address = *at;
  }
  // SIGKILL or SIGTERM (comet-host's graceful stop: the drain); returns at once.
  void signal(int number) const { ::kill(process.p.pid, number); }
  // Its exit status, once it has exited (-1: killed after `limit`).
  int exit_status(std::chrono::milliseconds limit) {
    const int status = process.p.wait(limit);
    process.stopped = true;
    return status;
  }

  temp_file config;
  running_host process;  // SIGKILLed by its destructor if still running
  endpoint address;
};

// One send of the load, as it ended.
struct record {
  steady::time_point began, ended;
  bool answered = false;
  bool wrong_answer = false;
  std::error_code code;
  std::string what;
};

const endpoint_stats* find_stats(const std::vector<endpoint_stats>& all, const endpoint& e) {
  for (const auto& s : all)
    if (s.address == e) return &s;
  return nullptr;
}

const char* state_name(const endpoint_stats* s) {
  if (!s) return "gone";
  switch (s->state) {
    case endpoint_stats::health::healthy: return "healthy";
    case endpoint_stats::health::down: return "down";
    case endpoint_stats::health::ejected: return "ejected";
  }
  return "?";
}

// Milliseconds from `since` until the client leaves `e` out (down or
// ejected), polled closely; nullopt if it did not within `limit`.
std::optional<double> left_out_after(const client& c, const endpoint& e, steady::time_point since,
                                     std::chrono::milliseconds limit) {
  while (steady::now() < since + limit) {
    const auto all = c.endpoint_stats();
    const auto* s = find_stats(all, e);
    if (s && s->state != endpoint_stats::health::healthy) return ms_between(since, steady::now());
    std::this_thread::sleep_for(100us);
  }
  return std::nullopt;
}

// The longest stretch in [from, to) in which no send was answered.
double longest_gap(const std::vector<steady::time_point>& answers, steady::time_point from,
                   steady::time_point to) {
  double longest = 0;
  steady::time_point last = from;
  for (const auto at : answers) {
    if (at < from) continue;
    if (at >= to) break;
    longest = std::max(longest, ms_between(last, at));
    last = at;
  }
  return std::max(longest, ms_between(last, to));
}

}  // namespace

TEST_CASE("chaos: three comet-host processes under load, one killed and one stopped gracefully",
          "[integration][chaos]") {
  const bool idempotent = GENERATE(false, true);
  CAPTURE(idempotent);

  // A steady load: 16 senders, each sending in turn. Each phase ends after
  // an observed number of answers, about a second's worth at the rate the
  // first 5,000 came at (so a sanitizer build runs as many seconds, not as
  // many answers); every wait is bounded, generously for those builds.
  constexpr int concurrency = 16;
  constexpr std::uint64_t first_answers = 5000;
  constexpr auto phase_limit = 30s;

  // The library's log lines (endpoints down, ejected) go here, not to stderr.
  log_capture log(log_level::info);

  // Declared before the pool: the senders use them until the pool is gone.
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> answered{0}, sent{0};
  std::atomic<int> running{concurrency};
  std::vector<std::vector<record>> records(concurrency);

  chaos_host killed("127.0.0.2"), drained("127.0.0.3"), survivor("127.0.0.4");
  const std::vector<endpoint> endpoints{killed.address, drained.address, survivor.address};

  io_pool pool(1);
  client_options options;
  options.name = "chaos";
  options.keep_alive = true;
  options.request_timeout = 15s;  // each send's deadline: a hang fails the send, never the test
  options.connect_timeout = 5s;
  client c(pool.get_executor(), endpoints, options);
  struct stop_scope {
    std::atomic<bool>& stop;
    ~stop_scope() { stop = true; }
  } stop_on_exit{stop};

  const auto load_began = steady::now();
  const send_options per_send{.timeout = 15s, .idempotent = idempotent};
  for (int i = 0; i < concurrency; ++i)
    asio::co_spawn(
        pool.get_executor(),
        [&, i]() -> asio::awaitable<void> {
          auto& mine = records[static_cast<std::size_t>(i)];
          for (std::uint64_t n = 0; !stop; ++n) {
            // A unique sequence number per send, echoed back.
            const std::uint64_t seq = (static_cast<std::uint64_t>(i) << 40) | n;
            json::value value{{"seq", seq}};
            record r;
            r.began = steady::now();
            ++sent;
            try {
              const json::value answer = co_await c.send("echo", value, per_send);
              r.answered = answer == value;
              r.wrong_answer = !r.answered;
              if (r.answered) ++answered;
            } catch (const comet::error& e) {
              r.code = e.code();
              r.what = e.what();
            }
            r.ended = steady::now();
            mine.push_back(std::move(r));
          }
          --running;
        },
        asio::detached);

  // Phase 1: all three answer.
  REQUIRE(wait_until([&] { return answered >= first_answers; }, phase_limit));
  const double first_seconds = ms_between(load_began, steady::now()) / 1000;
  const std::uint64_t per_phase = std::clamp<std::uint64_t>(
      static_cast<std::uint64_t>(static_cast<double>(first_answers) / first_seconds), first_answers, 50000);
  REQUIRE(wait_until([&] { return answered >= first_answers + per_phase; }, phase_limit));
  const auto before_kill = c.endpoint_stats();

  // Phase 2: one host killed; the client leaves it out (down once a
  // connect is refused, or ejected by outlier detection after five
  // connections closed under sends).
  const std::uint64_t answered_at_kill = answered;
  const auto kill_at = steady::now();
  killed.signal(SIGKILL);
  const auto killed_left_out = left_out_after(c, killed.address, kill_at, phase_limit);
  const std::string killed_state = state_name(find_stats(c.endpoint_stats(), killed.address));
  CHECK(killed.exit_status(phase_limit) == 128 + SIGKILL);
  CHECK(killed_left_out);
  REQUIRE(wait_until([&] { return answered >= answered_at_kill + per_phase; }, phase_limit));

  // Phase 3: another stopped gracefully; its drain ends with the process.
  const std::uint64_t answered_at_stop = answered;
  const auto stop_at = steady::now();
  drained.signal(SIGTERM);
  const auto drained_left_out = left_out_after(c, drained.address, stop_at, phase_limit);
  const int drained_status = drained.exit_status(phase_limit);
  const auto drained_exit_at = steady::now();
  CHECK(drained_left_out);
  REQUIRE(wait_until([&] { return answered >= answered_at_stop + per_phase; }, phase_limit));

  // Phase 4: the survivor alone, for a while; then the senders stop.
  const std::uint64_t answered_alone = answered;
  REQUIRE(wait_until([&] { return answered >= answered_alone + per_phase; }, phase_limit));
  stop = true;
  REQUIRE(wait_until([&] { return running == 0; }, phase_limit));
  const auto end_at = steady::now();
  const auto after = c.endpoint_stats();
  const auto client_stats = c.stats();
  c.close();

  // Every send is accounted for: answered (with its own value) or failed
  // with a comet::error.
  std::vector<steady::time_point> answer_times;
  std::vector<const record*> failures;
  std::uint64_t total = 0, wrong = 0;
  double slowest_across_kill = 0, slowest_across_stop = 0;
  for (const auto& mine : records)
    for (const auto& r : mine) {
      ++total;
      if (r.wrong_answer) ++wrong;
      if (r.answered) {
        answer_times.push_back(r.ended);
        if (r.began <= kill_at && r.ended >= kill_at)
          slowest_across_kill = std::max(slowest_across_kill, ms_between(r.began, r.ended));
        if (r.began <= stop_at && r.ended >= stop_at)
          slowest_across_stop = std::max(slowest_across_stop, ms_between(r.began, r.ended));
      } else if (!r.wrong_answer) {
        failures.push_back(&r);
      }
    }
  std::sort(answer_times.begin(), answer_times.end());

  // Sends an endpoint completed that were not transport failures: its answers.
  const auto answered_by = [](const std::vector<endpoint_stats>& all, const endpoint& e) {
    const auto* s = find_stats(all, e);
    return s ? static_cast<unsigned long long>(s->sends - s->failures) : 0ull;
  };
  std::map<std::string, int> failed_by;
  for (const auto* f : failures) ++failed_by[std::string(wire_name(static_cast<errc>(f->code.value())))];
  std::string failed_text;
  for (const auto& [code, count] : failed_by) failed_text += ", " + code + " " + std::to_string(count);
  std::printf(
      "chaos (idempotent %s), %.1f s: SIGKILL: left out after %.2f ms (%s), longest gap in answers "
      "%.1f ms, slowest send across it %.1f ms; SIGTERM: left out after %.2f ms, drained and exited "
      "(%d) after %.0f ms, longest gap %.1f ms, slowest send across it %.1f ms; answers before the "
      "kill %llu/%llu/%llu, in all %llu/%llu/%llu; failed %zu of %llu%s; sent again %llu, refused "
      "by the budget %llu\n",
      idempotent ? "true" : "false", ms_between(load_began, end_at) / 1000,
      killed_left_out.value_or(-1), killed_state.c_str(), longest_gap(answer_times, kill_at, stop_at),
      slowest_across_kill, drained_left_out.value_or(-1), drained_status,
      ms_between(stop_at, drained_exit_at), longest_gap(answer_times, stop_at, drained_exit_at),
      slowest_across_stop, answered_by(before_kill, killed.address),
      answered_by(before_kill, drained.address), answered_by(before_kill, survivor.address),
      answered_by(after, killed.address), answered_by(after, drained.address),
      answered_by(after, survivor.address), failures.size(), static_cast<unsigned long long>(total),
      failed_text.c_str(), static_cast<unsigned long long>(client_stats.retries),
      static_cast<unsigned long long>(client_stats.retries_refused));

  CHECK(total == sent);
  CHECK(wrong == 0);
  CHECK(answered + failures.size() == total);
  // The graceful stop drained within its shutdown_timeout and exited 0.
  CHECK(drained_status == 0);

  // The only failures are sends the killed host may have read: the
  // connection closed under them after they were written. None was a
  // timeout (a hang), none was on the host stopped gracefully, and with
  // idempotent sends none at all (each went to another endpoint).
  for (const auto* f : failures) {
    INFO(f->what);
    CHECK(f->code == errc::connection_closed);
    CHECK(f->what.find(killed.address.to_string()) != std::string::npos);
    CHECK(f->what.find(drained.address.to_string()) == std::string::npos);
    CHECK(f->ended >= kill_at);
    CHECK(f->ended < stop_at);
  }
  if (idempotent) CHECK(failures.empty());
  // At most what was in flight at the kill (each sender sends in turn).
  CHECK(failures.size() <= static_cast<std::size_t>(concurrency));
  CHECK(client_stats.retries_refused == 0);

  // The load spread over the three before the kill (sends go to the
  // fewest outstanding, ties in turn), and the survivors kept answering.
  for (const auto& e : endpoints) CHECK(answered_by(before_kill, e) >= per_phase / 10);
  CHECK(answered_by(after, survivor.address) > answered_by(before_kill, survivor.address) + per_phase);
  CHECK(answered_by(after, drained.address) > answered_by(before_kill, drained.address));
  // The killed host answered nothing after the kill but what was on its
  // way already (its sends count refused connects too: those went elsewhere).
  CHECK(answered_by(after, killed.address) <=
        answered_by(before_kill, killed.address) + static_cast<unsigned long long>(concurrency));
}
