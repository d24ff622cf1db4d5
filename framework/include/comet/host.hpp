// A host: listens on one endpoint (on each of its addresses, for a host
// name) and answers requests with its handlers.
//
// Each accepted connection is a coroutine on the executor given at
// construction; the host never starts threads. By default a connection
// carries one request and is closed after the response, as COMET does; a
// request with "keep-alive": true keeps it open for more (docs/protocol.md, Extensions).
//
//   comet::io_pool pool{2};
//   comet::host host{pool.get_executor(), cfg};
//   host.on("echo", [](auto&, const json::value& v) { return v; });
//   host.start();
//   ...
//   host.stop();  // graceful: stop accepting, finish in-flight requests
#pragma once

#include <comet/detail/asio_abi.hpp>

#include <comet/config.hpp>
#include <comet/endpoint.hpp>
#include <comet/handlers.hpp>
#include <comet/observer.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/json/value_from.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace comet {

class client;
class client_set;

struct host_options {
  endpoint listen{"127.0.0.1", 65432};
  std::size_t max_content_length = settings{}.max_content_length;
  // How long stop() lets in-flight requests run before closing them.
  std::chrono::milliseconds shutdown_timeout = settings{}.shutdown_timeout;
  // A keep-alive connection's window (docs/protocol.md): requests read and
  // not yet answered, at most, whose contents add up to at most
  // max_in_flight_bytes (one request alone is always admitted). A request
  // past them is answered `busy` without running (safe to send again); the
  // host keeps reading, so a cancel behind a full window still arrives.
  std::size_t max_in_flight = 64;
  std::size_t max_in_flight_bytes = settings{}.max_in_flight_bytes;
  // Answers buffered for a peer that is not reading them; past it the host
  // stops reading from that peer (backpressure).
  std::size_t write_buffer_limit = 4 * 1024 * 1024;
  // Open connections at most; past it new ones are closed at once.
  std::size_t max_connections = 10000;
  // A peer that sends nothing (or stalls mid-frame) for this long, or does
  // not read its answers for this long, is disconnected. Zero: never.
  std::chrono::milliseconds idle_timeout{60000};
  // A coroutine handler still running after this long is cancelled and the
  // request answered `timeout`. Zero: no deadline. (A plain function cannot
  // be interrupted; it is not bounded by this.) A coroutine handler is also
  // cancelled when its peer closes the connection or sends a cancel frame
  // for it, and when a stop reaches shutdown_timeout; the cancellation
  // reaches the sends it awaits.
  std::chrono::milliseconds handler_timeout{60000};
  // A keep-alive connection older than this is closed gracefully, so that
  // a client's load moves onto hosts started since (gRPC's
  // MAX_CONNECTION_AGE, gRFC A9). Each connection draws its own age from
  // max_connection_age x [0.9, 1.1] when it opens, so that connections
  // made together do not close together. The age is looked at when a
  // batch of requests is read, never by a timer: an idle connection costs
  // nothing more and is left to idle_timeout. The first read that finds
  // the connection past its age is answered as usual; then a peer that
  // announced "going-away" gets the notice (its last-request-id names the
  // last request read) and what it wrote after that is answered
  // shutting_down without running (the comet-net client sends those again
  // on another connection); a peer that did not announce it is answered
  // with "keep-alive" absent from then on (the host closes) and what it
  // wrote after that is answered shutting_down. Either way the host
  // answers every request it read before, lets open streams and
  // subscriptions run to their end, and closes once nothing is in flight.
  // One-shot (COMET) connections are never aged. Zero: no age limit.
  std::chrono::milliseconds max_connection_age{0};
  // SO_REUSEPORT on the listeners, set before they bind: several hosts
  // (processes) of the same user may listen on one address and port, and
  // the kernel spreads new connections over them. A stop accepts what the
  // listener's backlog holds before it closes the listener (as always),
  // and serves the first request of every connection it accepted rather
  // than refusing it shutting_down: the kernel gave the connection to this
  // host and no other can take it. A connection that completes its
  // handshake between that last accept and the close is still reset by
  // the kernel unless net.ipv4.tcp_migrate_req is 1 (docs/api.md,
  // "Several hosts on one port").
  bool reuse_port = false;
  // Streams and subscriptions open on one connection at most; one past it
  // is refused too_many_streams (safe to send again). They do not count
  // toward max_in_flight. A connection with any open is exempt from
  // idle_timeout and is checked by TCP keepalive instead (a vanished peer
  // is found within about 20 s; a closed one at once).
  std::size_t max_streams = 256;
  // Published items queued for one subscriber that has not granted credit
  // for them (by count and by their encoded size); past either, the
  // subscriber's overflow policy applies (subscribe_options): it ends with
  // slow_consumer, or its oldest are dropped. NATS's defaults.
  std::size_t subscriber_queue = 65536;
  std::size_t subscriber_queue_bytes = 64 * 1024 * 1024;
  // Access control, off by default so COMET peers keep working (see
  // docs/security.md). A non-empty token must arrive in every request's
  // "auth-token" header; a non-empty allow-list (addresses and networks,
  // "10.0.0.0/8") admits only those peers. Requests that fail either get
  // `unauthorized` and the connection is closed.
  std::string auth_token;
  std::vector<std::string> allow;
  // TLS, and mutual TLS with tls.require_client_certificate. The files are
  // read when the host is constructed, which throws comet::error(errc::tls_error)
  // naming a file that cannot be used. A handshake that fails closes only
  // that connection.
  tls_settings tls;
  // Serves host::metrics() over HTTP (GET /metrics, for Prometheus) on this
  // address, when set: it listens from start() and closes when a stop
  // begins. Bounded like the host's own listener: 16 connections, 8 KiB
  // requests, 30 s idle. Port 0 picks a free one (metrics_endpoint()).
  // docs/observability.md.
  std::optional<endpoint> metrics_listen;
  // Per-request counters: metrics()' request families and stats()'
  // requests, errors and latencies. Off, none are kept (metrics() lists
  // the routes at zero); for measuring what they cost (comet-bench
  // --metrics off). The connection and stream figures are kept either way.
  bool metrics = true;
  // Told of every answer and of every stream and subscription as it opens
  // and ends (observer.hpp); none: nothing is gathered for one.
  std::shared_ptr<comet::observer> observer;

