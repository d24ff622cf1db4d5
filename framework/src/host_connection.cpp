// Serving one connection: the driver of its host_session. Buffered reads
// hand every complete frame received to the session; the handlers it starts
// run here (plain functions answered inline, coroutines spawned with a
// cancellation signal per handle), and the answers of one batch go out in
// one write.
#include "host_impl.hpp"

#include <comet/log.hpp>

#include "request_arena.hpp"
#include "spare_strings.hpp"
#include "spawn.hpp"
#include "trace.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <tuple>

#include <sys/socket.h>

namespace comet {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// How long a stop waits for the first request of a connection accepted
// just before it or during it (see awaiting_first_request).
constexpr auto first_request_grace = std::chrono::milliseconds(1000);
// How long a drained connection that got the going-away notice waits for
// its peer to close first.
constexpr auto notice_linger = std::chrono::milliseconds(250);

// When a connection opened at `now` reaches max_connection_age: each draws
// its own age from [0.9, 1.1] of it (gRFC A9's jitter), so that
// connections opened together do not all close together.
std::chrono::steady_clock::time_point age_limit(std::chrono::milliseconds max_age,
                                                std::chrono::steady_clock::time_point now) {
  if (max_age.count() <= 0) return std::chrono::steady_clock::time_point::max();
  thread_local std::minstd_rand jitter{std::random_device{}()};
  std::uniform_real_distribution<double> spread(0.9, 1.1);
  return now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double, std::milli>(max_age.count() * spread(jitter)));
}

}  // namespace

host_connection::host_connection(tcp::socket socket, asio::any_io_executor strand,
                                 std::shared_ptr<host::impl> host)
    : stream_(std::move(socket), host->tls.get()),
      strand_(std::move(strand)),
      host_(std::move(host)),
      session_(host_session_limits{host_->options.max_content_length, host_->options.max_in_flight,
                                   host_->options.max_in_flight_bytes,
                                   host_->options.write_buffer_limit, host_->options.max_streams,
                                   host_->options.reuse_port},
               *this, peer_),
      wake_(strand_, asio::steady_timer::time_point::max()),
      idle_deadline_(strand_, [this] { on_idle_deadline(); }),
      first_request_deadline_(strand_, [this] { close_if_drained(); }),
      handler_deadline_(strand_, [this] { on_handler_deadline(); }),
      accepted_(std::chrono::steady_clock::now()),
      last_progress_(accepted_),
      arrived_(accepted_) {
  age_limit_ = age_limit(host_->options.max_connection_age, accepted_);
  boost::system::error_code ec;
  // flush() and the read loop try the socket first (a plain one), and
  // must not block on it.
  if (!stream_.secure()) stream_.socket().non_blocking(true, ec);
  const auto remote = stream_.socket().remote_endpoint(ec);
  if (!ec) {
    peer_ = endpoint{remote.address().to_string(), remote.port()};
    admitted_ = host_->allowed.admits(remote.address());
  }
}

// Normally forgotten when it closes; this covers an io_context destroyed
// with the connection still open.
host_connection::~host_connection() { host_->unlist(*this); }

void host_connection::start() {
  asio::co_spawn(strand_, [self = shared_from_this()] { return self->read_loop(); },
                 detail::log_failure("host connection"));
  if (host_->options.idle_timeout.count() > 0)
    asio::dispatch(strand_, [self = shared_from_this()] {
      // A no-op once the connection closed (close_now() stops the timer).
      self->idle_deadline_.expires_after(self->host_->options.idle_timeout);
    });
}

// The idle deadline is last_progress_ + idle_timeout; reads and writes only
// store last_progress_, and the timer re-arms itself when it fires early.
void host_connection::on_idle_deadline() {
  if (closed_) return;
  const auto timeout = host_->options.idle_timeout;
  const auto now = std::chrono::steady_clock::now();
  const bool handling = session_.outstanding() > 0;
  if (handling || now - last_progress_ < timeout) {
    idle_deadline_.expires_at(std::max(last_progress_ + timeout, now + timeout / 2));
    return;
  }
  log(log_level::info, "host: " + peer_.to_string() +
                           (session_.writing() ? " has not read its answers"
                            : !in_.empty() ? " stalled in the middle of a frame"
                                           : " was idle") +
                           " for " + std::to_string(timeout.count()) + " ms; disconnecting");
  close_now();
}

