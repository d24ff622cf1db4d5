#include "comet_side.hpp"

#include "send_loop.hpp"
#include "alloc_counter.hpp"
#include "wire.hpp"

#include <comet/client.hpp>
#include <comet/errors.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <future>
#include <thread>

namespace comet_bench {
namespace asio = boost::asio;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

namespace {

comet::host_options echo_host_options(const comet::tls_settings& tls, bool metrics,
                                      std::size_t max_connections) {
  comet::host_options o;
  o.max_connections = max_connections;
  o.metrics = metrics;
  o.listen = {"127.0.0.1", 0};
  o.shutdown_timeout = std::chrono::milliseconds(500);
  o.tls = tls;
  return o;
}

}  // namespace

comet_host_target::comet_host_target(std::size_t threads, const comet::tls_settings& tls,
                                     bool metrics, std::size_t max_connections, bool relay)
    : pool_(threads, comet::io_pool_layout::context_per_thread),
      host_(pool_, echo_host_options(tls, metrics, max_connections)) {
  if (!relay) {
    host_.on("echo", [](const std::string&, const json::value& value) { return value; });
  } else {
    backend_pool_.emplace(1);
    backend_.emplace(*backend_pool_, echo_host_options({}, metrics, max_connections));
    backend_->on("echo", [](const std::string&, const json::value& value) { return value; });
    const auto at = backend_->start();
    comet::client_options o;
    o.name = "comet-bench relay";
    o.keep_alive = true;
    o.metrics = metrics;
    o.max_connections = 4;
    o.max_in_flight = 256;
    relay_.emplace(pool_, at, o);
    host_.on("echo", [this](const std::string&, const json::value& value) -> asio::awaitable<json::value> {
      co_return co_await relay_->send("echo", value);
    });
  }
  port_ = host_.start().port;
}

comet_host_target::~comet_host_target() {
  host_.stop();
  for (int i = 0; i < 100 && host_.stats().connections_open != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  if (relay_) relay_->close();
  pool_.stop();
  if (backend_) {
    backend_->stop();
    for (int i = 0; i < 100 && backend_->stats().connections_open != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    backend_pool_->stop();
  }
}

result run_comet_client_load(const scenario& s, const asio::ip::tcp::endpoint& target,
                             const run_timing& timing, const comet::tls_settings& tls) {
  send_run t;
  t.begin = clock_type::now() + timing.warmup;
  t.end = t.begin + timing.duration;
  const auto drain = std::chrono::duration_cast<std::chrono::milliseconds>(timing.drain);

  comet::client_options options;
  options.name = "comet-bench target";
  options.connect_timeout = drain;
  options.request_timeout = drain;
  options.keep_alive = s.mode != load_mode::one_shot;
  options.metrics = s.metrics;
  options.max_connections = s.connections;
  options.max_in_flight = s.mode == load_mode::multiplexed ? s.depth : 1;
  if (s.tls) options.tls = tls;
  const std::size_t senders = s.mode == load_mode::multiplexed ? s.connections * s.depth
                                                               : s.connections;
  comet_alloc::window counted(t.begin, t.end);
  {
    comet::io_pool pool(1);
    const comet::client client(pool, {target.address().to_string(), target.port()}, options);
    const json::value value(make_payload(s.payload));
    t.live = senders;
    auto finished = t.finished.get_future();
    for (std::size_t i = 0; i < senders; ++i)
      asio::co_spawn(pool.get_executor(), send_loop(client, value, t, "comet::client: "),
                     [&t](std::exception_ptr failure) {
                       if (failure) t.fail("comet-bench: a send loop ended with an exception");
                       if (--t.live == 0) t.finished.set_value();
                     });
    // A send never outlives request_timeout, so every loop ends by then.
    const auto limit = t.end + drain + std::chrono::seconds(1);
    if (finished.wait_until(limit) != std::future_status::ready) {
      pool.stop();
      pool.join();
      t.errors += t.live;
      if (t.first_error.empty()) t.first_error = "comet::client sends still pending after request_timeout";
    }
  }  // joins the pool
  result out;
  out.what = s;
  out.seconds = std::chrono::duration<double>(t.end - t.begin).count();
  out.messages = t.answers;
  out.errors = t.errors;
  out.first_error = std::move(t.first_error);
  out.latency = t.latency;
  out.window_allocations = counted.count();
  return out;
}

}  // namespace comet_bench
