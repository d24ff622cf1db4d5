// Internal: the rules of one host connection, with no socket (the host's
// counterpart of the client's multiplexer, in the shape of Boost.Redis's
// FSMs): received bytes go in through consume(), which turns them into
// events for a driver (run this request, cancel that handler); answers come
// back through answered(); the bytes to write come out of prepare_write() /
// commit_write(). host_connection.cpp moves the bytes and runs the handlers;
// these rules are unit-tested without sockets (tests/test_host_session.cpp).
//
// The rules (docs/protocol.md): untagged requests, and any request on a
// connection that does not stay open, are ordered: run one at a time and
// answered in order of arrival; tagged keep-alive requests run side by side
// and are answered as they complete. At most `max_in_flight` requests whose
// contents add up to at most `max_in_flight_bytes` are read and not yet
// answered (one alone is always admitted); one past them is answered `busy`
// unread, never by reading less. Reading stops only when more than
// `write_buffer_limit` bytes of answers wait for a peer that does not read.
// Control frames (cancel) are read whatever the window says and never
// answered. A first request announcing "features" gets them (and the
// window) in its answer; a peer that announced nothing sees today's bytes.
#pragma once

#include <comet/codec.hpp>
#include <comet/endpoint.hpp>
#include <comet/handlers.hpp>

#include "read_buffer.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace comet {

struct host_session_limits {
  std::size_t max_content_length = 0;
  std::size_t max_in_flight = 64;
  std::size_t max_in_flight_bytes = 64 * 1024 * 1024;
  std::size_t write_buffer_limit = 4 * 1024 * 1024;
  // Streams and subscriptions open at once; they are not in the window.
  std::size_t max_streams = 256;
  // During a stop, the connection's first request still runs (a host
  // sharing its port with others, host_options::reuse_port: no other host
  // can take a connection the kernel gave this one).
  bool serve_first_in_drain = false;
};

class host_session {
 public:
  // Names one request read and not yet answered, until its answer comes
  // back through answered(); then it may name another.
  using handle = std::uint32_t;
  // The `handle` of answers that ran no handler (refusals): responded() only.
  static constexpr handle no_handle = std::numeric_limits<handle>::max();

  // What the session asks of its driver.
  class driver {
   public:
    // The request in a frame, or the answer that refuses it (bad_request,
    // unauthorized, shutting_down): host::impl::prepare.
    virtual std::variant<request_message, encoded_response> prepare(const frame_header& header,
                                                                    std::string_view content) = 0;
    // Runs `request` (moved from at will); its answer comes back through
    // answered(h, ...), before run() returns or later, exactly once.
    // `traceparent`: the request's, checked (valid, or empty); valid only
    // during the call.
    virtual void run(handle h, request_message& request, std::optional<std::uint64_t> request_id,
                     bool ordered, std::string_view traceparent) = 0;
    // Cancels the handler running under `h` (the peer sent a cancel); its
    // answer still comes back through answered(), and is dropped.
    virtual void cancel(handle h) = 0;
    // An answer became a frame to write (for metrics and the debug line).
    virtual void responded(handle h, const encoded_response& response) = 0;

    // Streams (docs/protocol.md, "Streams and subscriptions").
    // A request opening a stream (`subscribe`: a subscription) passed the
    // session's rules: the answer that refuses it instead (no_handler,
    // bad_request), or nullopt to open it.
    virtual std::optional<encoded_response> admit_stream(const request_message& request,
                                                         bool subscribe) = 0;
    // Runs stream `h`. A stream's "begin" frame is queued already (not yet
    // written). A subscription registers here and returns the topic's last
    // sequence number, which its begin (queued next, before any item can
    // be) carries: the reader sees every publish after it. Items go out
    // through stream_item(); the stream ends with stream_finished(h, ...),
    // exactly once, now or later. Returns nullopt for a stream.
    virtual std::optional<std::uint64_t> run_stream(handle h, request_message& request,
                                                    std::uint64_t request_id, bool subscribe,
                                                    std::string_view traceparent) = 0;
    // Stream `h` ended from the other side (the reader's cancel, or the
    // drain, which wrote its end): nothing more is written for it; the
    // driver stops it and still calls stream_finished(h).
    virtual void cancel_stream(handle h) = 0;
    // The reader granted stream `h` more credit.
    virtual void credited(handle h) = 0;

   protected:
    ~driver() = default;
  };

  // `peer` names the peer in log lines; both must outlive the session.
  host_session(const host_session_limits& limits, driver& d, const endpoint& peer);

