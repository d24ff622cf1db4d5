// Internal: the rules of one keep-alive connection of a client pool, with no
// socket (as Boost.Redis's multiplexer): requests go in with add(), bytes
// to write come out of prepare_write() / commit_write(bytes), and received
// bytes go in through consume(), which settles the requests they answer.
// The connection driver in client_pool.cpp moves the bytes; these rules are
// unit-tested without sockets (tests/test_multiplexer.cpp).
//
// The rules: a new connection carries one request (a probe) until the
// peer's answer shows whether it keeps connections open (a comet-net host
// echoes "keep-alive"; a COMET host answers without it and closes); then up
// to max_in_flight tagged requests at once (and the host's window, if it
// announced one), matched by request id. The first request of every
// connection announces the features this side speaks; only those the
// host's answer lists too are used, so a host that lists none (COMET, older
// comet-net) never sees a control frame.
//
// Each request has a write status, kept as byte ranges of the write stream:
// waiting (none of it handed to a write), being written (the host may have
// read it: a write's progress is known when it completes), written (all of
// it handed to the socket: the host may have read it). A cancelled request
// that is still waiting is dropped from the queue; a written one is
// cancelled on the wire when the host agreed "cancel", else it stays
// listed, abandoned, until its late answer is read and dropped (or its
// deadline passes). A lost connection replays what a completed write
// provably did not hand over whole;
// after a too_large refusal, what was written behind the refused request
// was never read and is replayed too. A going-away notice settles the
// requests the host did not read for replay (unread, should no host take
// them again).
//
// Streams and subscriptions (docs/protocol.md, "Streams and subscriptions")
// are listed beside the requests, by id, while open: they do not count
// toward max_in_flight or the host's window. The host's frames for one go
// to its pooled_stream (begun, items, ended); an ordinary answer to a
// stream's request is the host's refusal, or, if not an error, the sign
// that the host runs it as a plain request: unsupported. Credit grants and
// the reader's close become control frames, sent only once "stream" (and
// "cancel") were agreed.
#pragma once

#include "peer.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace comet {

// One send waiting for its answer. Settling it resumes the send.
struct pooled_request {
  using time_point = std::chrono::steady_clock::time_point;

  std::uint64_t id = 0;
  time_point deadline = time_point::max();
  std::chrono::milliseconds timeout{0};  // for the timeout's message
  std::size_t content_size = 0;
  std::size_t answer_size = 0;  // the answer's content, once it came
  // Its W3C traceparent (valid, or empty), the sender's: written where the
  // host takes it (multiplexer::add).
  std::string_view traceparent;
  std::optional<json::value> result;
  std::optional<error> failure;
  // The host provably never read this request: send it again. Either the
  // host refused one written before it as too_large (failure unset), or
  // the connection was lost before all of it was written, or the host's
  // going-away notice came before it (failure says so, for when the send
  // stops replaying).
  bool replay = false;
  // The replay is for a going-away notice (max_connection_age, or a stop):
  // if sending it again finds no host, the send ends with the notice's
  // unread failure.
  bool going_away = false;

  pooled_request() = default;
  pooled_request(const pooled_request&) = delete;
  pooled_request& operator=(const pooled_request&) = delete;
  ~pooled_request() {
    if (slot_.is_connected()) slot_.clear();
    if (resume_) resume_->discard();
  }

  // The waiting coroutine's cancellation slot, if it has one: its handler
  // refers to this request, so it is cleared when the request ends.
  void watch(asio::cancellation_slot slot) noexcept { slot_ = slot; }

  // Keeps the waiting coroutine's completion handler in place (no
  // allocation per send).
  template <class Handler>
  void park(Handler handler) {
    static_assert(sizeof(resumer_for<Handler>) <= sizeof storage_);
    resume_ = ::new (static_cast<void*>(storage_)) resumer_for<Handler>(std::move(handler));
  }
  bool parked() const noexcept { return resume_ != nullptr; }
  // Resumes the waiting send through `serial`, the pool's executor.
  void settle(const asio::any_io_executor& serial) {
    if (auto* r = std::exchange(resume_, nullptr)) r->post_to(serial);
  }
  // Resumes it here and now: only on the pool's executor (this request is
  // gone once it returns).
  void settle_inline() {
    if (auto* r = std::exchange(resume_, nullptr)) r->invoke();
  }
  // Takes the waiting send's handler out without resuming it: at its
  // context's shutdown, where destroying the handler ends the send's
  // coroutine (Asio unwinds it through its executor). Empty if not parked.
  asio::any_completion_handler<void()> take_parked() {
    if (auto* r = std::exchange(resume_, nullptr)) return r->release();
    return {};
  }