  static host_options from_config(const config& cfg);
};

struct host_stats {
  std::chrono::steady_clock::duration uptime{};
  std::uint64_t requests_served = 0;  // responses produced, errors included
  std::uint64_t error_responses = 0;
  std::map<std::string, std::uint64_t, std::less<>> errors_by_code;  // "no_handler" -> count
  std::uint64_t bytes_received = 0;
  std::uint64_t bytes_sent = 0;
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t connections_refused = 0;  // over max_connections
  std::uint64_t connections_aged = 0;     // closed gracefully at max_connection_age
  std::uint64_t tls_handshakes_failed = 0;
  std::uint64_t tls_sessions_resumed = 0;  // handshakes that resumed a session (no certificates)
  // Time from a request's arrival to its answer, over the host's life.
  std::chrono::microseconds latency_p50{}, latency_p99{}, latency_p999{};
  // Every address the host listens on (host::local_endpoints()).
  std::vector<endpoint> listening;
  // Streams and subscriptions.
  std::uint64_t streams_open = 0;
  std::uint64_t subscriptions_open = 0;
  std::uint64_t items_published = 0;  // host::publish() calls
  std::uint64_t items_dropped = 0;    // queued items dropped for slow subscribers
};

// boost::json::value_from(stats): the object comet-host's `status` action
// answers (uptime_seconds, requests_served, error_responses, errors_by_code,
// bytes_received, bytes_sent, connections_open, connections_accepted,
// connections_refused, connections_aged, tls_handshakes_failed, tls_sessions_resumed,
// latency_us {p50, p99, p999}, listening ["127.0.0.1:5000", "[::1]:5000"]).
void tag_invoke(const json::value_from_tag&, json::value& out, const host_stats& stats);

// What a host's built-in `health` action answers, {"status": "serving"}
// (or "not_serving", "draining"): a readiness probe's answer
// (`comet-send --action health` exits 0 only for serving).
enum class health_status { serving, not_serving, draining };
std::string_view to_string(health_status s) noexcept;

class io_pool;

class host {
 public:
  // Runs on `executor`; each connection gets a strand of it.
  host(asio::any_io_executor executor, host_options options);
  host(asio::any_io_executor executor, const config& cfg);
  // Spreads connections over the pool's contexts; with one thread per
  // context (io_pool_layout::context_per_thread, or a 1-thread pool)
  // connections need no strands.
  host(io_pool& pool, host_options options);
  host(io_pool& pool, const config& cfg);
  // Spreads connections over `per_thread_executors`, one to each in turn:
  // the program's own contexts, each run by exactly one thread. A
  // connection, its handlers (plain, coroutine, tagged) and its
  // request_context::executor stay on its context's thread, with no strand.
  // Each context must outlive the host's connections on it.
  host(std::vector<asio::any_io_executor> per_thread_executors, host_options options);
  host(const host&) = delete;
  host& operator=(const host&) = delete;
  // Closes the listener and every connection at once; prefer stop() first.
  ~host();

  // See action_router for the semantics. Register before start().
  template <class F>
  void add_action_handler(F&& f) {
    router().add_action_handler(std::forward<F>(f));
  }
  template <class F>
  void on(std::string action, F&& f) {
    route(action).on(std::move(action), std::forward<F>(f));
  }
  // A stream handler (stream.hpp, action_router::on_stream):
  //   host.on_stream("scan", [](const scan_request& r, comet::stream_writer& out)
  //                              -> asio::awaitable<void> { co_await out.write(...); });
  // It runs on its connection's executor. handler_timeout bounds its own
  // time between writes, not its waits for the reader's credit. It is
  // cancelled (terminal) when the reader closes the stream, its connection
  // goes or the host stops (the reader gets shutting_down then, at once).
  template <class F>
  void on_stream(std::string action, F&& f) {
    route(action).on_stream(std::move(action), std::forward<F>(f));
  }