  // Decodes the frames in `bytes` (from a frame boundary) and acts on them;
  // returns how many bytes it used. Stops at the first frame after which
  // nothing more is read (too large, malformed, unauthorized, not keep-alive).
  // The content size of the request of handle `h` while it runs.
  std::size_t request_bytes(handle h) const noexcept;
  std::size_t consume(std::string_view bytes);
  // Bytes the frame being read needs in all, from the start of consume()'s input.
  std::size_t bytes_needed() const noexcept { return decoder_.bytes_needed(); }

  // The answer of the request run under `h`.
  void answered(handle h, const encoded_response& response);

  // The host is stopping: a peer that announced "going-away" gets the notice;
  // requests read from now on are answered shutting_down without running,
  // and every answer says the connection closes. Idempotent.
  void begin_drain();
  // The connection reached its max_connection_age: as begin_drain() for
  // the requests read from now on (the notice to a peer that announced
  // "going-away", shutting_down for what follows, answers that say the
  // connection closes), but the requests read already all run, and open
  // streams run to their end. A later begin_drain() (a stop) still ends
  // those. Idempotent.
  void retire();
  bool draining() const noexcept { return draining_; }
  bool retired() const noexcept { return retired_; }
  // The going-away notice was queued: the peer ends what it wrote after it.
  bool noticed() const noexcept { return noticed_; }

  // The connection is gone: answers still to come are dropped.
  void shut() noexcept;

  // The bytes to write next (empty: none now); valid until commit_write().
  std::string_view prepare_write() { return shut_ ? std::string_view() : out_.begin(); }
  void commit_write() noexcept { out_.done(); }
  void write_failed() noexcept;
  bool writing() const noexcept { return out_.writing(); }

  // More bytes may be read: no frame ended the reading.
  bool reading() const noexcept { return reading_ && !shut_; }
  // Reading now is useful: reading(), and the peer reads its answers.
  bool wants_read() const noexcept {
    return reading() && out_.buffered() + held_bytes_ <= limits_.write_buffer_limit;
  }
  // Requests read and not yet answered (refusals waiting their turn, and
  // cancelled handlers still finishing, included).
  std::size_t outstanding() const noexcept { return slots_.size() - free_.size(); }
  // Handlers running (cancelled ones excluded), as the window counts them.
  std::size_t in_flight() const noexcept { return in_flight_; }
  // Nothing left to answer or write: a stopping or finished connection closes.
  bool idle() const noexcept { return outstanding() == 0 && out_.idle(); }
  // Nothing more will be read and everything is answered and written.
  bool done() const noexcept { return !reading() && idle(); }
  // The extensions in use (feature:: bits both ends listed).
  std::uint32_t features() const noexcept { return features_; }

  // Streams. Every one holds a handle (so outstanding() counts it) from
  // run_stream() to stream_finished(); none counts toward the window.
  std::size_t open_streams() const noexcept { return stream_ids_.size() + streams_ending_; }
  // Stream `h` may still write: not ended, cancelled or shut.
  bool stream_live(handle h) const noexcept;
  // Credit the reader granted and items have not spent.
  std::uint64_t stream_credit(handle h) const noexcept;
  // An item may be queued now: live, credit left and room in the write
  // buffer (below write_buffer_limit).
  bool stream_writable(handle h) const noexcept {
    return stream_live(h) && stream_credit(h) > 0 && write_room();
  }
  bool write_room() const noexcept { return room() > 0; }
  // An item of `content_size` bytes may be queued now: stream_writable,
  // and its frame keeps the buffer within write_buffer_limit (so that
  // reading goes on, for the reader's credit and cancels), unless the
  // buffer is empty (an item larger than the limit goes alone).
  bool stream_writable(handle h, std::size_t content_size) const noexcept {
    return stream_live(h) && stream_credit(h) > 0 && fits(content_size);
  }
  bool fits(std::size_t content_size) const noexcept {
    return !shut_ && (room() >= content_size + stream_frame_overhead ||
                      (out_.buffered() == 0 && held_bytes_ == 0));
  }
  // At most the header of an item frame.
  static constexpr std::size_t stream_frame_overhead = 256;
  // Bytes the write buffer takes before write_buffer_limit.
  std::size_t room() const noexcept {
    const std::size_t used = out_.buffered() + held_bytes_;
    return shut_ || used >= limits_.write_buffer_limit ? 0 : limits_.write_buffer_limit - used;
  }
  // Queues one item frame (`content` is {"result": item}); spends one
  // credit. Only while stream_writable(h).
  void stream_item(handle h, std::string_view content, std::optional<std::uint64_t> sequence);
  // Ends stream `h` now, cleanly (nullopt) or with an error response; a
  // no-op once it ended. The handle stays taken until stream_finished().
  void stream_end(handle h, const std::optional<encoded_response>& error);
  // The stream's handler returned (or its subscription is gone): ends it
  // as stream_end() unless it ended already, and frees the handle.
  void stream_finished(handle h, const std::optional<encoded_response>& error);
  // Credit past this, in all, is not granted (docs/protocol.md).
  static constexpr std::uint64_t max_credit = std::uint64_t{1} << 32;

