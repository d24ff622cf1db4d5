// Clients: send a request to a peer host and get its answer.
//
// A client is a cheap handle (copies share one peer) bound to an executor; it
// never starts threads. Three ways to send, as in COMET and beyond:
//
//   json::value r = co_await c.send("echo", value);  // in a coroutine
//   json::value r = c.send_sync("echo", value);      // COMET's no_thread=True
//   c.post("TelegramBot", value);                     // COMET's default: background
//
// Error model: send and send_sync return the answer's `result` or throw
// comet::error. Its code() is errc::peer_offline, connect_timeout,
// request_timeout, connection_closed or protocol_error for transport
// failures, or the code the host answered (no_handler, handler_failed,
// bad_request, ...) with the host's message. post never throws; failures are
// logged.
//
// Each request uses its own connection, closed after the answer, which is
// what COMET hosts expect (keep_alive opts into a pool of connections).
//
// Lifetimes: a client's sends, its pool and their timers run on the
// executor; the client handle may be dropped while sends are in flight
// (each holds the client's state until it completes). When the last handle
// and the last send are gone, the pool's connections close. close() and
// async_close() end a client explicitly. Nothing of a client keeps
// io_context::run() busy once its sends are done: an idle keep-alive pool
// holds no pending operation (it checks an idle connection is still open
// before reusing it).
#pragma once

#include <comet/detail/asio_abi.hpp>

#include <comet/config.hpp>
#include <comet/convert.hpp>
#include <comet/endpoint.hpp>
#include <comet/observer.hpp>
#include <comet/stream.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/json/value_from.hpp>
#include <boost/json/value.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace comet {

namespace asio = boost::asio;
namespace json = boost::json;

// Outlier detection over a client's endpoint list: an endpoint whose sends
// keep failing in transport (closed connections, request timeouts,
// protocol errors; not the host's own answers, which are not its fault) is
// left out for a while. Defaults as Envoy's and gRPC's (docs/api.md,
// "Several hosts").
struct outlier_detection {
  // Ejected after this many transport failures in a row (Envoy: 5). 0: never.
  std::size_t consecutive_failures = 5;
  // Left out for base × the times it was ejected, at most max (Envoy: 30 s, 300 s).
  std::chrono::milliseconds base_ejection_time{30000};
  std::chrono::milliseconds max_ejection_time{300000};
  // At most this share of the endpoints is ejected at once, and always at
  // least one may be (gRPC: 10%); the last healthy endpoint never is.
  std::size_t max_ejection_percent = 10;
  // When fewer than this share of the endpoints are healthy, ejections are
  // ignored and every endpoint that is not down is used (Envoy: 50%).
  std::size_t panic_threshold_percent = 50;
};

// What a client of an endpoint list may spend on sending a request again to
// another endpoint: within any 10 s, `ratio` of the sends that succeeded
// plus `per_second` a second (Finagle's RetryBudget: 20%, 10/s), so that a
// failing fleet sees no retry storm.
struct retry_budget {
  double ratio = 0.2;
  std::size_t per_second = 10;
};

struct client_options {
  std::string name;  // used in messages; defaults to the peer's address
  std::chrono::milliseconds connect_timeout = settings{}.connect_timeout;
  std::chrono::milliseconds request_timeout = settings{}.request_timeout;
  std::size_t max_content_length = settings{}.max_content_length;
  // Reuse connections ("keep-alive", docs/protocol.md, Extensions) and multiplex
  // concurrent sends on them with request ids. Off by default, as COMET
  // does; against a host that closes after each response (a COMET host) the
  // client falls back to a connection per message by itself.
  bool keep_alive = false;
  // With keep_alive: connections kept per peer, and requests in flight on each.
  std::size_t max_connections = 4;
  std::size_t max_in_flight = 64;
  // With keep_alive: sends past max_connections × max_in_flight wait for
  // room in the order they were made, each within its deadline; past this
  // many waiting, a send fails at once with errc::queue_full (nothing sent).
  std::size_t max_queued_sends = 65536;
  // A stream's or subscription's credit (docs/protocol.md): items the
  // reader lets the host send ahead of next(), and the bytes they may take
  // in the reader's buffer. A reader that stops reading stops its host's
  // handler within this window; the connection's other requests go on.
  std::size_t stream_credit = 256;
  std::size_t stream_credit_bytes = 4 * 1024 * 1024;
  // Sent as "auth-token" with every request, for hosts that require one.
  std::string auth_token;
  // A refused connection is retried this many times, after 50 ms, 100 ms,
  // ... (within request_timeout): a host that is restarting is not offline.
  std::size_t connect_retries = 2;
  // TLS to the host (and a client certificate for mutual TLS). The files are
  // read when the client is constructed, which throws
  // comet::error(errc::tls_error) naming a file that cannot be used; a
  // failed handshake fails the send with errc::tls_error.
  tls_settings tls;
  // A client of an endpoint list (docs/api.md, "Several hosts"): names are
  // re-resolved when a send finds the last resolve older than this, and
  // after failures; outlier detection and the retry budget.
  std::chrono::milliseconds resolve_max_age = settings{}.resolve_max_age;
  comet::outlier_detection outlier_detection;
  comet::retry_budget retry_budget;
  // Per-send counters (metrics()). Off, none are kept; for measuring what
  // they cost (comet-bench --metrics off).
  bool metrics = true;
  // Told of every send as it completes and of every stream and
  // subscription as it opens and ends (observer.hpp); none: nothing is
  // gathered for one.
  std::shared_ptr<comet::observer> observer;

