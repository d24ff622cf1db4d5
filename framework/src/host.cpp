#include <comet/host.hpp>

#include <comet/codec.hpp>
#include <comet/io_pool.hpp>
#include <comet/log.hpp>

#include "host_impl.hpp"
#include "spawn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json/object.hpp>

#include <atomic>
#include <cstring>
#include <list>
#include <mutex>

namespace comet {
using namespace asio::experimental::awaitable_operators;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

host::impl::impl(std::vector<asio::any_io_executor> executors, bool one_thread_each,
                 host_options opts)
    : executor(executors.front()),
      spread(std::move(executors)),
      single_threaded(one_thread_each),
      options(std::move(opts)),
      allowed(options.allow),
      tls(make_host_tls_context(options.tls)),
      control(asio::make_strand(executor)),
      acceptor(control),
      drained(control, asio::steady_timer::time_point::max()),
      force_close(control) {}

void host::impl::close_connections(bool graceful) {
  std::lock_guard lock(connections_mutex);
  for (auto& entry : connections)
    if (auto conn = entry.lock())
      asio::post(conn->strand(), [conn, graceful] {
      if (graceful)
        conn->close_gracefully();
      else
        conn->close_now();
    });
}

bool host::impl::unlist(host_connection& conn) {
  std::lock_guard lock(connections_mutex);
  if (!conn.listed) return false;
  conn.listed = false;
  connections.erase(conn.position);
  return connections.empty();
}

void host::impl::forget(host_connection& conn) {
  if (unlist(conn) && stopping) notify_if_drained();
}

bool host::impl::is_drained() {
  std::lock_guard lock(connections_mutex);
  return connections.empty() && !accepting;
}

void host::impl::notify_if_drained() {
  asio::post(control, [self = shared_from_this()] {
    if (self->is_drained()) {
      self->drained.cancel();
      self->force_close.cancel();
    }
  });
}

void host::impl::begin_stop() {
  if (stopping.exchange(true)) return;
  asio::post(control, [self = shared_from_this()] {
    boost::system::error_code ignored;
    self->acceptor.close(ignored);
    self->close_connections(/*graceful=*/true);
    self->force_close.expires_after(self->options.shutdown_timeout);
    self->force_close.async_wait([self](boost::system::error_code ec) {
      if (ec) return;
      if (!self->is_drained())
        log(log_level::warn, "host " + self->bound.to_string() +
                                 ": shutdown timeout reached, closing connections with "
                                 "requests still in flight");
      self->close_connections(/*graceful=*/false);
    });
  });
}

// A host at max_connections warns at most once a second, with how many
// connections it refused since its last line: a flood is a line, not 10,000.
// (The first refusal after a quiet second is reported at once: the clock
// starts far from refusal_warned's epoch.)
void host::impl::warn_refused() {
  ++refused_since_warning;
  const auto now = std::chrono::steady_clock::now();
  if (now - refusal_warned < std::chrono::seconds(1)) return;
  log(log_level::warn, "host " + bound.to_string() + ": " + std::to_string(options.max_connections) +
                           " connections open (max_connections); refused " +
                           std::to_string(refused_since_warning) +
                           " new connection(s) since the last such line; raise max_connections "
                           "or lower the clients' max_connections_per_peer");
  refusal_warned = now;
  refused_since_warning = 0;
}

asio::awaitable<void> host::impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    const auto& chosen = spread[next_spread++ % spread.size()];
    const asio::any_io_executor serial =
        single_threaded ? chosen : asio::any_io_executor(asio::make_strand(chosen));
    auto [ec, socket] = co_await acceptor.async_accept(serial, use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      log(log_level::warn, "host " + bound.to_string() + ": accept failed: " + ec.message());
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
          ec == asio::error::no_memory) {
        // Out of file descriptors: wait for some to be released, then retry.
        asio::steady_timer backoff(control, std::chrono::milliseconds(100));
        co_await backoff.async_wait(use_tuple);
      }
      continue;
    }
    if (stopping) break;
    boost::system::error_code ignored;
    if (std::lock_guard lock(connections_mutex); connections.size() >= options.max_connections) {
      metrics.refused();
      warn_refused();
      socket.close(ignored);
      continue;
    }
    socket.set_option(tcp::no_delay(true), ignored);
    auto conn = std::make_shared<host_connection>(std::move(socket), serial, self);
    {
      std::lock_guard lock(connections_mutex);
      connections.push_front(conn);
      conn->position = connections.begin();
      conn->listed = true;
    }
    metrics.accepted();
    conn->start();
  }
  accepting = false;
  notify_if_drained();
}

