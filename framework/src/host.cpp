#include <comet/host.hpp>

#include <comet/codec.hpp>
#include <comet/io_pool.hpp>
#include <comet/log.hpp>

#include "client_impl.hpp"
#include "host_impl.hpp"
#include "json_text.hpp"
#include "request_arena.hpp"
#include "spawn.hpp"
#include "trace.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <list>
#include <mutex>

#include <sys/socket.h>

namespace comet {

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

void host::impl::close_acceptors() {
  boost::system::error_code ignored;
  for (auto& acceptor : acceptors) acceptor.close(ignored);
}

void host::impl::begin_stop() {
  if (stopping.exchange(true)) return;
  if (metrics_http) metrics_http->stop();
  asio::post(control, [self = shared_from_this()] {
    self->accept_backlog();
    self->close_acceptors();
    self->close_connections(/*graceful=*/true);
    self->force_close.expires_after(self->options.shutdown_timeout);
    self->force_close.async_wait([self](boost::system::error_code ec) {
      if (ec) return;
      if (!self->is_drained())
        log(log_level::warn, "host " + self->listening_text +
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

asio::awaitable<void> host::impl::accept_loop(tcp::acceptor& acceptor, endpoint where) {
  auto self = shared_from_this();
  const std::string where_text = where.to_string();
  for (;;) {
    const asio::any_io_executor serial = next_connection_executor();
    auto [ec, socket] = co_await acceptor.async_accept(serial, use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      log(log_level::warn, "host " + where_text + ": accept failed: " + ec.message());
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
          ec == asio::error::no_memory) {
        // Out of file descriptors: wait for some to be released, then retry.
        asio::steady_timer backoff(control, std::chrono::milliseconds(100));
        co_await backoff.async_wait(use_tuple);
      }
      continue;
    }
    // Accepted as the stop began: answered shutting_down like the backlog.
    admit(std::move(socket), serial);
    if (stopping) break;
  }
  --accepting;
  notify_if_drained();
}

// The executor the next connection runs on: the spread's next, behind a
// strand unless its context has one thread.
asio::any_io_executor host::impl::next_connection_executor() {
  const auto& chosen = spread[next_spread++ % spread.size()];
  return single_threaded ? chosen : asio::any_io_executor(asio::make_strand(chosen));
}

void host::impl::admit(tcp::socket socket, const asio::any_io_executor& serial) {
  boost::system::error_code ignored;
  if (std::lock_guard lock(connections_mutex); connections.size() >= options.max_connections) {
    metrics.refused();
    warn_refused();
    refuse_full(std::move(socket));
    return;
  }
  socket.set_option(tcp::no_delay(true), ignored);
  auto conn = std::make_shared<host_connection>(std::move(socket), serial, shared_from_this());
  {
    std::lock_guard lock(connections_mutex);
    connections.push_front(conn);
    conn->position = connections.begin();
    conn->listed = true;
  }
  metrics.accepted();
  conn->start();
}

// Connections a peer made before the stop, still in the listen backlog, are
// accepted and answered shutting_down (their senders may try again; a
// closed listener would reset them, which reads as a lost request). Then
// the listeners close, so that another process on the port takes new ones.
void host::impl::accept_backlog() {
  for (auto& acceptor : acceptors) {
    boost::system::error_code ec;
    acceptor.non_blocking(true, ec);
    if (ec) continue;
    for (std::size_t n = 0; n < options.max_connections; ++n) {
      const asio::any_io_executor serial = next_connection_executor();
      tcp::socket socket(serial);
      acceptor.accept(socket, ec);
      if (ec) break;  // would_block: the backlog is empty
      admit(std::move(socket), serial);
    }
  }
}

namespace {

// An address that cannot exist on this machine: IPv6 where IPv6 is off, an
// address no interface has. A name's address that fails so is skipped.
bool cannot_exist_here(const boost::system::error_code& ec) {
  return ec == asio::error::address_family_not_supported ||
         ec == boost::system::errc::address_not_available;
}

// Opens `acceptor` listening on `at`; an IPv6 one beside others is v6_only,
// so that the IPv4 acceptor of the same port can be bound.
// `reuse_port`: SO_REUSEPORT, before the bind, so that other hosts (of the
// same user) may bind the same address and port and the kernel spreads new
// connections over them.
void bind_and_listen(tcp::acceptor& acceptor, const tcp::endpoint& at, bool v6_only,
                     bool reuse_port, boost::system::error_code& ec) {
  if (acceptor.open(at.protocol(), ec); ec) return;
  if (v6_only && at.address().is_v6())
    if (acceptor.set_option(asio::ip::v6_only(true), ec); ec) return;
  if (reuse_port) {
    using reuse_port_option = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
    if (acceptor.set_option(reuse_port_option(true), ec); ec) return;
  }
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (acceptor.bind(at, ec); ec) return;
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
}

std::string address_text(const tcp::endpoint& at) {
  return endpoint{at.address().to_string(), at.port()}.to_string();
}

// "a", "a and b", "a, b and c".
std::string in_words(const std::vector<std::string>& items) {
  std::string text;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) text += i + 1 == items.size() ? " and " : ", ";
    text += items[i];
  }
  return text;
}

}  // namespace

void host::impl::listen_on(const std::vector<tcp::endpoint>& addresses, bool named) {
  const endpoint& want = options.listen;
  auto fail = [&](const std::string& why) {
    close_acceptors();
    acceptors.clear();
    return error(errc::bind_failed, "cannot listen on " + want.to_string() + ": " + why);
  };
  // With port 0, the first acceptor picks the port and the others take it;
  // if another program holds that port on a later address, pick again.
  for (int round = 1;; ++round) {
    std::uint16_t port = want.port;
    std::vector<std::string> skipped;
    bool pick_again = false;
    for (auto at : addresses) {
      at.port(port);
      tcp::acceptor& acceptor = acceptors.emplace_back(control);
      boost::system::error_code ec;
      bind_and_listen(acceptor, at, named, options.reuse_port, ec);
      if (!ec) {
        if (port == 0) port = acceptor.local_endpoint(ec).port();
        if (!ec) continue;
      }
      acceptors.pop_back();
      if (named && cannot_exist_here(ec)) {
        if (round == 1)
          log(log_level::warn, "host " + want.to_string() + ": not listening on " +
                                   address_text(at) + ", an address of '" + want.ip +
                                   "' that this machine cannot use (" + ec.message() + ")");
        skipped.push_back(address_text(at) + " (" + ec.message() + ")");
        continue;
      }
      if (ec == asio::error::address_in_use && want.port == 0 && !acceptors.empty() && round < 5) {
        pick_again = true;
        break;
      }
      throw fail((named ? address_text(at) + ": " : std::string()) + ec.message() +
                 (ec == asio::error::address_in_use
                      ? "; another program holds the port: pick another port or stop that program"
                      : ""));
    }
    if (pick_again) {
      close_acceptors();
      acceptors.clear();
      continue;
    }
    if (acceptors.empty())
      throw fail("this machine cannot use any address of '" + want.ip + "': " + in_words(skipped));
    return;
  }
}

std::variant<request_message, encoded_response> host::impl::prepare(
    const frame_header& header, std::string_view content, bool peer_admitted,
    bool serve_in_drain) const {
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
  // On this thread's arena: answered in this batch, the request takes no
  // heap allocation (request_arena.hpp).
  auto request = detail::decode_request(content, why, detail::request_storage());
  if (!request) return error_response(errc::bad_request, why);
  // The built-in readiness answer, the stop included: a probe must see
  // "draining", not an error.
  if (request->action == "health" && !router.routed("health")) {
    json::value answer = json::object{
        {"status", to_string(stopping ? health_status::draining : health.load())}};
    return encoded_response{encode_response(answer), std::nullopt};
  }
  if (stopping && !serve_in_drain)
    return error_response(errc::shutting_down, "the host is shutting down; try again later");
  return std::move(*request);
}

bool host::impl::run_now(const request_message& request, std::optional<std::uint64_t> request_id,
                         const endpoint& peer, const asio::any_io_executor& connection,
                         std::string_view traceparent, encoded_response& into) const {
  const request_context context{peer, request_id, connection, std::string(traceparent)};
  const detail::traceparent_scope scope(context.traceparent);
  return router.dispatch_now(request.action, request.value, context, into);
}

asio::awaitable<encoded_response> host::impl::run(request_message request,
                                                  std::optional<std::uint64_t> request_id,
                                                  endpoint peer, asio::any_io_executor connection,
                                                  std::string traceparent) {
  const request_context context{std::move(peer), request_id, std::move(connection),
                                std::move(traceparent)};
  // handler_timeout is the connection's to keep (host_connection::on_handler_deadline).
  co_return co_await router.dispatch(request.action, request.value, context);
}

host_options host_options::from_config(const config& cfg) {
  host_options o;
  o.listen = cfg.host;
  o.max_content_length = cfg.framework.max_content_length;
  o.shutdown_timeout = cfg.framework.shutdown_timeout;
  o.max_in_flight = cfg.framework.max_in_flight;
  o.max_in_flight_bytes = cfg.framework.max_in_flight_bytes;
  o.write_buffer_limit = cfg.framework.write_buffer_limit;
  o.max_connections = cfg.framework.max_connections;
  o.idle_timeout = cfg.framework.idle_timeout;
  o.handler_timeout = cfg.framework.handler_timeout;
  o.max_connection_age = cfg.framework.max_connection_age;
  o.reuse_port = cfg.framework.reuse_port;
  o.max_streams = cfg.framework.max_streams;
  o.subscriber_queue = cfg.framework.subscriber_queue;
  o.subscriber_queue_bytes = cfg.framework.subscriber_queue_bytes;
  o.auth_token = cfg.framework.auth_token;
  o.allow = split_allow_list(cfg.framework.allow);
  o.tls = cfg.framework.tls;
  o.metrics_listen = cfg.framework.metrics_listen;
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

namespace {
std::vector<asio::any_io_executor> nonempty(std::vector<asio::any_io_executor> executors) {
  if (executors.empty())
    throw error(errc::usage_error, "comet::host: give it at least one executor to run on");
  return executors;
}
}  // namespace

host::host(std::vector<asio::any_io_executor> per_thread_executors, host_options options)
    : impl_(std::make_shared<impl>(nonempty(std::move(per_thread_executors)), true,
                                   std::move(options))) {}

host::~host() {
  if (!impl_->started) return;
  impl_->stopping = true;
  if (impl_->metrics_http) impl_->metrics_http->stop();
  asio::post(impl_->control, [self = impl_] {
    self->close_acceptors();
    self->force_close.cancel();
    self->close_connections(/*graceful=*/false);
  });
}

action_router& host::router() {
  if (impl_->started)
    throw error(errc::usage_error, "comet::host: register handlers before start()");
  return impl_->router;
}

action_router& host::route(const std::string& action) {
  auto& r = router();
  impl_->route_names.push_back(action);
  return r;
}

endpoint host::start() {
  if (impl_->started.exchange(true))
    throw error(errc::usage_error, "comet::host::start() called twice");
  const endpoint& want = impl_->options.listen;
  std::vector<tcp::endpoint> addresses;
  if (want.is_address()) {
    addresses.emplace_back(asio::ip::make_address(want.ip), want.port);
  } else {
    // A name is resolved once, here (blocking); the host listens on every
    // address it resolves to, as asyncio's start_server does, so that a
    // peer reaches it whichever of them it dials.
    boost::system::error_code ec;
    tcp::resolver resolver(impl_->executor);
    const auto results = resolver.resolve(want.ip, std::to_string(want.port), ec);
    if (ec || results.empty()) {
      impl_->started = false;
      throw error(errc::unresolved,
                  "cannot listen on " + want.to_string() + ": the host name '" + want.ip +
                      "' does not resolve (" + (ec ? ec.message() : std::string("no addresses")) +
                      "); check the name, or write the address to listen on");
    }
    for (const auto& entry : results)
      if (std::find(addresses.begin(), addresses.end(), entry.endpoint()) == addresses.end())
        addresses.push_back(entry.endpoint());
  }
  // The labels are fixed before the first request can be counted.
  impl_->metrics.requests.set_actions(impl_->route_names, impl_->options.metrics);
  try {
    impl_->listen_on(addresses, !want.is_address());
    if (impl_->options.metrics_listen) {
      // Rendering holds the host weakly: the listener is the host's, and
      // ends with its stop.
      impl_->metrics_http = std::make_unique<metrics_listener>(
          impl_->executor, [weak = std::weak_ptr<impl>(impl_)] {
            const auto self = weak.lock();
            return self ? self->render_metrics() : std::string();
          });
      impl_->metrics_bound = impl_->metrics_http->start(*impl_->options.metrics_listen);
    }
  } catch (...) {
    impl_->close_acceptors();
    impl_->acceptors.clear();
    impl_->metrics_http.reset();
    impl_->started = false;
    throw;
  }
  for (auto& acceptor : impl_->acceptors) {
    const auto local = acceptor.local_endpoint();
    impl_->listening.push_back(endpoint{local.address().to_string(), local.port()});
  }
  // COMET's peers are IPv4: the address start() returns is an IPv4 one
  // when there is one.
  const auto first_v4 = std::find_if(impl_->acceptors.begin(), impl_->acceptors.end(),
                                     [](const tcp::acceptor& a) {
                                       return a.local_endpoint().address().is_v4();
                                     });
  impl_->bound = impl_->listening[first_v4 == impl_->acceptors.end()
                                      ? 0
                                      : std::distance(impl_->acceptors.begin(), first_v4)];
  // Logged first: what start() returns, then the others.
  std::vector<std::string> texts{impl_->bound.to_string()};
  for (const auto& at : impl_->listening)
    if (at != impl_->bound) texts.push_back(at.to_string());
  impl_->listening_text = in_words(texts);
  impl_->start_time = std::chrono::steady_clock::now();
  impl_->accepting = impl_->acceptors.size();
  std::size_t i = 0;
  for (auto& acceptor : impl_->acceptors)
    asio::co_spawn(impl_->control, impl_->accept_loop(acceptor, impl_->listening[i++]),
                   detail::log_failure("host accept loop"));
  log(log_level::info, "host listening on " + impl_->listening_text +
                           (want.is_address() ? std::string() : " (" + want.ip + ")"));
  return impl_->bound;
}

endpoint host::local_endpoint() const { return impl_->bound; }

const std::vector<endpoint>& host::local_endpoints() const { return impl_->listening; }

std::uint64_t host::publish(std::string_view topic, json::value value) {
  return impl_->topics.publish(topic, value);
}

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
  log(log_level::info, "host " + self->listening_text + " stopped");
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
  o["connections_aged"] = s.connections_aged;
  o["tls_handshakes_failed"] = s.tls_handshakes_failed;
  o["tls_sessions_resumed"] = s.tls_sessions_resumed;
  o["latency_us"] = std::move(latency);
  json::array listening;
  for (const auto& at : s.listening) listening.emplace_back(at.to_string());
  o["listening"] = std::move(listening);
  o["streams_open"] = s.streams_open;
  o["subscriptions_open"] = s.subscriptions_open;
  o["items_published"] = s.items_published;
  o["items_dropped"] = s.items_dropped;
  out = std::move(o);
}

host_stats host::stats() const {
  host_stats s;
  if (impl_->started) s.uptime = std::chrono::steady_clock::now() - impl_->start_time;
  impl_->metrics.fill(s);
  if (impl_->started) s.listening = impl_->listening;
  s.streams_open = impl_->streams_open.load(std::memory_order_relaxed);
  s.subscriptions_open = impl_->topics.subscriptions();
  s.items_published = impl_->topics.published();
  s.items_dropped = impl_->topics.dropped();
  std::lock_guard lock(impl_->connections_mutex);
  s.connections_open = impl_->connections.size();
  return s;
}

namespace {

void append_family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help, std::uint64_t value) {
  append_family_header(out, name, type, help);
  append_sample(out, name, {}, value);
}

}  // namespace

std::string host::impl::render_metrics() {
  std::string out;
  out.reserve(4096);
  metrics.requests.render(out);
  std::size_t open = 0;
  {
    std::lock_guard lock(connections_mutex);
    open = connections.size();
  }
  append_family(out, "comet_host_connections", "gauge", "Connections open.", open);
  append_family(out, "comet_host_connections_refused_total", "counter",
                "Connections refused at max_connections.", metrics.connections_refused());
  append_family(out, "comet_host_streams_open", "gauge", "Streams whose handler is running.",
                streams_open.load(std::memory_order_relaxed));
  append_family(out, "comet_host_subscriptions_open", "gauge", "Subscriptions open.",
                topics.subscriptions());
  append_family(out, "comet_host_items_published_total", "counter", "host::publish() calls.",
                topics.published());
  append_family(out, "comet_host_items_dropped_total", "counter",
                "Queued items dropped for slow subscribers.", topics.dropped());
  std::vector<std::shared_ptr<client::impl>> held;
  {
    std::lock_guard lock(metric_clients_mutex);
    std::erase_if(metric_clients, [](const auto& c) { return c.expired(); });
    for (const auto& c : metric_clients)
      if (auto alive = c.lock()) held.push_back(std::move(alive));
  }
  if (!held.empty()) {
    std::vector<client_metrics::view> views;
    for (const auto& c : held) views.push_back(c->metrics_view());
    client_metrics::render(out, views);
  }
  return out;
}

void host::add_metrics(const client& c) {
  std::lock_guard lock(impl_->metric_clients_mutex);
  const bool known = std::any_of(impl_->metric_clients.begin(), impl_->metric_clients.end(),
                                 [&](const auto& held) { return held.lock() == c.impl_; });
  if (!known) impl_->metric_clients.push_back(c.impl_);
}

void host::add_metrics(const client_set& clients) {
  for (const auto& [name, c] : clients.all()) add_metrics(c);
}

std::string host::metrics() const { return impl_->render_metrics(); }

std::optional<endpoint> host::metrics_endpoint() const { return impl_->metrics_bound; }

std::string_view to_string(health_status s) noexcept {
  switch (s) {
    case health_status::serving: return "serving";
    case health_status::not_serving: return "not_serving";
    case health_status::draining: return "draining";
  }
  return "not_serving";
}

void host::set_health(health_status status) noexcept { impl_->health.store(status); }

health_status host::health() const noexcept {
  return impl_->stopping ? health_status::draining : impl_->health.load();
}

}  // namespace comet