  static client_options from_config(const config& cfg, std::string name = {});
};

// Per-send settings.
struct send_options {
  // This send's own deadline, connect included, within the client's
  // request_timeout (the shorter one wins). Zero: request_timeout.
  std::chrono::milliseconds timeout{0};
  // The action may run twice without harm. A client of an endpoint list
  // sends a request that provably never reached a host (never written,
  // refused unread, named in a going-away notice: error::safe_to_retry())
  // to another endpoint, within its deadline and the retry budget; one that
  // may have been read (its connection was lost after it was written) goes
  // again only when this is set. A timeout is never sent again.
  bool idempotent = false;
  // The W3C traceparent this request carries (docs/api.md, "Tracing").
  // nullopt: that of the request whose handler makes this send, if any
  // (carried on unchanged); "": none; else this one, which must be valid
  // ("00-<32 hex>-<16 hex>-<2 hex>", lower case), or the send throws
  // comet::error(errc::usage_error). It goes only on keep-alive
  // connections to hosts that announced "trace", never to a COMET host.
  std::optional<std::string> traceparent;
};

// What a keep-alive client's queue of sends waiting for room has seen
// (client::stats(); all zero without keep_alive).
struct client_stats {
  std::size_t queued = 0;           // sends waiting for room now
  std::uint64_t queued_total = 0;   // sends that had to wait for room
  std::uint64_t queue_wakeups = 0;  // times a waiting send was woken to take room
  std::uint64_t connects = 0;       // connections the pool began to open
  // A client of an endpoint list (its endpoints' pools summed above):
  std::uint64_t retries = 0;          // sends made again, to another endpoint or after a backoff
  std::uint64_t retries_refused = 0;  // failed sends not made again: the retry budget was spent
  std::uint64_t resolves = 0;         // times its names were resolved
};

// One endpoint of a client's endpoint list (client::endpoint_stats()).
struct endpoint_stats {
  endpoint address;    // the address dialled
  std::string entry;   // the list's entry it comes from ("lab-a:65432")
  enum class health { healthy, down, ejected };
  health state = health::healthy;
  std::size_t outstanding = 0;  // sends in flight to it now
  std::uint64_t sends = 0;      // sends it completed (answers and failures)
  std::uint64_t failures = 0;   // of those, transport failures
  std::uint64_t ejections = 0;  // times outlier detection ejected it
};

class io_pool;

class client {
 public:
  client(asio::any_io_executor executor, endpoint peer, client_options options = {});
  // On a pool whose contexts each run on one thread, a keep-alive client
  // needs no strand, and sends from that thread run without a hop.
  client(io_pool& pool, endpoint peer, client_options options = {});

  // A client of several hosts (docs/api.md, "Several hosts"): each entry is
  // an address, or a name that stands for every address it resolves to.
  // A send goes to the healthy endpoint with the fewest sends outstanding
  // (ties in turn), over a pool of its own; one that provably never
  // reached a host goes on to another endpoint (send_options::idempotent).
  // Throws comet::error(usage_error) for an empty list.
  client(asio::any_io_executor executor, std::vector<endpoint> endpoints,
         client_options options = {});
  client(io_pool& pool, std::vector<endpoint> endpoints, client_options options = {});

  // Sends one request and returns the host's `result`.
  //
  // Completes with the answer, or throws comet::error: the code the host
  // answered, or peer_offline, connect_timeout, request_timeout (past the
  // deadline: request_timeout, or options.timeout if shorter; connect
  // included), connection_closed, unread (keep-alive: never read by the
  // host, safe to send again), protocol_error, tls_error, cancelled, or
  // client_closed (the client was closed before the send began).
  //
  // Per-operation cancellation: the awaiting coroutine's cancellation slot,
  // types terminal and partial (e.g. `co_await (c.send(..) || timer)`, a
  // host's handler_timeout, or asio::bind_cancellation_slot). The send
  // completes at once with errc::cancelled: a one-shot connection is closed
  // at once; a pooled request not yet written is dropped from its queue; a
  // written one is cancelled on the wire when the host announced "cancel"
  // (else its late answer is read and dropped); the connection stays usable
  // for other sends. Type total (from a caller whose cancellation state lets
  // it through) is honoured only by a keep-alive send not yet written.
  //
  // Outlives: nothing; action and value are moved in, and the send keeps
  // the client's state alive until it completes.
  asio::awaitable<json::value> send(std::string action, json::value value,
                                    send_options options = {}) const;