std::variant<request_message, encoded_response> host::impl::prepare(
    const frame_header& header, std::string_view content, bool peer_admitted) const {
  if (!peer_admitted)
    return error_response(errc::unauthorized, "this host does not accept requests from your address");
  if (!options.auth_token.empty() && !token_matches(options.auth_token, header.auth_token))
    return error_response(errc::unauthorized,
                          header.auth_token.empty() ? "this host requires an auth-token"
                                                    : "the auth-token is not valid");
  if (!header.is_json())
    return error_response(errc::bad_request,
                          "content-type '" + header.content_type +
                              "' is not supported: this host answers text/json requests");
  std::string why;
  auto request = decode_request(content, why);
  if (!request) return error_response(errc::bad_request, why);
  if (stopping)
    return error_response(errc::shutting_down, "the host is shutting down; try again later");
  return std::move(*request);
}

std::optional<encoded_response> host::impl::run_now(const request_message& request,
                                                   std::optional<std::uint64_t> request_id,
                                                   const endpoint& peer,
                                                   const asio::any_io_executor& connection) const {
  const request_context context{peer, request_id, connection};
  return router.dispatch_now(request.action, request.value, context);
}

asio::awaitable<encoded_response> host::impl::run(request_message request,
                                                  std::optional<std::uint64_t> request_id,
                                                  endpoint peer,
                                                  asio::any_io_executor connection) {
  const request_context context{std::move(peer), request_id, std::move(connection)};
  const auto deadline = options.handler_timeout;
  if (deadline.count() <= 0 || !router.may_suspend(request.action))
    co_return co_await router.dispatch(request.action, request.value, context);

  // A coroutine handler races its deadline; the loser is cancelled, and the
  // cancellation reaches whatever the handler is waiting on.
  asio::steady_timer timer(co_await asio::this_coro::executor, deadline);
  auto work = router.dispatch(request.action, request.value, context);
  auto expiry = timer.async_wait(asio::use_awaitable);
  auto outcome = co_await (std::move(work) || std::move(expiry));
  if (outcome.index() == 0) co_return std::move(std::get<0>(outcome));
  log(log_level::warn, "handler for action '" + request.action + "' from " +
                           context.peer.to_string() + " ran past its deadline; cancelled");
  co_return error_response(errc::timeout, "handler for action '" + request.action +
                                              "' ran past its deadline of " +
                                              std::to_string(deadline.count()) + " ms");
}

host_options host_options::from_config(const config& cfg) {
  host_options o;
  o.listen = cfg.host;
  o.max_content_length = cfg.framework.max_content_length;
  o.shutdown_timeout = cfg.framework.shutdown_timeout;
  o.max_in_flight = cfg.framework.max_in_flight;
  o.write_buffer_limit = cfg.framework.write_buffer_limit;
  o.max_connections = cfg.framework.max_connections;
  o.idle_timeout = cfg.framework.idle_timeout;
  o.handler_timeout = cfg.framework.handler_timeout;
  o.auth_token = cfg.framework.auth_token;
  o.allow = split_allow_list(cfg.framework.allow);
  o.tls = cfg.framework.tls;
  return o;
}

host::host(asio::any_io_executor executor, host_options options)
    : impl_(std::make_shared<impl>(std::vector{std::move(executor)}, false, std::move(options))) {}

host::host(asio::any_io_executor executor, const config& cfg)
    : host(std::move(executor), host_options::from_config(cfg)) {}

host::host(io_pool& pool, host_options options)
    : impl_(std::make_shared<impl>(pool.executors(), pool.single_threaded_contexts(),
                                   std::move(options))) {}

host::host(io_pool& pool, const config& cfg) : host(pool, host_options::from_config(cfg)) {}

host::~host() {
  if (!impl_->started) return;
  impl_->stopping = true;
  asio::post(impl_->control, [self = impl_] {
    boost::system::error_code ignored;
    self->acceptor.close(ignored);
    self->force_close.cancel();
    self->close_connections(/*graceful=*/false);
  });
}

action_router& host::router() {
  if (impl_->started)
    throw error(errc::usage_error, "comet::host: register handlers before start()");
  return impl_->router;
}