// A handler past its deadline is cancelled, as a peer's cancel does, and
// answered `timeout` once it finished. The timer is set only when a
// handler starts with a deadline earlier than the one it waits for (with
// one handler_timeout for all, almost never): the hot path pays a store.
void host_connection::on_handler_deadline() {
  if (closed_) return;
  const auto now = std::chrono::steady_clock::now();
  auto next = deadline_timer::never;
  for (auto& handler : handlers_) {
    if (handler.deadline == deadline_timer::never) continue;
    if (handler.deadline > now) {
      next = std::min(next, handler.deadline);
      continue;
    }
    handler.deadline = deadline_timer::never;
    handler.timed_out = true;
    log(log_level::warn, "handler for action '" + handler.action + "' from " + peer_.to_string() +
                             " ran past its deadline; cancelled");
    if (handler.signal && handler.signal->slot().has_handler())
      handler.signal->emit(asio::cancellation_type::terminal);
  }
  if (next != deadline_timer::never) handler_deadline_.expires_at(next);
}

bool host_connection::idle() const noexcept { return session_.idle(); }

// With one thread to each context, the connection's own: a handler, the
// sends it makes and its answer stay on the connection's thread. Otherwise
// a strand of the host's executor, beside the connection's own.
asio::any_io_executor host_connection::handler_executor() const {
  return host_->single_threaded ? strand_ : asio::any_io_executor(asio::make_strand(host_->executor));
}

asio::any_io_executor host_connection::traced(asio::any_io_executor ex, std::string_view traceparent) {
  if (traceparent.empty()) return ex;
  return detail::traced_executor(std::move(ex), traceparent);
}

void host_connection::close_gracefully() {
  stop_reading_ = true;
  sync_drain();
  flush();
  close_if_drained();
  wake();
}

// A stopping connection closes as soon as its last answer is written: its
// read loop may be waiting on a peer that, answered, sends nothing more.
// Requests the peer wrote before it learnt of the stop are read and
// answered (shutting_down) rather than lost with the connection.
void host_connection::close_if_drained() {
  if (!draining()) return;
  // The stop may have begun since the session last looked (the host's
  // flag is set before close_gracefully() arrives): its notice goes first.
  sync_drain();
  if (!idle()) return flush();
  if (reading_ && awaiting_first_request()) {
    first_request_deadline_.expires_at(accepted_ + first_request_grace);
    return;
  }
  // A peer told it is going away closes its side once nothing of its is
  // left: closing first would reset what it wrote meanwhile, and with it
  // the notice it may not have read yet. It is waited for, within bounds.
  if (reading_ && session_.noticed()) {
    const auto now = std::chrono::steady_clock::now();
    if (!linger_until_) linger_until_ = now + notice_linger;
    if (now < *linger_until_) {
      first_request_deadline_.expires_at(*linger_until_);
      return;
    }
  }
  if (reading_) {
    // The read may hold bytes it has not delivered yet: it is cancelled,
    // not closed under it, and the read loop answers what it got, then closes.
    if (!peer_has_written()) {
      boost::system::error_code ignored;
      stream_.socket().cancel(ignored);
    }
    return;
  }
  if (peer_has_written()) return wake();  // the read loop takes them first
  close_now();
}

bool host_connection::draining() const noexcept {
  return stop_reading_ || aged_ || host_->stopping;
}

// Past max_connection_age: a peer that announced "going-away" gets the
// notice (after the answers of the batch just read) and what it writes
// after it is refused shutting_down, to be sent again elsewhere; another
// peer is answered with keep-alive absent from now on. Requests read
// already are answered and streams run on; the connection closes once
// nothing is in flight (close_if_drained, as in a stop).
void host_connection::retire() {
  aged_ = true;
  host_->metrics.aged();
  log(log_level::debug, "host: " + peer_.to_string() +
                            ": the connection reached max_connection_age; closing it gracefully");
  session_.retire();
  flush();
  // Not closed from here: the read loop, which called this, decides first
  // whether to read on (a peer told it is going away is read until it
  // closes), as it would have with the answers still being written.
  close_if_drained_later();
}

