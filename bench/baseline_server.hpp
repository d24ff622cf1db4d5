// The reference every comet host figure is divided by: a minimal server for
// the same protocol, written by hand the way a competent engineer would write
// one for speed, with no framework in between.
//
// One io_context on one thread; per connection, callbacks (no coroutine
// frames), a buffer that every read appends to and that is parsed for every
// complete frame in it, answers appended to one output buffer that goes out
// in a single write per batch (reads continue while it is written), and
// TCP_NODELAY. It does the work a real server must: the JSON header and the
// JSON content are parsed with Boost.JSON, the action is checked, "value" is
// serialized back, "keep-alive" and "request-id" are honoured. What it does
// not have is what a framework adds: handler routing, logging, statistics,
// graceful shutdown, limits beyond a maximum content length.
#pragma once

#include <cstdint>
#include <memory>

namespace comet_bench {

// parsing: the baseline above. scanning: the protocol's floor, which answers
// canonical echo requests by scanning bytes, with no JSON parser (the
// header's keys found by search, the value cut out by position): fit only
// for comet-bench's own canonical loopback load.
enum class server_style { parsing, scanning };

class baseline_server {
 public:
  // Listens on 127.0.0.1 on a free port and starts its thread.
  explicit baseline_server(server_style style = server_style::parsing);
  baseline_server(const baseline_server&) = delete;
  baseline_server& operator=(const baseline_server&) = delete;
  // Closes everything and joins the thread.
  ~baseline_server();

  std::uint16_t port() const noexcept;

  struct state;

 private:
  std::unique_ptr<state> state_;
};

}  // namespace comet_bench
