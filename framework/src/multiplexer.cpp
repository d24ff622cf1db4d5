#include "multiplexer.hpp"

#include <algorithm>

namespace comet {

void multiplexer::connected() {
  if (state_ != state::connecting) return;
  state_ = peer_.support == peer_knowledge::keep_alive::yes ? state::open : state::probing;
}

bool multiplexer::accepts(std::size_t max_in_flight, std::size_t content_size) const noexcept {
  if (write_failed_ || going_away_) return false;
  const bool ready = state_ == state::open ||
                     (state_ == state::connecting && peer_.support == peer_knowledge::keep_alive::yes);
  if (!ready || pending_.size() >= std::min(max_in_flight, window_)) return false;
  // A request larger than the whole budget still goes, alone: the host
  // refuses it (too_large) or takes it, rather than it waiting forever.
  return pending_.empty() || pending_bytes_ + content_size <= window_bytes_;
}

void multiplexer::add(pooled_request& request, std::string_view content) {
  request.content_size = content.size();
  frame_header h;
  h.keep_alive = true;
  h.request_id = request.id;
  h.auth_token = info_.options.auth_token;
  if (!request.traceparent.empty() && traces()) h.traceparent = request.traceparent;
  if (!features_id_) {
    features_id_ = request.id;
    h.features = feature::all;
  }
  const std::uint64_t begin = unwritten_from() + queued_.size();
  append_frame(queued_, h, content);
  pending_.push_back({request.id, request.deadline, &request, begin,
                      unwritten_from() + queued_.size(), content.size()});
  pending_bytes_ += content.size();
}

bool multiplexer::takes_streams() const noexcept {
  if (write_failed_ || going_away_ || peer_.no_streams) return false;
  const bool ready = state_ == state::open ||
                     (state_ == state::connecting && peer_.support == peer_knowledge::keep_alive::yes);
  return ready && (!agreed_ || (*agreed_ & feature::stream));
}

void multiplexer::add_stream(pooled_stream& stream, stream_part kind, std::string_view content,
                             std::uint64_t credit, std::string_view traceparent) {
  frame_header h;
  h.keep_alive = true;
  h.request_id = stream.id;
  h.auth_token = info_.options.auth_token;
  if (!traceparent.empty() && traces()) h.traceparent = traceparent;
  h.stream = kind;
  h.credit = credit;
  if (!features_id_) {
    features_id_ = stream.id;
    h.features = feature::all;
  }
  const std::uint64_t begin = unwritten_from() + queued_.size();
  append_frame(queued_, h, content);
  streams_.push_back({stream.id, &stream, begin, unwritten_from() + queued_.size()});
}

bool multiplexer::grant(const pooled_stream& stream, std::uint64_t items) {
  if (items == 0 || !agreed_ || !(*agreed_ & feature::stream) || going_away_ || write_failed_ ||
      state_ == state::closed)
    return false;
  const auto it = std::find_if(streams_.begin(), streams_.end(),
                               [&](const stream_entry& e) { return e.stream == &stream; });
  if (it == streams_.end()) return false;
  frame_header h;
  h.keep_alive = true;
  h.request_id = it->id;
  h.kind = frame_kind::credit;
  h.credit = items;
  append_frame(queued_, h, {});
  return true;
}

multiplexer::cancelled_as multiplexer::close_stream(const pooled_stream& stream) {
  const auto it = std::find_if(streams_.begin(), streams_.end(),
                               [&](const stream_entry& e) { return e.stream == &stream; });
  if (it == streams_.end()) return cancelled_as::kept;
  if (it->begin >= unwritten_from() && !write_failed_ && it->id != features_id_) {
    erase_queued(it->begin, it->end);
    streams_.erase(it);
    close_if_done();
    return cancelled_as::dropped;
  }
  if (!agreed_) {
    // The host's first answer is due: it says what the host speaks (and,
    // for this stream, whether it runs), so it is still read.
    it->stream = nullptr;
    return cancelled_as::abandoned;
  }
  const std::uint64_t id = it->id;
  streams_.erase(it);
  if (queue_cancel(id)) return cancelled_as::on_wire;
  close_if_done();
  return cancelled_as::dropped;
}

bool multiplexer::queue_cancel(std::uint64_t id) {
  if (!agreed_ || !(*agreed_ & feature::cancel) || going_away_ || write_failed_ ||
      state_ == state::closing || state_ == state::closed)
    return false;
  frame_header h;
  h.keep_alive = true;
  h.request_id = id;
  h.kind = frame_kind::cancel;
  append_frame(queued_, h, {});
  return true;
}

std::size_t multiplexer::streams() const noexcept {
  return static_cast<std::size_t>(std::count_if(streams_.begin(), streams_.end(),
                                                [](const stream_entry& e) { return e.stream; }));
}

void multiplexer::erase_queued(std::uint64_t begin, std::uint64_t end) {
  const std::uint64_t size = end - begin;
  queued_.erase(static_cast<std::size_t>(begin - unwritten_from()), static_cast<std::size_t>(size));
  for (auto& e : pending_)
    if (e.begin >= end) {
      e.begin -= size;
      e.end -= size;
    }
  for (auto& e : streams_)
    if (e.begin >= end) {
      e.begin -= size;
      e.end -= size;
    }
}

std::string_view multiplexer::prepare_write() {
  if (write_failed_ || writing_ || queued_.empty() ||
      (state_ != state::open && state_ != state::probing && state_ != state::closing))
    return {};
  writing_ = true;
  std::swap(queued_, in_write_);
  return in_write_;
}

void multiplexer::commit_write(std::size_t bytes) {
  if (!writing_) return;
  bytes = std::min(bytes, in_write_.size());
  written_ += bytes;
  writing_ = false;
  if (bytes == in_write_.size()) {
    in_write_.clear();
    return;
  }
  // A short write: the rest goes first next time. Not the common case
  // (async_write writes all or fails), so a copy is fine.
  in_write_.erase(0, bytes);
  in_write_ += queued_;
  std::swap(queued_, in_write_);
  in_write_.clear();
}

void multiplexer::write_failed(std::size_t bytes) noexcept {
  if (writing_) written_ += std::min(bytes, in_write_.size());
  writing_ = false;
  write_failed_ = true;
  in_write_.clear();
  queued_.clear();
}

std::size_t multiplexer::consume(std::string_view bytes, settle_fn settled) {
  std::size_t used = 0;
  while (state_ != state::closed) {
    const auto status = decoder_.decode(bytes.substr(used));
    if (status == frame_decoder::status::need_more) break;
    if (status != frame_decoder::status::complete) {
      fail(error(errc::protocol_error, info_.describe() + " sent a bad frame: " + decoder_.error()),
           settled);
      break;
    }
    used += decoder_.frame_size();
    switch (decoder_.header().kind) {
      case frame_kind::message: {
        const frame_header& h = decoder_.header();
        auto it = streams_.end();
        if (h.request_id)
          it = std::find_if(streams_.begin(), streams_.end(),
                            [id = *h.request_id](const stream_entry& e) { return e.id == id; });
        else if (pending_.empty() && streams_.size() == 1)  // a COMET host echoes no id
          it = streams_.begin();
        if (it != streams_.end())
          on_stream_frame(it);
        else if (h.stream == stream_part::none)
          on_response(settled);
        else
          learn_keep_alive(h, false);  // a late frame of a stream closed by its reader
        break;
      }
      // Honoured even when the host did not announce it: it can only mean
      // the host stops, and reading it as an answer would be wrong.
      case frame_kind::going_away: on_going_away(settled); break;
      // A host has nothing to cancel on the client; unknown kinds are
      // ignored by the protocol's rule.
      case frame_kind::cancel:
      case frame_kind::credit:
      case frame_kind::unknown_control: break;
    }
    decoder_.reset();
  }
  return used;
}

void multiplexer::learn_features(const frame_header& header) {
  if (agreed_ || !features_id_ || header.request_id != features_id_) return;
  agreed_ = header.features.value_or(0) & feature::all;
  peer_.traces = (*agreed_ & feature::trace) != 0;
  if (!(*agreed_ & feature::stream)) {
    peer_.no_streams = true;
    end_streams_not_agreed(header.request_id);
  }
  if (header.window) window_ = static_cast<std::size_t>(std::max<std::uint64_t>(1, *header.window));
  if (header.window_bytes) window_bytes_ = static_cast<std::size_t>(*header.window_bytes);
}

void multiplexer::on_response(settle_fn settled) {
  const frame_header& header = decoder_.header();
  learn_features(header);
  pooled_request* request = nullptr;
  if (header.request_id) {
    auto it = std::find_if(pending_.begin(), pending_.end(),
                           [id = *header.request_id](const entry& e) { return e.id == id; });
    if (it != pending_.end()) {
      request = it->request;
      remove(it);
    }
  } else if (pending_.size() == 1) {  // a COMET host does not echo ids
    request = pending_.front().request;
    remove(pending_.begin());
  }
  std::optional<json::value> result;
  std::optional<error> failure;
  try {
    result = info_.result_of(header, decoder_.content());
  } catch (const error& e) {
    failure = e;
  }
  learn_keep_alive(header, failure.has_value());
  // A comet-net host reads nothing after a frame it refuses as too
  // large: the requests written after it never ran.
  if (!header.keep_alive && failure && failure->code() == errc::too_large && header.request_id) {
    refused_id_ = header.request_id;
    if (request) peer_.refused_size = std::min(peer_.refused_size, request->content_size);
  }
  close_if_done();
  if (request) {
    request->answer_size = decoder_.content().size();
    request->result = std::move(result);
    request->failure = std::move(failure);
    settled(*request);
  }
}

void multiplexer::learn_keep_alive(const frame_header& header, bool failed) {
  if (header.keep_alive) {
    if (state_ == state::probing) {
      state_ = state::open;
      peer_.support = peer_knowledge::keep_alive::yes;
    }
    return;
  }
  // The peer closes after this answer. Only an ordinary answer says it
  // never keeps connections (a COMET host): a comet-net host also closes
  // after refusing a request (too_large, unauthorized).
  // Nor does an answer after a going-away notice: the host closes this
  // connection because it stops or the connection is old.
  if (peer_.support == peer_knowledge::keep_alive::unknown && !failed && !going_away_)
    peer_.support = peer_knowledge::keep_alive::no;
  if (state_ != state::closed) state_ = state::closing;
}

error multiplexer::not_streaming() const {
  return error(errc::unsupported,
               info_.describe() +
                   " cannot stream: it answered a stream's request as a plain request (a COMET "
                   "host, or comet-net before 0.10); use send() for a single answer");
}

void multiplexer::end_streams_not_agreed(std::optional<std::uint64_t> except) {
  std::vector<pooled_stream*> ended;
  for (std::size_t i = streams_.size(); i-- > 0;) {  // from the back: erasing moves only later frames
    const stream_entry e = streams_[i];
    if (except && e.id == *except) continue;
    if (e.begin >= unwritten_from() && !write_failed_) erase_queued(e.begin, e.end);
    streams_.erase(streams_.begin() + static_cast<std::ptrdiff_t>(i));
    if (e.stream) ended.push_back(e.stream);
  }
  for (auto* s : ended)
    s->stream_ended(error(errc::unsupported,
                          info_.describe() +
                              " does not speak streams (its answer did not list the \"stream\" "
                              "feature: comet-net before 0.10); use send() for a single answer"));
}

void multiplexer::on_stream_frame(std::vector<stream_entry>::iterator it) {
  const frame_header& header = decoder_.header();
  learn_features(header);  // may end other streams, never this one
  it = std::find_if(streams_.begin(), streams_.end(),
                    [id = it->id](const stream_entry& e) { return e.id == id; });
  if (it == streams_.end()) return;
  pooled_stream* stream = it->stream;
  const std::uint64_t id = it->id;
  std::optional<error> failure;
  bool refused = false;  // an error answer: says nothing of keep-alive support
  const bool ends = header.stream != stream_part::begin && header.stream != stream_part::item;
  if (header.stream == stream_part::none) {
    // An ordinary answer: the host refused it, or ran it as a plain request.
    try {
      (void)info_.result_of(header, decoder_.content());
      failure = not_streaming();
      peer_.no_streams = true;
    } catch (const error& e) {
      failure = e;
      refused = true;
    }
  } else if (header.stream == stream_part::end && header.content_length != 0) {
    try {
      (void)info_.result_of(header, decoder_.content());
    } catch (const error& e) {
      failure = e;
    }
  } else if (header.stream != stream_part::begin && header.stream != stream_part::item &&
             header.stream != stream_part::end) {
    failure = error(errc::protocol_error, info_.describe() + " sent a stream frame of an unknown part");
  }
  learn_keep_alive(header, refused || header.stream != stream_part::none);
  if (ends || !stream) {
    streams_.erase(it);
    // A stream closed by its reader before the first answer: now that the
    // host's features are known, end it on the host.
    if (!stream && !ends) queue_cancel(id);
    close_if_done();
    if (stream) stream->stream_ended(std::move(failure));
    return;
  }
  close_if_done();
  if (header.stream == stream_part::begin) return stream->stream_begun(header.sequence);
  json::value item;
  try {
    item = info_.result_of(header, decoder_.content());
  } catch (const error& e) {
    // An item that is not a response: the stream cannot go on.
    streams_.erase(it);
    queue_cancel(id);
    close_if_done();
    return stream->stream_ended(e);
  }
  stream->stream_item(header.sequence, std::move(item), header.content_length);
}

void multiplexer::on_going_away(settle_fn settled) {
  const auto last = decoder_.header().last_request_id;
  going_away_ = true;
  queued_.clear();  // the host reads nothing more: not even a cancel
  if (state_ != state::closed) state_ = state::closing;
  std::vector<pooled_request*> unread;
  std::erase_if(pending_, [&](const entry& e) {
    if (last && e.id <= *last) return false;
    pending_bytes_ -= e.content_size;
    if (e.request) unread.push_back(e.request);
    return true;
  });
  std::vector<pooled_stream*> unread_streams;
  std::erase_if(streams_, [&](const stream_entry& e) {
    if (last && e.id <= *last) return false;
    if (e.stream) unread_streams.push_back(e.stream);
    return true;
  });
  close_if_done();
  const error why(errc::unread, info_.describe() +
                                    " is going away and did not read this request; it is "
                                    "safe to send again");
  // The pool sends them again on another connection (a host closing an
  // old connection at max_connection_age is still there); if that finds no
  // host, they end with this.
  for (auto* r : unread) {
    r->failure = why;
    r->replay = true;
    r->going_away = true;
    settled(*r);
  }
  for (auto* s : unread_streams) s->stream_ended(why);
}

void multiplexer::remove(std::vector<entry>::iterator it) {
  pending_bytes_ -= it->content_size;
  pending_.erase(it);
}

void multiplexer::close_if_done() noexcept {
  if (state_ == state::closing && pending_.empty() && streams_.empty()) state_ = state::closed;
}

multiplexer::cancelled_as multiplexer::cancel(const pooled_request& request, bool only_if_unwritten) {
  auto it = std::find_if(pending_.begin(), pending_.end(),
                         [&](const entry& e) { return e.request == &request; });
  if (it == pending_.end()) return cancelled_as::kept;
  const auto outcome = withdraw(it, only_if_unwritten);
  if (outcome == cancelled_as::abandoned) it->request = nullptr;
  return outcome;
}

multiplexer::cancelled_as multiplexer::withdraw(std::vector<entry>::iterator it,
                                                bool only_if_unwritten) {
  // The request that announces the features stays: its answer says what
  // the host speaks.
  if (it->begin >= unwritten_from() && !write_failed_ && it->id != features_id_) {
    erase_queued(it->begin, it->end);
    remove(it);
    close_if_done();
    return cancelled_as::dropped;
  }
  if (only_if_unwritten) return cancelled_as::kept;
  if (queue_cancel(it->id)) {
    remove(it);
    return cancelled_as::on_wire;
  }
  return cancelled_as::abandoned;
}

bool multiplexer::only_abandoned() const noexcept {
  return std::all_of(pending_.begin(), pending_.end(), [](const entry& e) { return !e.request; }) &&
         std::all_of(streams_.begin(), streams_.end(), [](const stream_entry& e) { return !e.stream; });
}

multiplexer::time_point multiplexer::earliest_deadline() const noexcept {
  time_point earliest = time_point::max();
  for (const auto& e : pending_)
    if (e.request) earliest = std::min(earliest, e.deadline);
  return earliest;
}

multiplexer::time_point multiplexer::expire(time_point now, settle_fn settled) {
  time_point earliest = time_point::max();
  for (std::size_t i = 0; i < pending_.size();) {
    const auto it = pending_.begin() + static_cast<std::ptrdiff_t>(i);
    if (it->deadline > now) {
      if (it->request) earliest = std::min(earliest, it->deadline);
      ++i;
      continue;
    }
    // Nobody waits for it any more: the host need not run it either.
    pooled_request* request = it->request;
    if (withdraw(it, false) == cancelled_as::abandoned) remove(it);
    if (request) {
      request->failure = info_.timed_out(request->timeout);
      settled(*request);
    }
  }
  close_if_done();
  return earliest;
}

void multiplexer::fail(const error& e, settle_fn settled) {
  // Requests queued on a connection that never came up fail with its
  // reason (peer_offline...): replaying them would only dial again.
  const bool was_up = state_ != state::connecting;
  state_ = state::closed;
  write_failed_ = true;
  auto listed = std::move(pending_);
  pending_.clear();
  pending_bytes_ = 0;
  auto streams = std::move(streams_);
  streams_.clear();
  for (const auto& entry : streams) {
    if (!entry.stream) continue;
    if ((refused_id_ && entry.id > *refused_id_) ||
        (was_up && entry.end > written_ && (!writing_ || entry.begin >= unwritten_from())))
      entry.stream->stream_replay(
          error(errc::unread, std::string(e.what()) +
                                  "; the stream's request was not yet written, so it is safe to "
                                  "open it again"));
    else
      entry.stream->stream_ended(e);
  }
  for (const auto& entry : listed) {
    if (!entry.request) continue;
    // Written after the refused request, on this connection: never read.
    if (refused_id_ && entry.id > *refused_id_) {
      entry.request->replay = true;
    } else if (was_up && entry.end > written_ && (!writing_ || entry.begin >= unwritten_from())) {
      // Not all of it reached the socket (a write in progress may have
      // handed it all over already: that is not known until it completes):
      // the host cannot have run it.
      entry.request->replay = true;
      entry.request->failure =
          error(errc::unread, std::string(e.what()) +
                                  "; this request was not yet written, so it is safe to send again");
    } else {
      entry.request->failure = e;
    }
    settled(*entry.request);
  }
}

}  // namespace comet