void host_connection::close_if_drained_later() {
  if (!draining()) return;
  asio::post(strand_, [self = shared_from_this()] { self->close_if_drained(); });
}

// A peer connects to send a request: one accepted just before a stop (or
// from the listen backlog during it) whose request has not arrived yet is
// given until first_request_grace after its accept to send it, and is
// answered shutting_down, rather than closed unanswered, which its sender
// would read as a lost request.
bool host_connection::awaiting_first_request() const noexcept {
  return !received_any_ && !closed_ &&
         std::chrono::steady_clock::now() < accepted_ + first_request_grace;
}

void host_connection::sync_drain() {
  if (draining()) session_.begin_drain();
}

// Bytes already received and not yet read (for TLS, encrypted ones).
bool host_connection::peer_has_written() {
  boost::system::error_code ec;
  return !closed_ && stream_.socket().available(ec) > 0 && !ec;
}

void host_connection::close_now() {
  if (closed_) return;
  closed_ = true;
  session_.shut();
  stream_.close();
  idle_deadline_.stop();
  first_request_deadline_.stop();
  handler_deadline_.stop();
  wake();
  // Each handle's signal is connected while its coroutine handler runs.
  for (auto& handler : handlers_)
    if (handler.signal && handler.signal->slot().has_handler())
      handler.signal->emit(asio::cancellation_type::terminal);
  end_streams(std::nullopt);
  host_->forget(*this);
}

void host_connection::wake() { wake_.cancel(); }

void host_connection::peer_gone() {
  log(log_level::info, "host: " + peer_.to_string() + " went away with " +
                           std::to_string(session_.outstanding()) +
                           " request(s) in flight; cancelling their handlers");
  close_now();
}