  // Typed: the value goes through boost::json::value_from, the answer comes
  // back as R through comet::convert_to (convert.hpp: a described struct's
  // unknown keys are ignored unless it is strict_keys); an answer that is
  // not an R fails with errc::protocol_error naming the field ("result.x:
  // expected a number, got a string"). `co_await c.send<int>("add", point{1, 2})`.
  // (By value: a coroutine's reference parameter would outlive its argument.)
  template <class R = json::value, class T>
  asio::awaitable<R> send(std::string action, T value, send_options options = {}) const {
    return send_as<R>(*this, std::move(action), std::move(value), traced(std::move(options)));
  }

  // send() with any completion token, signature void(std::exception_ptr, R):
  // asio::use_awaitable, asio::use_future, asio::deferred, a callback,
  // asio::as_tuple(...), asio::bind_cancellation_slot(...). The exception
  // is the comet::error that send() would throw. Runs on the client's
  // executor; cancellation and lifetimes are send()'s.
  template <class R = json::value, class T = json::value, class CompletionToken>
  auto async_send(std::string action, T value, send_options options, CompletionToken&& token) const {
    return asio::co_spawn(get_executor(), send<R>(std::move(action), std::move(value), options),
                          std::forward<CompletionToken>(token));
  }
  template <class R = json::value, class T = json::value, class CompletionToken>
  auto async_send(std::string action, T value, CompletionToken&& token) const {
    return async_send<R>(std::move(action), std::move(value), send_options{},
                         std::forward<CompletionToken>(token));
  }

  // Runs send() on the executor and blocks this thread for the answer.
  // Throws comet::error(errc::would_deadlock) when called on a thread that
  // the executor needs (a pool thread): use `co_await send()` there.
  json::value send_sync(std::string action, json::value value, send_options options = {}) const;
  template <class R = json::value, class T>
  R send_sync(std::string action, const T& value, send_options options = {}) const {
    return answer_as<R>(send_sync(std::move(action), json::value_from(value), options));
  }

  // Opens a stream of `action` (a host's on_stream handler) with `value`
  // as its request, and completes once the host has begun it:
  //   comet::stream_reader<measurement> s = co_await c.open_stream<measurement>("scan", req);
  // Items come back as T (stream_reader::next()). Whatever keep_alive says,
  // a stream takes a keep-alive, tagged connection (of the client's pool,
  // or one of its own kept for streams). options.timeout (or
  // request_timeout) bounds the open and the wait for the first item.
  // Throws comet::error: the host's refusal (no_handler, bad_request,
  // too_many_streams, unauthorized, shutting_down...), the send errors
  // (peer_offline, request_timeout, cancelled, client_closed...), or
  // unsupported when the host cannot stream (a COMET host answers once
  // and closes). Cancellation: terminal and partial, as send(); the stream
  // is then ended on the host. Outlives: nothing (as send()).
  template <class T = json::value, class V = json::value>
  asio::awaitable<stream_reader<T>> open_stream(std::string action, V value,
                                                send_options options = {}) const {
    return open_as<T>(*this, std::move(action), std::move(value), traced(std::move(options)));
  }

  // Subscribes to what the host publishes on `topic` (host::publish), and
  // completes once the host has registered the subscription: an item
  // published after that reaches it. Throws as open_stream() does. The
  // subscribe carries the traceparent of the request whose handler makes
  // it, if any.
  template <class T = json::value>
  asio::awaitable<subscription<T>> subscribe(std::string topic, subscribe_options options = {}) const {
    return subscription_of<T>(subscribe_channel(std::move(topic), options));
  }

  // The untyped cores of open_stream() and subscribe().
  asio::awaitable<std::shared_ptr<detail::stream_channel>> open_channel(std::string action,
                                                                        json::value value,
                                                                        send_options options) const;
  asio::awaitable<std::shared_ptr<detail::stream_channel>> subscribe_channel(
      std::string topic, subscribe_options options) const;

  // Starts send() in the background and returns at once. Never throws for a
  // send failure: it is logged at warn level. async_close() waits for it.
  // It carries the traceparent of the request whose handler posts it, if any.
  void post(std::string action, json::value value) const;
  template <class T>
  void post(std::string action, const T& value) const {
    post(std::move(action), json::value_from(value));
  }