  // Sends `value` to every subscriber of `topic`, from any thread, never
  // blocking: each subscriber has a queue of its own (subscriber_queue),
  // so a slow one never holds up the publisher or the others. Returns the
  // item's sequence number in the topic (1, 2, ...). Items published
  // before a subscribe completed are not delivered to it.
  std::uint64_t publish(std::string_view topic, json::value value);
  template <class T>
    requires(!std::is_same_v<std::remove_cvref_t<T>, json::value>)
  std::uint64_t publish(std::string_view topic, const T& value) {
    return publish(topic, json::value_from(value));
  }

  // Binds, listens and starts accepting. Returns the bound endpoint (port 0
  // picks a free port). Throws comet::error(errc::bind_failed) with the
  // reason.
  //
  // A host name in options.listen is resolved here (blocking);
  // errc::unresolved if it does not resolve. The host then listens on every
  // address the name resolves to, as Python's asyncio.start_server does
  // ("localhost": 127.0.0.1 and ::1 on a standard Debian machine), one
  // acceptor each, sharing the host's limits and its stop; IPv6 ones are
  // v6_only. With port 0 the first address picks the port and the others
  // take the same one. An address this machine cannot have (EADDRNOTAVAIL,
  // EAFNOSUPPORT: IPv6 turned off) is skipped with a warning; any other
  // failure (the port in use) fails the start, as does having no address
  // left. start() then returns the first IPv4 address listened on (COMET's
  // peers are IPv4), or the first address if none is IPv4;
  // local_endpoints() has them all.
  endpoint start();
  // What start() returned.
  endpoint local_endpoint() const;
  // Every address listened on, in the resolver's order (one for an
  // address); empty before start().
  const std::vector<endpoint>& local_endpoints() const;
  bool running() const noexcept;

  // Graceful stop, from any thread, returning at once: accept the
  // connections already waiting in the listen backlog (they are answered
  // shutting_down), then close the listeners; let
  // requests in flight finish and be answered; close each connection as
  // soon as its last answer is written (idle ones at once); after
  // shutdown_timeout close whatever is left and cancel (terminal) the
  // coroutine handlers still running, and with them the sends they await.
  // A request that has already arrived on an open connection (read, or
  // waiting in the socket) is answered shutting_down; answers made after
  // the stop began say the connection closes.
  void stop();

  // stop(), then wait until every connection is closed.
  // Completes when the last connection has closed: as soon as the last
  // answer in flight is written, at most shutdown_timeout after the call,
  // plus the time a plain-function handler still running takes (it cannot
  // be interrupted). Afterwards the host holds no pending
  // operation or timer. Cancellation: none (it is bounded by
  // shutdown_timeout). Outlives: the host object must outlive the wait.
  asio::awaitable<void> async_stop();

  // async_stop() with any completion token (asio::use_future, a callback,
  // asio::deferred, ...): signature void(std::exception_ptr), the pointer
  // always null. Runs on the host's executor.
  template <class CompletionToken>
  auto async_stop(CompletionToken&& token) {
    return asio::co_spawn(get_executor(), async_stop(), std::forward<CompletionToken>(token));
  }

  // The built-in `health` action: a request for `health` is answered
  // {"status": "serving"} (or "not_serving"), as set here from any thread,
  // and {"status": "draining"} once a stop began, whatever was set; it is
  // answered even while the host drains (not shutting_down), under the
  // host's token and allow-list like every request. A program that routes
  // its own `health` with on() keeps its own.
  void set_health(health_status status) noexcept;
  health_status health() const noexcept;

  // The executor the host was given (the pool's first context's, for a pool).
  asio::any_io_executor get_executor() const noexcept;

  host_stats stats() const;

  // The host's metrics in Prometheus's text exposition format (0.0.4),
  // from any thread: comet_host_requests_total{action, code},
  // comet_host_request_duration_seconds{action} (a histogram), connections,
  // coroutine handlers in flight, streams and subscriptions
  // (docs/observability.md).
  // The action label is a route's name (on(), on_stream()) or "<unrouted>",
  // so that no peer can add series. Counting costs no lock and no
  // allocation per request; rendering sums per-thread shards.
  std::string metrics() const;
  // Where metrics_listen listens, once started; nullopt without it.
  std::optional<endpoint> metrics_endpoint() const;
  // Adds a client's series (comet_client_*, client::metrics()) to
  // metrics() and so to the metrics listener, for as long as the client
  // lives: the host holds it weakly, and a client destroyed drops out.
  // From any thread.
  void add_metrics(const client& c);
  void add_metrics(const client_set& clients);

  struct impl;

 private:
  action_router& router();
  // router(), noting `action` as a label of metrics().
  action_router& route(const std::string& action);
  std::shared_ptr<impl> impl_;
};

}  // namespace comet