endpoint host::start() {
  if (impl_->started.exchange(true))
    throw error(errc::usage_error, "comet::host::start() called twice");
  const endpoint& want = impl_->options.listen;
  auto fail = [&](const std::string& why) -> error {
    impl_->started = false;
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    return error(errc::bind_failed, "cannot listen on " + want.to_string() + ": " + why);
  };
  boost::system::error_code ec;
  tcp::endpoint ep;
  if (want.is_address()) {
    ep = tcp::endpoint(asio::ip::make_address(want.ip), want.port);
  } else {
    // A name is resolved once, here (blocking), and the host listens on its
    // first address.
    tcp::resolver resolver(impl_->executor);
    const auto results = resolver.resolve(want.ip, std::to_string(want.port), ec);
    if (ec || results.empty()) {
      (void)fail("");
      throw error(errc::unresolved,
                  "cannot listen on " + want.to_string() + ": the host name '" + want.ip +
                      "' does not resolve (" + (ec ? ec.message() : std::string("no addresses")) +
                      "); check the name, or write the address to listen on");
    }
    ep = results.begin()->endpoint();
  }
  tcp::acceptor& acceptor = impl_->acceptor;
  if (acceptor.open(ep.protocol(), ec); ec) throw fail(ec.message());
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (acceptor.bind(ep, ec); ec)
    throw fail(ec.message() + (ec == asio::error::address_in_use
                                   ? "; another program holds the port: pick another port "
                                     "or stop that program"
                                   : ""));
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) throw fail(ec.message());
  const auto local = acceptor.local_endpoint();
  impl_->bound = endpoint{local.address().to_string(), local.port()};
  impl_->start_time = std::chrono::steady_clock::now();
  impl_->accepting = true;
  asio::co_spawn(impl_->control, impl_->accept_loop(), detail::log_failure("host accept loop"));
  log(log_level::info, "host listening on " + impl_->bound.to_string());
  return impl_->bound;
}

endpoint host::local_endpoint() const { return impl_->bound; }

asio::any_io_executor host::get_executor() const noexcept { return impl_->executor; }

bool host::running() const noexcept { return impl_->started && !impl_->stopping; }

void host::stop() {
  if (!impl_->started) return;
  impl_->begin_stop();
}

asio::awaitable<void> host::async_stop() {
  auto self = impl_;
  if (!self->started) co_return;
  self->begin_stop();
  // The drained timer is only touched on the control strand; it never
  // expires on its own and is cancelled once the last connection is gone.
  // A named initiation, not a temporary: GCC 12 may destroy a lambda
  // temporary in a co_await expression twice.
  auto wait_until_drained = [self](auto handler) {
    asio::post(self->control, [self, handler = std::move(handler)]() mutable {
      // Completing through the handler's own executor, never inline:
      // the coroutine must resume where it runs, not on this strand.
      if (self->is_drained()) return asio::post(std::move(handler));
      self->drained.async_wait([handler = std::move(handler)](boost::system::error_code) mutable {
        asio::post(std::move(handler));
      });
    });
  };
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(wait_until_drained,
                                                                      asio::use_awaitable);
  log(log_level::info, "host " + self->bound.to_string() + " stopped");
}

void tag_invoke(const json::value_from_tag&, json::value& out, const host_stats& s) {
  json::object errors_by_code;
  for (const auto& [code, count] : s.errors_by_code) errors_by_code[code] = count;
  json::object latency;
  latency["p50"] = s.latency_p50.count();
  latency["p99"] = s.latency_p99.count();
  latency["p999"] = s.latency_p999.count();
  json::object o;
  o["uptime_seconds"] = std::chrono::duration<double>(s.uptime).count();
  o["requests_served"] = s.requests_served;
  o["error_responses"] = s.error_responses;
  o["errors_by_code"] = std::move(errors_by_code);
  o["bytes_received"] = s.bytes_received;
  o["bytes_sent"] = s.bytes_sent;
  o["connections_open"] = s.connections_open;
  o["connections_accepted"] = s.connections_accepted;
  o["connections_refused"] = s.connections_refused;
  o["tls_handshakes_failed"] = s.tls_handshakes_failed;
  o["tls_sessions_resumed"] = s.tls_sessions_resumed;
  o["latency_us"] = std::move(latency);
  out = std::move(o);
}

host_stats host::stats() const {
  host_stats s;
  if (impl_->started) s.uptime = std::chrono::steady_clock::now() - impl_->start_time;
  impl_->metrics.fill(s);
  std::lock_guard lock(impl_->connections_mutex);
  s.connections_open = impl_->connections.size();
  return s;
}

}  // namespace comet