// While the last request's handler runs (its peer asked to close after it)
// the connection does not read; this notices meanwhile that the peer
// closed, so that the handler is cancelled rather than left to run for
// nobody. Readable data is left alone.
void host_connection::watch_peer() {
  stream_.socket().async_wait(
      tcp::socket::wait_read,
      [self = shared_from_this(), generation = watch_generation_](boost::system::error_code ec) {
        if (ec || self->closed_ || generation != self->watch_generation_) return;
        char byte;
        const auto n = ::recv(self->stream_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
          return self->peer_gone();
        if (n < 0) self->watch_peer();
      });
}

asio::awaitable<void> host_connection::wait_for_wake() {
  wake_.expires_at(asio::steady_timer::time_point::max());
  co_await wake_.async_wait(use_tuple);
}

asio::awaitable<void> host_connection::read_loop() {
  if (stream_.secure() && !co_await handshake()) co_return close_now();

  while (!closed_) {
    sync_drain();
    consuming_ = true;
    in_.consume(session_.consume(in_.data()));
    consuming_ = false;
    count_batch();
    detail::end_request_batch();
    // The age is looked at here, once per batch read, with the time the
    // batch arrived: no timer, no clock read. A connection whose first
    // answer is not out yet is not aged: that answer tells the client
    // whether the host keeps connections open.
    if (arrived_ >= age_limit_ && !draining() && session_.reading() && responses_ > 0) retire();
    flush();
    if (closed_) break;
    if (!session_.reading()) break;
    // A stop that began during consume(): the notice goes out before the
    // loop decides whether to read on.
    sync_drain();
    flush();
    // A stopping connection reads only what has already arrived, unless its
    // peer got the going-away notice: then what it writes until the last
    // answer is out is read and answered shutting_down (close_if_drained
    // ends the read then).
    if (draining() && !session_.noticed() && !peer_has_written() && !awaiting_first_request() &&
        !(aged_ && !host_->stopping && session_.open_streams() > 0))
      break;

    // Backpressure: a peer that does not read its answers is not read from either.
    while (!closed_ && session_.reading() && !session_.wants_read()) co_await wait_for_wake();
    if (closed_ || !session_.reading()) break;

    if (draining() && awaiting_first_request())
      first_request_deadline_.expires_at(accepted_ + first_request_grace);
    // Between frames, a connection waits for its peer holding no read
    // buffer (read_buffer::release): the bytes that come next are read into
    // one from the thread's pool. (A TLS stream may hold decrypted bytes the
    // socket does not show: it reads as it did.)
    boost::system::error_code ec;
    bool waited = false;
    if (in_.empty() && !stream_.secure()) {
      in_.release();
      reading_ = true;
      std::tie(ec) = co_await stream_.socket().async_wait(tcp::socket::wait_read, use_tuple);
      reading_ = false;
      waited = true;
    }
    std::size_t n = 0;
    if (!ec) {
      auto [room, size] = in_.prepare(session_.bytes_needed());
      bool read_now = waited;
      if (read_now) {
        // The socket is readable: read it here, with no trip through the
        // scheduler (non-blocking: nothing there after all reads as before).
        n = stream_.socket().read_some(asio::buffer(room, size), ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
          ec = {};
          read_now = false;
        }
      }
      if (!read_now) {
        reading_ = true;
        std::tie(ec, n) = co_await stream_.async_read_some(asio::buffer(room, size), use_tuple);
        reading_ = false;
      }
    }
    if (ec) {
      if (!in_.empty() && !closed_ && ec != asio::error::operation_aborted)
        log(log_level::warn, "host: " + peer_.to_string() + " closed the connection mid-frame (" +
                                 ec.message() + "); dropping " + std::to_string(in_.size()) +
                                 " bytes");
      // Nobody is left to answer: the handlers still running are cancelled,
      // and with them the sends they await.
      if (!closed_ && (session_.in_flight() > 0 || session_.open_streams() > 0)) peer_gone();
      break;
    }
    in_.commit(n);
    received_any_ = true;
    arrived_ = last_progress_ = std::chrono::steady_clock::now();
    host_->metrics.received(n);
  }

  // Streams need credit and cancels read: they end once reading stopped
  // (a drain ended them already).
  if (!closed_ && !draining() && session_.open_streams() > 0)
    end_streams(error_response(errc::bad_request,
                               "the connection stopped reading (a malformed frame, or a request "
                               "without keep-alive), so this stream ends"));
  // Answer what is in flight, then close.
  while (!closed_ && !idle()) {
    flush();
    if (closed_ || idle()) break;  // written at once: no wake to wait for
    co_await wait_for_wake();
  }
  close_now();
}

asio::awaitable<bool> host_connection::handshake() {
  auto [ec] = co_await stream_.tls().async_handshake(asio::ssl::stream_base::server, use_tuple);
  if (!ec) {
    last_progress_ = std::chrono::steady_clock::now();
    if (SSL_session_reused(stream_.tls().native_handle())) host_->metrics.tls_resumed();
    co_return true;
  }
  if (!closed_) {
    host_->metrics.tls_failed();
    log(log_level::warn, "host: TLS handshake with " + peer_.to_string() +
                             " failed: " + describe_tls_failure(ec) + "; closing");
  }
  co_return false;
}

std::variant<request_message, encoded_response> host_connection::prepare(
    const frame_header& header, std::string_view content) {
  const bool first = !std::exchange(prepared_any_, true);
  return host_->prepare(header, content, admitted_, first && host_->options.reuse_port);
}

void host_connection::run(handle h, request_message& request,
                          std::optional<std::uint64_t> request_id, bool ordered,
                          std::string_view traceparent) {
  // This request's traceparent, or none, for whatever runs here and now: a
  // handler started inline, or an answer that starts the next one, never
  // sees another request's.
  const detail::traceparent_scope scope(traceparent);
  if (h >= handlers_.size()) handlers_.resize(h + 1);
  auto& handler = handlers_[h];
  handler.arrived = arrived_;
  handler.label = host_->metrics.requests.index_of(request.action);
  handler.stream = false;
  handler.subscription = false;
  handler.request_bytes = session_.request_bytes(h);
  if (host_->options.observer || log_enabled(log_level::debug)) handler.action = request.action;
  if (host_->options.observer) handler.traceparent.assign(traceparent);
  // Plain-function handlers answer here and now, tagged or not (the
  // in-flight gauge counts coroutine handlers only: a plain one is over
  // before anyone could read it, and counting it costs two adds a request).
  if (host_->run_now(request, request_id, peer_, strand_, traceparent, answer_)) {
    sync_drain();
    return session_.answered(h, answer_);
  }
  host_->metrics.requests.started();
  if (!handler.signal) handler.signal = std::make_unique<asio::cancellation_signal>();
  handler.action = request.action;
  handler.timed_out = false;
  if (const auto timeout = host_->options.handler_timeout; timeout.count() > 0) {
    handler.deadline = std::chrono::steady_clock::now() + timeout;
    handler_deadline_.expires_by(handler.deadline);
  }
  // Ordered requests run on this strand; tagged ones beside the others, on
  // any thread of the host's executor. Either answer comes back here.
  asio::co_spawn(traced(ordered ? strand_ : handler_executor(), traceparent),
                 host_->run(std::move(request), request_id, peer_, strand_, std::string(traceparent)),
                 asio::bind_cancellation_slot(
                     handler.signal->slot(),
                     asio::bind_executor(strand_, [self = shared_from_this(), h, ordered](
                                                      std::exception_ptr failure,
                                                      encoded_response response) {
                       self->on_answer(h, ordered, failure, std::move(response));
                     })));
  if (ordered && !session_.reading()) watch_peer();
}

void host_connection::on_answer(handle h, bool ordered, std::exception_ptr failure,
                                encoded_response response) {
  auto& handler = handlers_[h];
  handler.signal->slot().clear();
  handler.deadline = deadline_timer::never;
  host_->metrics.requests.finished();
  if (ordered) ++watch_generation_;
  if (handler.timed_out)
    response = error_response(errc::timeout, "handler for action '" + handler.action +
                                                 "' ran past its deadline of " +
                                                 std::to_string(host_->options.handler_timeout.count()) +
                                                 " ms");
  else if (failure)
    response = error_response(errc::handler_failed, "internal error");
  sync_drain();
  session_.answered(h, response);
  detail::give_back_string(std::move(response.content));
  flush();
  wake();
  close_if_drained();
}

void host_connection::cancel(handle h) {
  auto& signal = handlers_[h].signal;
  if (signal && signal->slot().has_handler()) signal->emit(asio::cancellation_type::terminal);
}

void host_connection::responded(handle h, const encoded_response& response) {
  // Counted whatever is measured: max_connection_age waits for a first answer.
  ++responses_;
  const bool counting = host_->metrics.requests.counting();
  const bool observed = host_->options.observer != nullptr;
  const bool logged = log_enabled(log_level::debug);
  if (!counting && !observed && !logged) return;
  // A refusal ran no handler: its label is <unrouted>, its time since the
  // batch it came in arrived.
  const bool refusal = h == host_session::no_handle;
  const auto arrived = refusal ? arrived_ : handlers_[h].arrived;
  const std::uint32_t label = refusal ? request_metrics::unrouted : handlers_[h].label;
  const bool timed = refusal || !handlers_[h].stream;  // a stream's life is not a latency
  // Answered while its batch is read: counted once the batch is done, with
  // one clock read for all of it (the answers go out together then).
  // One answer in eight is also a sample for stats()'s percentiles.
  const bool sampled = (responses_ & 7) == 1;
  if (counting && consuming_ && !observed && !logged) {
    batch_answers_.push_back({arrived, label, response.error, timed, sampled});
    return;
  }
  // The one clock read per answer: the histogram's duration.
  const std::chrono::nanoseconds took = std::chrono::steady_clock::now() - arrived;
  if (counting) count_answer(label, response.error, timed, sampled, took);
  if (observed) observe(h, &response, refusal, took);
  if (logged) log_answer(refusal ? std::string_view() : handlers_[h].action, response, arrived);
}

void host_connection::count_answer(std::uint32_t label, std::optional<errc> error, bool timed,
                                   bool sampled, std::chrono::nanoseconds took) {
  host_->metrics.requests.answered(label, error, timed ? std::optional(took) : std::nullopt);
  if (sampled) host_->metrics.latency(took);
}

void host_connection::count_batch() {
  if (batch_answers_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& a : batch_answers_)
    count_answer(a.label, a.error, a.timed, a.sampled, now - a.arrived);
  batch_answers_.clear();
}

void host_connection::observe(handle h, const encoded_response* response, bool refusal,
                              std::chrono::nanoseconds took) {
  auto& observer = *host_->options.observer;
  try {
    if (!refusal && handlers_[h].stream) {
      const stream_event event{
          .kind = handlers_[h].subscription ? stream_kind::subscription : stream_kind::stream,
          .name = handlers_[h].subscription ? handlers_[h].topic : handlers_[h].action,
          .peer = peer_,
          .error = response ? response->error : std::nullopt,
          .duration = response ? took : std::chrono::nanoseconds(0),
          .traceparent = handlers_[h].traceparent};
      if (response) {
        handlers_[h].end_observed = true;
        observer.stream_ended(event);
      } else
        observer.stream_opened(event);
      return;
    }
    observer.request_done(request_event{
        .action = refusal ? std::string_view() : std::string_view(handlers_[h].action),
        .peer = peer_,
        .error = response->error,
        .duration = took,
        .request_bytes = refusal ? 0 : handlers_[h].request_bytes,
        .answer_bytes = response->content.size(),
        .traceparent = refusal ? std::string_view() : std::string_view(handlers_[h].traceparent)});
  } catch (const std::exception& e) {
    log(log_level::warn, std::string("host: the observer threw: ") + e.what());
  } catch (...) {
    log(log_level::warn, "host: the observer threw");
  }
}

// One line per request at debug: who, which action, what was answered, how
// long it took from the request's arrival.
void host_connection::log_answer(std::string_view action, const encoded_response& response,
                                 std::chrono::steady_clock::time_point arrived) const {
  const auto took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - arrived);
  char duration[32];
  std::snprintf(duration, sizeof duration, "%.3f ms", took.count());
  std::string line = "host: " + peer_.to_string() + " action '";
  line += action.empty() ? std::string_view("(not read)") : action;
  line += "': ";
  line += response.error ? wire_name(*response.error) : std::string_view("answered");
  line += " in ";
  line += duration;
  log(log_level::debug, line);
}

