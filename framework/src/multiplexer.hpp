// Internal: the rules of one keep-alive connection of a client pool, with no
// socket (as Boost.Redis's multiplexer): requests go in with add(), bytes
// to write come out of prepare_write() / commit_write(), and received bytes
// go in through consume(), which settles the requests they answer. The
// connection driver in client_pool.cpp moves the bytes; these rules are
// unit-tested without sockets (tests/test_multiplexer.cpp).
//
// The rules: a new connection carries one request (a probe) until the
// peer's answer shows whether it keeps connections open (a comet-net host
// echoes "keep-alive"; a COMET host answers without it and closes); then up
// to max_in_flight tagged requests at once, matched by request id. A
// request abandoned by its caller stays listed until its late answer is
// read and dropped (or its deadline passes), so the connection stays usable.
// After the host refuses a request as too_large and closes, the requests
// written behind it were never read: they are settled for replay.
#pragma once

#include "peer.hpp"
#include "read_buffer.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <cstdint>
#include <limits>
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
  std::optional<json::value> result;
  std::optional<error> failure;
  // The host closed the connection without reading this request (it
  // refused one written before it as too_large): send it again.
  bool replay = false;

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

 private:
  // Either call moves the handler out and ends the resumer before the
  // coroutine runs, since running it destroys the frame this request lives in.
  struct resumer {
    virtual void post_to(const asio::any_io_executor& serial) = 0;
    virtual void invoke() = 0;
    virtual void discard() = 0;

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
    Handler handler;
  };
  resumer* resume_ = nullptr;
  asio::cancellation_slot slot_;
  alignas(std::max_align_t) unsigned char storage_[64];
};

// What the connections of one pool learn about their peer.
struct peer_knowledge {
  enum class keep_alive { unknown, yes, no };
  keep_alive support = keep_alive::unknown;
  // The smallest request content the peer refused as too_large: requests
  // at least this large go on a connection of their own.
  std::size_t refused_size = std::numeric_limits<std::size_t>::max();
};

class multiplexer {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  enum class state { connecting, probing, open, closing, closed };

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
  // Whether this connection takes another request now.
  bool accepts(std::size_t max_in_flight) const noexcept;
  // Queues a request's frame (content: its encoded {"action", "value"}).
  void add(pooled_request& request, std::string_view content);

  // The bytes to write next (empty: none now); valid until commit_write().
  std::string_view prepare_write();
  void commit_write() noexcept { out_.done(); }
  // The socket refuses writes (the host may have answered and closed):
  // write nothing more and let the reader take what arrives.
  void write_failed() noexcept;
  bool writing() const noexcept { return out_.writing(); }

  // Decodes the answers in `bytes`, settling the requests they answer.
  // Returns how many bytes it consumed; a frame that cannot be read fails
  // the connection (every request settled, state closed).
  std::size_t consume(std::string_view bytes, settle_fn settled);
  // Bytes the frame being read still needs, from the start of consume()'s input.
  std::size_t bytes_needed() const noexcept { return decoder_.bytes_needed(); }

  // The caller gave up on `request` (cancelled): it is no longer settled
  // here; its answer, if one comes, is read and dropped. True if it was here.
  bool abandon(const pooled_request& request) noexcept;
  // Settles every request past its deadline with a timeout (an abandoned
  // one is forgotten); returns the earliest deadline left (max: none).
  time_point expire(time_point now, settle_fn settled);
  // The connection is lost or closed by its owner: every request fails with
  // `e`, or is settled for replay if the host never read it. State closed.
  void fail(const error& e, settle_fn settled);

  // Requests written or queued whose answers are still due (abandoned ones too).
  std::size_t in_flight() const noexcept { return pending_.size(); }
  // Something to wait for: a read is useful.
  bool awaits_answers() const noexcept { return !pending_.empty(); }
  // Every request on it was abandoned (or none is left).
  bool only_abandoned() const noexcept;
  // A request whose caller waits is on it.
  bool has_live_requests() const noexcept { return !only_abandoned(); }
  // The earliest deadline of the requests whose callers wait (max: none).
  time_point earliest_deadline() const noexcept;

 private:
  struct entry {
    std::uint64_t id;
    time_point deadline;
    pooled_request* request;  // null: abandoned by its caller
  };
  // Settles the answer in the decoder; false once the connection is done.
  void on_response(settle_fn settled);
  void settle_all(const error& e, settle_fn settled);

  const peer_info& info_;
  peer_knowledge& peer_;
  frame_decoder decoder_;
  state state_ = state::connecting;
  // At most max_in_flight entries, answered roughly in order: a vector
  // searched from the front beats a node-allocating map.
  std::vector<entry> pending_;
  write_queue out_;
  bool write_failed_ = false;
  // The request the host refused as too_large before closing, if it did.
  std::optional<std::uint64_t> refused_id_;
};

}  // namespace comet