 private:
  // Either call moves the handler out and ends the resumer before the
  // coroutine runs, since running it destroys the frame this request lives in.
  struct resumer {
    virtual void post_to(const asio::any_io_executor& serial) = 0;
    virtual void invoke() = 0;
    virtual void discard() = 0;
    virtual asio::any_completion_handler<void()> release() = 0;

   protected:
    ~resumer() = default;
  };
  template <class Handler>
  struct resumer_for final : resumer {
    explicit resumer_for(Handler h) : handler(std::move(h)) {}
    void post_to(const asio::any_io_executor& serial) override {
      Handler h = std::move(handler);
      this->~resumer_for();
      asio::post(serial, std::move(h));
    }
    void invoke() override {
      Handler h = std::move(handler);
      this->~resumer_for();
      std::move(h)();
    }
    void discard() override { this->~resumer_for(); }
    asio::any_completion_handler<void()> release() override {
      asio::any_completion_handler<void()> h(std::move(handler));
      this->~resumer_for();
      return h;
    }
    Handler handler;
  };
  resumer* resume_ = nullptr;
  asio::cancellation_slot slot_;
  alignas(std::max_align_t) unsigned char storage_[64];
};

// One stream or subscription listed on a connection: the connection
// reports the host's frames for it, on the pool's executor. Each call may
// only record what happened (and post any follow-up): it runs while the
// connection reads.
class pooled_stream {
 public:
  std::uint64_t id = 0;
  // The opaque handle of the connection it is listed on (set by the pool).
  std::weak_ptr<void> where;

  // "begin": the stream runs, or the subscription is registered (its
  // `sequence`: the topic's last sequence number then, 0 for none yet).
  virtual void stream_begun(std::optional<std::uint64_t> sequence) = 0;
  // "item": `bytes` is the size of its content, for the reader's budget.
  virtual void stream_item(std::optional<std::uint64_t> sequence, json::value value,
                           std::size_t bytes) = 0;
  // The stream is no longer listed: a clean end (nullopt), the host's
  // error end or refusal, unsupported, or the connection's failure.
  virtual void stream_ended(std::optional<error> failure) = 0;
  // The host provably never read its opening request: open it again
  // elsewhere (`why` says what happened, for when it stops trying). No
  // longer listed.
  virtual void stream_replay(const error& why) = 0;

 protected:
  ~pooled_stream() = default;
};

// What the connections of one pool learn about their peer.
struct peer_knowledge {
  enum class keep_alive { unknown, yes, no };
  keep_alive support = keep_alive::unknown;
  // The peer answered without agreeing "stream" (an older comet-net host),
  // or ran a stream's request as a plain one: it cannot carry streams.
  bool no_streams = false;
  // The smallest request content the peer refused as too_large: requests
  // at least this large go on a connection of their own.
  std::size_t refused_size = std::numeric_limits<std::size_t>::max();
  // The peer's last first answer listed "trace": a new connection's
  // requests carry their traceparent before its own answer says so.
  bool traces = false;
};

class multiplexer {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  enum class state { connecting, probing, open, closing, closed };
  // What cancel() did with a request.
  enum class cancelled_as {
    kept,       // not here, or only total cancellation asked for a request already written
    dropped,    // still waiting: its frame left the queue, the host never sees it
    on_wire,    // written: a cancel frame is queued (write it), the entry is gone
    abandoned,  // written, no cancel agreed: listed until its late answer or deadline
  };