void host_connection::flush() {
  if (closed_) return;
  const auto bytes = session_.prepare_write();
  if (bytes.empty()) return;
  std::size_t done = 0;
  if (!stream_.secure() && !in_written_) {
    // The answers usually fit the socket's buffer: written here, with no
    // trip through the scheduler for the completion (the socket is in
    // non-blocking mode: what it cannot take goes out asynchronously).
    boost::system::error_code ec;
    done = stream_.socket().write_some(asio::buffer(bytes.data(), bytes.size()), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      done = 0;
    } else if (ec || done == bytes.size()) {
      const auto self = shared_from_this();  // written() may close it
      return written(ec, done, true);
    }
  }
  stream_.async_write(asio::buffer(bytes.data() + done, bytes.size() - done),
                      [self = shared_from_this(), done](boost::system::error_code ec, std::size_t n) {
                        self->written(ec, done + n, false);
                      });
}

void host_connection::written(boost::system::error_code ec, std::size_t n, bool at_once) {
  host_->metrics.sent(n);
  last_progress_ = std::chrono::steady_clock::now();
  if (ec) {
    if (!closed_) log(log_level::warn, "host: cannot answer " + peer_.to_string() + ": " + ec.message());
    session_.write_failed();
    close_now();
    return;
  }
  session_.commit_write();
  const bool outer = std::exchange(in_written_, true);
  flush();
  stream_room();
  wake();
  // Written at once, from within the read loop or a handler's completion:
  // whether a draining connection closes is decided once they have run
  // on, as it was when every write completed later.
  if (at_once)
    close_if_drained_later();
  else
    close_if_drained();
  in_written_ = outer;
}

}  // namespace comet
