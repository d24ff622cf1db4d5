// Two short phases after the soak's main run (issue 18): sends to a peer
// that is offline, and sends to a host that is full. Each counts the
// outcomes by code; anything but the code that says what happened (and
// that the request did not run) is a problem.
#include "soak.hpp"

#include <comet/host.hpp>
#include <comet/io_pool.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_future.hpp>

#include <future>
#include <iomanip>
#include <iostream>
#include <memory>

namespace comet_soak {
namespace {

using tcp = asio::ip::tcp;

// `sends` sends made at once on `c` (on its pool's one thread); outcomes by
// wire code ("answered" for answers), and how long until the last ended.
struct burst {
  std::map<std::string, std::uint64_t> outcomes;
  double seconds = 0;
  bool finished = false;
};

burst send_at_once(comet::io_pool& pool, const comet::client& c, std::size_t sends) {
  burst b;
  std::mutex mutex;
  std::promise<void> all;
  std::size_t left = sends;
  const auto began = clock_type::now();
  asio::post(pool.get_executor(), [&] {
    for (std::size_t i = 0; i < sends; ++i)
      asio::co_spawn(pool.get_executor(), c.send(std::string(echo_action), json::value(i)),
                     [&](std::exception_ptr e, const json::value&) {
                       std::string code = "answered";
                       if (e) try {
                           std::rethrow_exception(e);
                         } catch (const comet::error& x) {
                           code = comet::wire_name(static_cast<comet::errc>(x.code().value()));
                         } catch (const std::exception&) {
                           code = "exception";
                         }
                       std::lock_guard lock(mutex);
                       ++b.outcomes[code];
                       if (--left == 0) all.set_value();
                     });
  });
  b.finished = all.get_future().wait_for(30s) == std::future_status::ready;
  b.seconds = std::chrono::duration<double>(clock_type::now() - began).count();
  std::lock_guard lock(mutex);
  return b;
}

std::uint16_t unused_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

void report(const std::string& title, const burst& b, std::string_view expected, tally& counts) {
  std::cout << "  " << std::left << std::setw(60) << title << std::fixed << std::setprecision(3)
            << b.seconds << " s  ";
  for (const auto& [code, n] : b.outcomes) std::cout << code << " " << n << "  ";
  std::cout << "\n";
  if (!b.finished) counts.failure(title + ": the sends did not end within 30 s");
  for (const auto& [code, n] : b.outcomes)
    if (code != expected)
      counts.failure(title + ": " + std::to_string(n) + " ended " + code + ", not " +
                     std::string(expected));
}

}  // namespace

void run_refusal_phases(tally& counts) {
  constexpr std::size_t sends = 10000;
  std::cout << "refusal phases (outcomes by code)\n";
  {
    comet::io_pool pool(1);
    const comet::endpoint nowhere{"127.0.0.1", unused_port()};
    for (const bool keep_alive : {true, false}) {
      const comet::client c(pool, nowhere,
                            {.name = "offline", .request_timeout = 10000ms,
                             .keep_alive = keep_alive, .max_queued_sends = sends,
                             .connect_retries = 0});
      report(std::string("offline peer, ") + std::to_string(sends) +
                 (keep_alive ? " keep-alive sends" : " one-shot sends"),
             send_at_once(pool, c, sends), "peer_offline", counts);
    }
  }
  {
    // A host whose every connection is held by idle peers.
    constexpr std::size_t room = 32;
    comet::io_pool host_pool(1);
    comet::host_options o;
    o.listen = {"127.0.0.1", 0};
    o.max_connections = room;
    comet::host full(host_pool, o);
    full.on(std::string(echo_action), [](const std::string&, const json::value& v) { return v; });
    const auto at = full.start();
    asio::io_context io;
    std::vector<std::unique_ptr<tcp::socket>> held;
    for (std::size_t i = 0; i < room; ++i) {
      held.push_back(std::make_unique<tcp::socket>(io));
      held.back()->connect({asio::ip::make_address(at.ip), at.port});
    }
    const auto limit = clock_type::now() + 10s;
    while (full.stats().connections_open < room && clock_type::now() < limit)
      std::this_thread::sleep_for(10ms);
    comet::io_pool pool(1);
    constexpr std::size_t refused = 2000;
    const comet::client c(pool, at, {.name = "full", .request_timeout = 10000ms});
    report("full host (all " + std::to_string(room) + " connections held), " +
               std::to_string(refused) + " one-shot sends",
           send_at_once(pool, c, refused), "host_full", counts);
    held.clear();
    auto stopped = asio::co_spawn(host_pool.get_executor(), full.async_stop(), asio::use_future);
    if (stopped.wait_for(10s) != std::future_status::ready)
      counts.failure("the full host did not stop within 10 s");
  }
}

}  // namespace comet_soak
