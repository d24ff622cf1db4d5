// The code under test, driven through its public API only: a comet::host
// answering "echo" on its own comet::io_pool, and comet::client sending the
// benchmark's loads from many coroutines. Nothing here reaches into the
// framework's internals, so the figures are what an application would get.
#pragma once

#include "scenario.hpp"

#include <comet/client.hpp>
#include <comet/config.hpp>
#include <comet/host.hpp>
#include <comet/io_pool.hpp>

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <optional>

namespace comet_bench {

// A comet::host on 127.0.0.1 (a free port) with `threads` io threads (one
// context each) and one routed action, "echo", that answers the request's
// value; over TLS when `tls` is enabled. With `relay`, "echo" is a
// coroutine handler that sends each request on, through a keep-alive
// comet::client on the host's own pool, to a second comet host (one io
// thread) answering "echo", and answers what that host answered.
class comet_host_target {
 public:
  // `metrics`: host_options::metrics (both hosts' and the client's).
  comet_host_target(std::size_t threads, const comet::tls_settings& tls, bool metrics = true,
                    std::size_t max_connections = 10000, bool relay = false);
  comet_host_target(const comet_host_target&) = delete;
  comet_host_target& operator=(const comet_host_target&) = delete;
  // Graceful stop, bounded to about a second, then the pool is stopped.
  ~comet_host_target();

  std::uint16_t port() const noexcept { return port_; }
  comet::host_stats stats() const { return host_.stats(); }

 private:
  // Declared first: the relay's host outlives the host that sends to it.
  std::optional<comet::io_pool> backend_pool_;
  std::optional<comet::host> backend_;
  comet::io_pool pool_;
  std::optional<comet::client> relay_;
  comet::host host_;
  std::uint16_t port_ = 0;
};

// The keep-alive, multiplexed (and one-shot) loads sent with comet::client
// on a one-thread comet::io_pool created on the calling thread (so it
// inherits the calling thread's CPU affinity): `connections` coroutines
// (connections x depth for multiplexed), each looping
// `co_await client.send("echo", value)` with client_options{.keep_alive,
// .max_connections = connections, .max_in_flight = depth}. Pipelining has
// no client API (a client multiplexes instead), so it is not supported.
// Latency is measured around each co_await.
// With s.tls, the client uses `tls`.
result run_comet_client_load(const scenario& s, const boost::asio::ip::tcp::endpoint& target,
                             const run_timing& timing, const comet::tls_settings& tls);

}  // namespace comet_bench