  // Closes the client now, from any thread: later sends and posts fail with
  // errc::client_closed; sends in flight complete at once with
  // errc::cancelled; pooled connections close.
  void close() const;

  // Closes the client gracefully: later sends fail with client_closed;
  // completes once every send in flight (posts included) has completed,
  // each within its own deadline; then pooled connections close.
  // Cancellation: none (it is bounded by the sends' deadlines); use close()
  // to end it at once. Outlives: nothing.
  asio::awaitable<void> async_close() const;

  bool closed() const noexcept;
  // From any thread.
  client_stats stats() const noexcept;

  // The peer; for a client of an endpoint list, its first entry.
  const endpoint& peer() const noexcept;
  // The list it was made with ({peer()} for a client of one peer).
  const std::vector<endpoint>& endpoints() const noexcept;
  // A client of an endpoint list: each endpoint as resolved now. Empty for
  // a client of one peer. From any thread.
  std::vector<comet::endpoint_stats> endpoint_stats() const;
  const std::string& name() const noexcept;
  const asio::any_io_executor& get_executor() const noexcept;

  // This client's metrics in Prometheus's text exposition format (0.0.4),
  // from any thread: comet_client_requests_total{client, endpoint, code},
  // comet_client_request_duration_seconds{client} (a histogram), sends in
  // flight and queued, connections opened, and for a client of an
  // endpoint list retries, comet_client_endpoint_up{client, endpoint} and
  // ejections (docs/observability.md). `client` is name() (or the peer's
  // address); an endpoint is an address dialled, and past the first 32 a
  // client has seen they count as endpoint="<other>", so that endpoints
  // that come and go add no series without bound. Counting costs no lock
  // and no allocation per send. host::add_metrics serves them with a
  // host's.
  std::string metrics() const;

  struct impl;

 private:
  friend class client_set;
  friend class host;
  // `options` with traceparent nullopt made the current handler's (or "").
  // Read when a send is made, not when its coroutine first runs: the
  // handler may be elsewhere by then.
  static send_options traced(send_options options);

  // The typed coroutines behind send(), open_stream() and subscribe(); each
  // holds a handle of the client.
  template <class R, class T>
  static asio::awaitable<R> send_as(client self, std::string action, T value, send_options options) {
    json::value content = json::value_from(value);
    json::value answer = co_await self.send(std::move(action), std::move(content), std::move(options));
    co_return self.answer_as<R>(std::move(answer));
  }
  template <class T, class V>
  static asio::awaitable<stream_reader<T>> open_as(client self, std::string action, V value,
                                                   send_options options) {
    json::value content = json::value_from(value);
    std::shared_ptr<detail::stream_channel> channel =
        co_await self.open_channel(std::move(action), std::move(content), std::move(options));
    co_return stream_reader<T>(std::move(channel));
  }
  template <class T>
  static asio::awaitable<subscription<T>> subscription_of(
      asio::awaitable<std::shared_ptr<detail::stream_channel>> opening) {
    std::shared_ptr<detail::stream_channel> channel = co_await std::move(opening);
    co_return subscription<T>(std::move(channel));
  }

  template <class R>
  R answer_as(json::value answer) const {
    if constexpr (std::is_same_v<R, json::value>)
      return answer;
    else
      return convert_to<R>(answer, "result", errc::protocol_error,
                           describe() + " answered a result of another type: ");
  }
  std::string describe() const;
  std::shared_ptr<impl> impl_;
};

// The named clients of a config: clients["Telegram"].
class client_set {
 public:
  client_set(asio::any_io_executor executor, const config& cfg);

  // Throws comet::error(errc::unknown_client) listing the configured names.
  const client& operator[](std::string_view name) const;
  const client& at(std::string_view name) const { return (*this)[name]; }
  bool contains(std::string_view name) const;
  const std::map<std::string, client, std::less<>>& all() const noexcept { return clients_; }

  // close() / async_close() of every client.
  void close() const;
  asio::awaitable<void> async_close() const;

  // Every client's metrics (client::metrics()), one family after another.
  std::string metrics() const;

 private:
  std::map<std::string, client, std::less<>> clients_;
  std::string source_;
};

// COMET's send_TCP_message(client, action, message, no_thread) for ported
// code. no_thread=false posts in the background and returns nullopt;
// no_thread=true blocks and returns the whole response object, as COMET's
// client does: {"result": ...}. Failures throw comet::error (COMET returned
// False).
std::optional<json::value> send_tcp_message(const client& target, std::string action,
                                             json::value message, bool no_thread = false);

}  // namespace comet