  // A small non-owning callable: `settled(request)` is called for each
  // request this connection settles (its result or failure set, or replay).
  class settle_fn {
   public:
    template <class F>
    settle_fn(F& f) : target_(&f), call_([](void* t, pooled_request& r) { (*static_cast<F*>(t))(r); }) {}
    void operator()(pooled_request& r) const { call_(target_, r); }

   private:
    void* target_;
    void (*call_)(void*, pooled_request&);
  };

  multiplexer(const peer_info& info, peer_knowledge& peer)
      : info_(info), peer_(peer), decoder_(info.options.max_content_length) {}

  state current() const noexcept { return state_; }
  // The connection is up: requests queued meanwhile may be written.
  void connected();
  // Whether this connection takes another request of `content_size` bytes
  // now: within max_in_flight and the host's window, and within its
  // window-bytes unless the connection carries nothing else.
  bool accepts(std::size_t max_in_flight, std::size_t content_size = 0) const noexcept;
  // How many more requests accepts() takes now, by count (not bytes).
  std::size_t room(std::size_t max_in_flight) const noexcept {
    return accepts(max_in_flight) ? std::min(max_in_flight, window_) - pending_.size() : 0;
  }
  // Queues a request's frame (content: its encoded {"action", "value"}).
  // Its traceparent goes with it only to a host that listed "trace" (on
  // this connection, or, before its first answer, on the peer's last one):
  // never to a COMET host.
  void add(pooled_request& request, std::string_view content);

  // Whether a stream may be opened on this connection now: it is (or will
  // be) open and writable, and the features it agreed, if known, include
  // "stream". Streams do not count toward max_in_flight.
  bool takes_streams() const noexcept;
  // Queues the request that opens `stream` (kind: open or subscribe;
  // content: its encoded {"action", "value"}) with `credit` items granted;
  // it is listed until its end. May be the connection's first request.
  // `traceparent` (valid, or empty) as add()'s.
  void add_stream(pooled_stream& stream, stream_part kind, std::string_view content,
                  std::uint64_t credit, std::string_view traceparent = {});
  // Grants `stream` `items` more: queues a credit frame (write it). False
  // (nothing queued) when it is not listed, or "stream" was not agreed.
  bool grant(const pooled_stream& stream, std::uint64_t items);
  // The reader ended `stream`: its request is dropped if unwritten, else a
  // cancel frame is queued when "cancel" was agreed (write what
  // prepare_write() then gives); the id is forgotten (its late frames are
  // dropped). Until the host's first answer says what it speaks, a written
  // one stays listed, without its reader, so that the answer is read.
  cancelled_as close_stream(const pooled_stream& stream);
  // Streams listed (open or opening) with a reader.
  std::size_t streams() const noexcept;

  // The bytes to write next (empty: none now); valid until commit_write()
  // or write_failed().
  std::string_view prepare_write();
  // The write handed `bytes` of them to the socket; a short count leaves
  // the rest to be written next.
  void commit_write(std::size_t bytes);
  // The socket refuses writes after `bytes` of the write (the host may have
  // answered and closed): write nothing more and let the reader take what
  // arrives.
  void write_failed(std::size_t bytes) noexcept;
  bool writing() const noexcept { return writing_; }

  // Decodes the frames in `bytes`, settling the requests they answer.
  // Returns how many bytes it consumed; a frame that cannot be read fails
  // the connection (every request settled, state closed).
  std::size_t consume(std::string_view bytes, settle_fn settled);
  // Bytes the frame being read still needs, from the start of consume()'s input.
  std::size_t bytes_needed() const noexcept { return decoder_.bytes_needed(); }

  // The caller gave up on `request`: it is no longer settled here (unless
  // kept). `only_if_unwritten`: the caller asked for total cancellation
  // alone, which holds only while nothing of the request was written.
  cancelled_as cancel(const pooled_request& request, bool only_if_unwritten = false);
  // Settles every request past its deadline with a timeout (an abandoned
  // one is forgotten), taking it off the wire as cancel() does (write what
  // prepare_write() then gives); returns the earliest deadline left (max: none).
  time_point expire(time_point now, settle_fn settled);
  // The connection is lost or closed by its owner: every request fails with
  // `e`, or is settled for replay if the host never read it. State closed.
  void fail(const error& e, settle_fn settled);

