// Internal: the host's optional HTTP listener for Prometheus
// (host_options::metrics_listen). It serves GET /metrics with the text a
// callback renders (host::metrics()), bounded like the main listener: an
// idle timeout, a request size limit and a connection limit. Boost.Beast
// stays in metrics_listener.cpp; this header names none of it.
//
// It runs on one strand of the host's executor (scrapes are rare and
// small), starts with the host and closes with its stop: the acceptor,
// every connection and every timer end then, so that after the host's last
// work io.run() returns.
#pragma once

#include <comet/endpoint.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace comet {

namespace asio = boost::asio;

struct metrics_listener_limits {
  // A connection that sends no complete request (or does not read the
  // answer) for this long is closed; keep-alive connections between
  // scrapes too.
  std::chrono::milliseconds idle_timeout{30000};
  // A request whose header (or body) is larger is answered 431 (413) and closed.
  std::size_t max_header_bytes = 8 * 1024;
  std::size_t max_body_bytes = 8 * 1024;
  // Connections open at once; one past it is closed at once.
  std::size_t max_connections = 16;
};

class metrics_listener {
 public:
  // `render` makes the body of each GET /metrics, on the listener's strand.
  metrics_listener(asio::any_io_executor executor, std::function<std::string()> render,
                   metrics_listener_limits limits = {});
  ~metrics_listener();
  metrics_listener(const metrics_listener&) = delete;
  metrics_listener& operator=(const metrics_listener&) = delete;

  // Binds and listens on `at` (an address; port 0 picks one) and starts
  // accepting; returns the bound endpoint. Throws comet::error(bind_failed).
  endpoint start(const endpoint& at);
  // From any thread, returning at once: closes the acceptor and every
  // connection (a scrape being answered is cut). Idempotent. The owner
  // calls it: the destructor does not (the executor may be gone by then).
  void stop();

  struct state;

 private:
  std::shared_ptr<state> state_;
};

}  // namespace comet