 private:
  enum class state : std::uint8_t { free, queued, running, cancelled, held, written, streaming };
  struct slot {
    state status = state::free;
    bool ordered = false;
    bool keep_alive = false;
    bool announce = false;  // its answer carries features and the window
    std::optional<std::uint64_t> id;
    std::size_t bytes = 0;  // its content, counted in the window
    // queued: waiting for the ordered ones before it. Moved in whole, so
    // that its value keeps the resource it was read on (request_arena.hpp).
    std::optional<request_message> request;
    std::string traceparent;  // queued: the request's, checked
    std::string frame;        // held: an answer waiting its turn
    // streaming: the credit left; ended: its end was written, or it was
    // cancelled (nothing more goes out for it).
    std::uint64_t credit = 0;
    bool ended = false;
  };
  struct request_info {
    std::optional<std::uint64_t> id;
    bool keep_alive;
    bool ordered;
    bool announce;
    std::string_view traceparent = {};  // checked: valid, or empty
  };

  void on_request(const frame_header& header, std::string_view content);
  void on_control(const frame_header& header);
  // Answers a request that runs no handler: at once, or in its turn.
  void refuse(const request_info& r, const encoded_response& response);
  void append_answer(std::string& out, const request_info& r, std::string_view content) const;
  void advance_ordered();
  // Queues the going-away notice, once, if the peer announced it.
  void notice_going_away();
  handle take_slot();
  void release(handle h);
  void leave_window(slot& s) noexcept;
  std::string busy_message() const;
  // A request whose header has "stream": opens a stream, or refuses it.
  void on_stream_request(const frame_header& header, const request_info& r,
                         request_message& request);
  void on_credit(const frame_header& header);
  // The open stream of request `id`, if any.
  std::optional<handle> stream_of(std::uint64_t id) const;
  void forget_stream_id(handle h);
  void append_stream_frame(handle h, stream_part part, std::string_view content,
                           std::optional<std::uint64_t> sequence);

  host_session_limits limits_;
  driver& driver_;
  const endpoint& peer_;
  frame_decoder decoder_;
  write_queue out_;

  std::vector<slot> slots_;
  std::vector<handle> free_;
  // A FIFO of handles in one vector, reused: popping moves a start index,
  // and pushing onto a full vector first drops what was popped (a deque
  // would take and free a block every 128 requests).
  class handle_queue {
   public:
    bool empty() const noexcept { return start_ == items_.size(); }
    handle front() const noexcept { return items_[start_]; }
    void push_back(handle h) {
      if (start_ > 0 && items_.size() == items_.capacity()) {
        items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(start_));
        start_ = 0;
      }
      items_.push_back(h);
    }
    void pop_front() noexcept {
      if (++start_ == items_.size()) clear();
    }
    auto begin() const noexcept { return items_.begin() + static_cast<std::ptrdiff_t>(start_); }
    auto end() const noexcept { return items_.end(); }
    template <class Predicate>
    void erase_if(Predicate p) {
      items_.erase(std::remove_if(items_.begin() + static_cast<std::ptrdiff_t>(start_), items_.end(), p),
                   items_.end());
      if (empty()) clear();
    }

   private:
    void clear() noexcept {
      items_.clear();
      start_ = 0;
    }
    std::vector<handle> items_;
    std::size_t start_ = 0;
  };
  // Ordered requests in arrival order; the front is answered next.
  handle_queue ordered_;
  // Running tagged handlers by request id, sorted (ids mostly arrive in
  // order, so inserting is appending); no node allocation per request.
  std::vector<std::pair<std::uint64_t, handle>> by_id_;
  std::size_t in_flight_ = 0;
  std::size_t in_flight_bytes_ = 0;
  std::size_t held_bytes_ = 0;  // answers waiting their turn in slots

  bool reading_ = true;
  bool shut_ = false;
  bool draining_ = false;  // begin_drain() or retire()
  bool stopping_ = false;  // begin_drain()
  bool retired_ = false;   // retire()
  bool noticed_ = false;
  bool advancing_ = false;
  bool first_request_ = true;
  std::uint32_t features_ = 0;
  std::optional<std::uint64_t> last_id_;  // of the last request read
  // Open streams by request id, sorted; a stream leaves it when it ends or
  // is cancelled (credit and cancels for it are ignored from then on).
  std::vector<std::pair<std::uint64_t, handle>> stream_ids_;
  // Streams out of stream_ids_ whose handle is still taken.
  std::size_t streams_ending_ = 0;
};

}  // namespace comet