  // Requests written or queued whose answers are still due (abandoned ones too).
  std::size_t in_flight() const noexcept { return pending_.size(); }
  // Something to wait for: a read is useful.
  bool awaits_answers() const noexcept { return !pending_.empty() || !streams_.empty(); }
  // Every request on it was abandoned (or none is left).
  bool only_abandoned() const noexcept;
  // A request whose caller waits is on it.
  bool has_live_requests() const noexcept { return !only_abandoned(); }
  // The earliest deadline of the requests whose callers wait (max: none).
  time_point earliest_deadline() const noexcept;
  // The features both ends agreed (feature:: bits); nullopt until the
  // answer to the first request came.
  std::optional<std::uint32_t> agreed() const noexcept { return agreed_; }

 private:
  struct entry {
    std::uint64_t id;
    time_point deadline;
    pooled_request* request;  // null: abandoned by its caller
    // Its frame is bytes [begin, end) of the write stream (all bytes ever
    // queued on this connection, counted from 0).
    std::uint64_t begin, end;
    std::size_t content_size;
  };
  struct stream_entry {
    std::uint64_t id;
    pooled_stream* stream;  // null: closed by its reader before the host's first answer
    std::uint64_t begin, end;  // its opening request's bytes of the write stream
  };
  // Settles the answer in the decoder.
  void on_response(settle_fn settled);
  // The frame in the decoder is for the stream at `it`.
  void on_stream_frame(std::vector<stream_entry>::iterator it);
  // What a frame's keep-alive (or its absence) says about the connection;
  // `failed`: the frame is an error answer.
  void learn_keep_alive(const frame_header& header, bool failed);
  // Streams the agreement did not allow fail with unsupported.
  void end_streams_not_agreed(std::optional<std::uint64_t> except);
  error not_streaming() const;
  // Queues a cancel frame for `id` if "cancel" was agreed and the
  // connection still writes; whether it did.
  bool queue_cancel(std::uint64_t id);
  // Erases the unwritten frame [begin, end) from the queue.
  void erase_queued(std::uint64_t begin, std::uint64_t end);
  void on_going_away(settle_fn settled);
  // The first request's answer says which features the host speaks.
  void learn_features(const frame_header& header);
  // Whether a request written now may carry a traceparent.
  bool traces() const noexcept { return agreed_ ? (*agreed_ & feature::trace) != 0 : peer_.traces; }
  // Takes `it` off the wire if it can: drops its frame while it waits, or
  // queues a cancel frame once written (when agreed); both remove it.
  cancelled_as withdraw(std::vector<entry>::iterator it, bool only_if_unwritten);
  void remove(std::vector<entry>::iterator it);
  void close_if_done() noexcept;
  // Stream offset of the first byte not yet handed to a write.
  std::uint64_t unwritten_from() const noexcept { return written_ + (writing_ ? in_write_.size() : 0); }

  const peer_info& info_;
  peer_knowledge& peer_;
  frame_decoder decoder_;
  state state_ = state::connecting;
  // At most max_in_flight entries, answered roughly in order: a vector
  // searched from the front beats a node-allocating map.
  std::vector<entry> pending_;
  std::size_t pending_bytes_ = 0;  // their content sizes, for window-bytes
  // Streams open or opening, few per connection.
  std::vector<stream_entry> streams_;
  // Frames queued (waiting) and the write in progress: the stream's bytes
  // [written_, written_ + in_write_.size()) and then queued_.
  std::string queued_, in_write_;
  std::uint64_t written_ = 0;  // stream bytes handed to the socket
  bool writing_ = false;
  bool write_failed_ = false;
  // The host announced it stops: nothing more is written or taken.
  bool going_away_ = false;
  // The request that announced this side's features, once added.
  std::optional<std::uint64_t> features_id_;
  std::optional<std::uint32_t> agreed_;
  std::size_t window_ = std::numeric_limits<std::size_t>::max();
  std::size_t window_bytes_ = std::numeric_limits<std::size_t>::max();
  // The request the host refused as too_large before closing, if it did.
  std::optional<std::uint64_t> refused_id_;
};

}  // namespace comet
