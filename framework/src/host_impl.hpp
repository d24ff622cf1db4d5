// Internal: the state a host shares with its connections. host.cpp owns
// listening and stopping; host_connection.cpp serves one socket.
#pragma once

#include <comet/codec.hpp>
#include <comet/client.hpp>
#include <comet/host.hpp>

#include "access.hpp"
#include "deadline_timer.hpp"
#include "read_buffer.hpp"
#include "host_metrics.hpp"
#include "host_session.hpp"
#include "host_topics.hpp"
#include "metrics_listener.hpp"
#include "transport.hpp"

#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <vector>
#include <list>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <variant>

namespace comet {

using tcp = asio::ip::tcp;
using strand_type = asio::strand<asio::any_io_executor>;

class host_connection;
class host_stream;

struct host::impl : std::enable_shared_from_this<host::impl> {
  // `spread`: executors to hand connections to, round robin; when
  // `single_threaded`, each runs on one thread and connections need no strand.
  impl(std::vector<asio::any_io_executor> spread, bool single_threaded, host_options opts);

  asio::any_io_executor executor;  // the first of `spread`: the acceptor's
  std::vector<asio::any_io_executor> spread;
  bool single_threaded;
  std::atomic<std::size_t> next_spread{0};
  host_options options;
  address_filter allowed;
  std::shared_ptr<asio::ssl::context> tls;  // null: plain TCP
  action_router router;
  strand_type control;  // the acceptors and the stop timers live here
  // One per address listened on (a name may have several); a list, so that
  // an accept loop's reference stays valid. Filled by start(), then only
  // closed.
  std::list<tcp::acceptor> acceptors;
  asio::steady_timer drained;
  asio::steady_timer force_close;
  endpoint bound;                   // what start() returns (see host::start)
  std::vector<endpoint> listening;  // every address listened on, bound among them
  std::string listening_text;       // for log lines: "127.0.0.1:5000 and [::1]:5000"

  std::atomic<bool> started{false};
  std::atomic<std::size_t> accepting{0};  // accept loops still running
  std::atomic<bool> stopping{false};
  std::atomic<health_status> health{health_status::serving};
  std::chrono::steady_clock::time_point start_time{};

  host_metrics metrics;
  // Every action on() and on_stream() were given, for the metrics' labels
  // (fixed at start()).
  std::vector<std::string> route_names;
  // Clients whose series metrics() renders too (add_metrics), held weakly.
  std::mutex metric_clients_mutex;
  std::vector<std::weak_ptr<client::impl>> metric_clients;
  // host_options::metrics_listen's, made by start(); stopped by begin_stop().
  std::unique_ptr<metrics_listener> metrics_http;
  std::optional<endpoint> metrics_bound;
  // host::metrics()'s text.
  std::string render_metrics();
  host_topics topics;
  std::atomic<std::uint64_t> streams_open{0};  // stream handlers running

  std::mutex connections_mutex;
  // Weak: a connection is owned by its own coroutines and handlers, and it
  // holds the host; owning it here too would make a cycle that outlives an
  // io_context stopped with connections open.
  std::list<std::weak_ptr<host_connection>> connections;

  asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, endpoint where);
  // Touched on `control` only, by the accept loops.
  std::chrono::steady_clock::time_point refusal_warned{};
  std::size_t refused_since_warning = 0;
  void warn_refused();
  // Listens on each of `addresses` (those of options.listen), one acceptor
  // each. Of a name's addresses (`named`), those this machine cannot have
  // are skipped with a log line; any other failure throws bind_failed
  // (with no acceptor left open), as does having none.
  void listen_on(const std::vector<tcp::endpoint>& addresses, bool named);
  void close_acceptors();
  asio::any_io_executor next_connection_executor();
  // Past max_connections: reads the connection's first request and answers
  // it host_full (host_refusal.cpp), or closes it at once when
  // max_refusing are being answered already.
  void refuse_full(tcp::socket socket);
  static constexpr std::size_t max_refusing = 4096;
  std::atomic<std::size_t> refusing{0};
  // Lists and starts an accepted connection, or refuses it past max_connections.
  void admit(tcp::socket socket, const asio::any_io_executor& serial);
  void accept_backlog();

  // Decodes one request frame: the request to run, or the error response
  // that refuses it (bad_request, shutting_down; not the latter when
  // `serve_in_drain`: a reuse_port host's first request of a connection).
  std::variant<request_message, encoded_response> prepare(const frame_header& header,
                                                          std::string_view content,
                                                          bool peer_admitted,
                                                          bool serve_in_drain = false) const;
  // Answers at once when only plain-function handlers are involved.
  // `connection` is the executor the connection runs on: the handler's
  // request_context::executor. A plain handler runs with the request's
  // `traceparent` (checked) current (trace.hpp). True with the answer in
  // `into` (its buffer reused); false when a coroutine must run.
  bool run_now(const request_message& request, std::optional<std::uint64_t> request_id,
               const endpoint& peer, const asio::any_io_executor& connection,
               std::string_view traceparent, encoded_response& into) const;
  // Runs a request through the router.
  asio::awaitable<encoded_response> run(request_message request,
                                        std::optional<std::uint64_t> request_id, endpoint peer,
                                        asio::any_io_executor connection, std::string traceparent);

  // Runs a stream handler through the router, writing to `sink`
  // (host_stream.cpp): nullopt when it returned, or the error its stream
  // ends with.
  asio::awaitable<std::optional<encoded_response>> run_stream(request_message request,
                                                              std::uint64_t request_id,
                                                              endpoint peer,
                                                              asio::any_io_executor connection,
                                                              std::string traceparent,
                                                              std::shared_ptr<host_stream> sink);

  // Removes a connection from the set; the last one out of a stopping host
  // completes async_stop. Safe to call twice.
  void forget(host_connection& conn);
  // Removes it from the set; true when the set is then empty.
  bool unlist(host_connection& conn);
  void notify_if_drained();
  bool is_drained();
  void begin_stop();
  // Asks every connection to close: at once, or when it has nothing in flight.
  void close_connections(bool graceful);
};

// One accepted socket: the driver of a host_session. It reads bytes into
// the session, runs the handlers the session starts, feeds their answers
// back and writes what the session gives. All of its state is touched only
// on its strand.
class host_connection : public std::enable_shared_from_this<host_connection>,
                        private host_session::driver {
 public:
  // `executor` serializes the connection: a strand, or a single-threaded
  // context's executor.
  host_connection(tcp::socket socket, asio::any_io_executor executor,
                  std::shared_ptr<host::impl> host);
  ~host_connection();

  void start();
  // Posted by the host: finish what is in flight, then close.
  void close_gracefully();
  // Posted by the host: close now, whatever is in flight; handlers still
  // running are cancelled (terminal), and so are the sends they await.
  void close_now();
  // Closes now if the connection is stopping and has nothing left to answer
  // or write.
  void close_if_drained();
  bool peer_has_written();
  // Closing gracefully, past its max_connection_age, or its host stopping
  // (stop_reading_ is set by a post, so the host's flag covers the moment
  // before it runs).
  bool draining() const noexcept;

  const asio::any_io_executor& strand() const noexcept { return strand_; }

  std::list<std::weak_ptr<host_connection>>::iterator position;
  bool listed = false;  // guarded by host::impl::connections_mutex

 private:
  friend class host_stream;
  using handle = host_session::handle;
  // What the connection keeps per request the session runs, by handle.
  struct handler_state {
    // Created once per handle and reused: no allocation per request.
    std::unique_ptr<asio::cancellation_signal> signal;
    std::chrono::steady_clock::time_point arrived;
    std::uint32_t label = request_metrics::unrouted;  // its action's, in the metrics
    bool stream = false;  // a stream or subscription: no duration in the histogram
    bool subscription = false;
    bool end_observed = false;  // a stream's end was told to the observer
    std::size_t request_bytes = 0;
    // A coroutine handler's: when handler_timeout ends it (max: none), and
    // whether it did (its answer is then `timeout`, whatever it returns).
    std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
    bool timed_out = false;
    std::string action;   // for the log lines and the observer
    std::string topic;    // a subscription's, for the observer only
    std::string traceparent;  // for the observer only
  };

  // host_session::driver
  std::variant<request_message, encoded_response> prepare(const frame_header& header,
                                                          std::string_view content) override;
  void run(handle h, request_message& request, std::optional<std::uint64_t> request_id,
           bool ordered, std::string_view traceparent) override;
  void cancel(handle h) override;
  void responded(handle h, const encoded_response& response) override;
  // Tells host_options::observer of an answer, or of a stream's open or end.
  void observe(handle h, const encoded_response* response, bool refusal,
               std::chrono::nanoseconds took);

  // Streams and subscriptions (host_stream.cpp).
  std::optional<encoded_response> admit_stream(const request_message& request, bool subscribe) override;
  std::optional<std::uint64_t> run_stream(handle h, request_message& request, std::uint64_t request_id,
                                          bool subscribe, std::string_view traceparent) override;
  void cancel_stream(handle h) override;
  void credited(handle h) override;
  // A stream handler returned, back on this strand.
  void on_stream_end(handle h, std::exception_ptr failure, std::optional<encoded_response> end);
  // handler_timeout passed with the stream's handler neither writing nor waiting for credit.
  void stream_timed_out(handle h);
  // Registers subscription `h`; returns the topic's last sequence number.
  std::uint64_t subscribe(handle h, const request_message& request);
  // Moves what subscription `h` has queued into item frames, as credit and room allow.
  void drain_subscription(handle h);
  void finish_subscription(handle h, const std::optional<encoded_response>& error);
  // A write completed: the streams waiting for room in the write buffer look again.
  void stream_room();
  // Every stream ends: with `error` written (the connection stopped
  // reading), or silently (it closed).
  void end_streams(const std::optional<encoded_response>& error);
  // TCP keepalive, once the connection's first stream opens.
  void probe_peer();

  asio::awaitable<void> read_loop();
  // The TLS handshake, when the host uses TLS; false if it failed.
  asio::awaitable<bool> handshake();
  asio::awaitable<void> wait_for_wake();
  // A coroutine handler's answer, back on this strand.
  void on_answer(handle h, bool ordered, std::exception_ptr failure, encoded_response response);
  // Tells the session about a stop it has not seen yet.
  void sync_drain();
  void count_answer(std::uint32_t label, std::optional<errc> error, bool timed, bool sampled,
                    std::chrono::nanoseconds took);
  void count_batch();
  void log_answer(std::string_view action, const encoded_response& response,
                  std::chrono::steady_clock::time_point arrived) const;
  // Writes what the session has to send: at once where the socket takes
  // it all (a plain connection, not from within a write's completion),
  // else with an async write. written() is the write's completion.
  void flush();
  void written(boost::system::error_code ec, std::size_t n, bool at_once);
  void close_if_drained_later();
  void wake();
  void watch_peer();
  void peer_gone();
  bool idle() const noexcept;
  void on_idle_deadline();
  // Cancels (terminal) the coroutine handlers past handler_timeout.
  void on_handler_deadline();
  // The executor a handler coroutine runs on: serial, so that close_now()
  // can cancel it from this connection's strand.
  asio::any_io_executor handler_executor() const;
  // `ex`, or for a request with a traceparent, `ex` making it current
  // whenever the handler runs (trace.hpp).
  static asio::any_io_executor traced(asio::any_io_executor ex, std::string_view traceparent);

  transport stream_;
  asio::any_io_executor strand_;
  std::shared_ptr<host::impl> host_;
  endpoint peer_;
  bool admitted_ = true;  // the peer passed the allow-list

  read_buffer in_;
  host_session session_;
  std::vector<handler_state> handlers_;  // by handle
  // The answer of a plain handler, encoded here: one buffer for them all.
  encoded_response answer_;
  // Per handle of an open stream: the sink its handler writes to, or its
  // subscription's queue.
  struct stream_state {
    std::shared_ptr<host_stream> sink;
    std::shared_ptr<topic_subscriber> subscriber;
  };
  std::vector<stream_state> streams_;
  std::vector<handle> room_waiters_;  // streams with credit, out of room
  topic_subscriber::batch batch_;      // drain_subscription's, reused
  bool probing_ = false;               // TCP keepalive is on

  // Past max_connection_age, looked at when a batch of requests was read
  // (no timer): the connection closes gracefully (retire()).
  void retire();
  std::chrono::steady_clock::time_point age_limit_ = std::chrono::steady_clock::time_point::max();
  bool aged_ = false;
  bool prepared_any_ = false;  // a request was read (for serve_first_in_drain)

  bool stop_reading_ = false;
  bool reading_ = false;  // the read loop waits in a read
  bool closed_ = false;
  asio::steady_timer wake_;  // the read loop waits here for drained writes
  // At last_progress_ + idle_timeout, unless handlers are running.
  deadline_timer idle_deadline_;
  // A stop reached a connection whose peer has sent nothing yet: at
  // accepted_ + first_request_grace, it waits no longer (see close_if_drained).
  deadline_timer first_request_deadline_;
  // The earliest deadline of the coroutine handlers running: one timer for
  // them all, set when a handler starts and moved only forward.
  deadline_timer handler_deadline_;
  std::chrono::steady_clock::time_point accepted_;
  bool received_any_ = false;
  // Until when a drained connection waits for its noticed peer to close.
  std::optional<std::chrono::steady_clock::time_point> linger_until_;
  bool awaiting_first_request() const noexcept;
  std::uint64_t watch_generation_ = 0;  // which ordered request watch_peer() watches for
  std::chrono::steady_clock::time_point last_progress_;  // last read, or last write done
  std::chrono::steady_clock::time_point arrived_;        // when the current batch was read
  std::uint64_t responses_ = 0;  // answers and refusals written so far
  // Answers given while a batch is read (consuming_), counted in the
  // metrics when it is done (count_batch).
  struct batch_answer {
    std::chrono::steady_clock::time_point arrived;
    std::uint32_t label;
    std::optional<errc> error;
    bool timed;
    bool sampled;  // also a latency sample for stats()
  };
  std::vector<batch_answer> batch_answers_;
  bool consuming_ = false;
  bool in_written_ = false;  // written() runs: a flush from it writes asynchronously
};

}  // namespace comet
