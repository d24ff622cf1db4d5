#include "host_session.hpp"

#include "trace.hpp"

#include <comet/log.hpp>

#include <algorithm>

namespace comet {

host_session::host_session(const host_session_limits& limits, driver& d, const endpoint& peer)
    : limits_(limits), driver_(d), peer_(peer), decoder_(limits.max_content_length) {
  limits_.max_in_flight = std::max<std::size_t>(1, limits_.max_in_flight);
}

std::size_t host_session::consume(std::string_view bytes) {
  std::size_t used = 0;
  while (reading()) {
    const auto status = decoder_.decode(bytes.substr(used));
    if (status == frame_decoder::status::need_more) break;
    if (status == frame_decoder::status::malformed) {
      log(log_level::warn, "host: malformed frame from " + peer_.to_string() + ": " +
                               decoder_.error() + "; closing the connection");
      reading_ = false;  // the answers to the frames before it still go out
      break;
    }
    if (status == frame_decoder::status::too_large) {
      log(log_level::warn, "host: " + peer_.to_string() + ": " + decoder_.error() +
                               "; answering too_large and closing");
      const auto& h = decoder_.header();
      reading_ = false;  // its content is not read: nothing after it can be
      refuse({h.request_id, false, !(h.request_id && h.keep_alive), false},
             error_response(errc::too_large, decoder_.error()));
      decoder_.reset();
      break;
    }
    const frame_header& header = decoder_.header();
    if (header.kind == frame_kind::message)
      on_request(header, decoder_.content());
    else
      on_control(header);
    used += decoder_.frame_size();
    decoder_.reset();
  }
  return used;
}

void host_session::on_request(const frame_header& header, std::string_view content) {
  if (header.request_id) last_id_ = header.request_id;
  const bool tagged = header.request_id && header.keep_alive;
  // A traceparent that is not valid is ignored, as W3C Trace Context says:
  // the request runs as if it carried none.
  request_info r{header.request_id, header.keep_alive, !tagged, false,
                 header.traceparent.empty() ? std::string_view()
                                            : detail::valid_traceparent(header.traceparent)};
  const bool first = first_request_;
  if (first_request_) {
    first_request_ = false;
    if (tagged && header.features) {
      features_ = *header.features & feature::all;
      r.announce = true;
    }
  }
  if (!header.keep_alive) reading_ = false;  // answered, then the connection closes

  auto prepared = driver_.prepare(header, content);
  if (auto* refused = std::get_if<encoded_response>(&prepared)) {
    if (refused->error == errc::unauthorized) {
      log(log_level::warn, "host: refused " + peer_.to_string() + ": " + refused->content);
      reading_ = false;
      r.keep_alive = false;
      r.announce = false;
      features_ = 0;
    }
    // The host began to stop after this connection last looked: it drains
    // now, so that this answer and those after it say the connection closes.
    if (refused->error == errc::shutting_down) begin_drain();
    return refuse(r, *refused);
  }
  const bool served_in_drain = draining_ && first && limits_.serve_first_in_drain && !retired_;
  if (draining_ && !served_in_drain) {
    refuse(r, error_response(errc::shutting_down,
                             stopping_ ? "the host is shutting down; try again later"
                                       : "this connection reached the host's max_connection_age "
                                         "and closes; the request did not run: send it again on "
                                         "a new connection"));
    // The stop came before the peer said what it speaks: the notice
    // follows the answer that tells it (it may have written more behind).
    if (r.announce) notice_going_away();
    return;
  }
  // Its first request runs: the notice follows it, naming it.
  if (served_in_drain && r.announce) notice_going_away();
  if (header.stream != stream_part::none)
    return on_stream_request(header, r, std::get<request_message>(prepared));
  const bool fits = in_flight_ == 0 || (in_flight_ < limits_.max_in_flight &&
                                        in_flight_bytes_ + content.size() <= limits_.max_in_flight_bytes);
  if (!fits) return refuse(r, error_response(errc::busy, busy_message()));

  auto& request = std::get<request_message>(prepared);
  const handle h = take_slot();
  slot& s = slots_[h];
  s.status = r.ordered ? state::queued : state::running;
  s.ordered = r.ordered;
  s.keep_alive = r.keep_alive;
  s.announce = r.announce;
  s.id = r.id;
  s.bytes = content.size();
  ++in_flight_;
  in_flight_bytes_ += s.bytes;
  if (r.ordered) {
    const bool next = ordered_.empty() && !advancing_;
    ordered_.push_back(h);
    if (!next) {
      s.request.emplace(std::move(request));  // runs once those before it are answered
      if (!r.traceparent.empty()) s.traceparent = r.traceparent;
      return;
    }
    // Its turn already: run from here, without parking the request.
    s.status = state::running;
    advancing_ = true;
    driver_.run(h, request, r.id, true, r.traceparent);
    advancing_ = false;
    return advance_ordered();
  }
  const std::uint64_t id = *r.id;
  if (by_id_.empty() || by_id_.back().first <= id)
    by_id_.emplace_back(id, h);
  else
    by_id_.insert(std::upper_bound(by_id_.begin(), by_id_.end(), std::make_pair(id, no_handle)),
                  {id, h});
  driver_.run(h, request, r.id, false, r.traceparent);
}

void host_session::on_control(const frame_header& header) {
  if (header.kind == frame_kind::credit) return on_credit(header);
  if (header.kind != frame_kind::cancel) {
    log(log_level::info, "host: " + peer_.to_string() +
                             " sent a control frame this host does not take; ignored");
    return;
  }
  if (!header.request_id) {
    log(log_level::debug, "host: " + peer_.to_string() + " sent a cancel without a request-id; ignored");
    return;
  }
  if (const auto stream = stream_of(*header.request_id)) {
    slots_[*stream].ended = true;  // not even its end is written
    forget_stream_id(*stream);
    return driver_.cancel_stream(*stream);
  }
  const auto it = std::lower_bound(by_id_.begin(), by_id_.end(),
                                   std::make_pair(*header.request_id, handle{0}));
  if (it == by_id_.end() || it->first != *header.request_id) {
    log(log_level::debug, "host: " + peer_.to_string() + " cancelled request " +
                              std::to_string(*header.request_id) + ", which is not running; ignored");
    return;
  }
  const handle h = it->second;
  by_id_.erase(it);
  slot& s = slots_[h];
  leave_window(s);
  s.status = state::cancelled;
  driver_.cancel(h);
}

void host_session::answered(handle h, const encoded_response& response) {
  slot& s = slots_[h];
  if (s.status == state::cancelled || shut_) {
    if (s.status == state::running) leave_window(s);
    if (s.ordered) ordered_.erase_if([h](handle e) { return e == h; });
    if (!s.ordered && s.status == state::running) std::erase_if(by_id_, [h](const auto& e) { return e.second == h; });
    return release(h);
  }
  leave_window(s);
  const request_info r{s.id, s.keep_alive, s.ordered, s.announce};
  driver_.responded(h, response);
  if (!s.ordered) {
    // A handler answered from run() is the last one indexed: no search.
    if (!by_id_.empty() && by_id_.back().second == h) {
      by_id_.pop_back();
    } else {
      auto [first, last] = std::equal_range(by_id_.begin(), by_id_.end(), std::make_pair(*s.id, h),
                                            [](const auto& a, const auto& b) { return a.first < b.first; });
      by_id_.erase(std::find_if(first, last, [h](const auto& e) { return e.second == h; }));
    }
    append_answer(out_.pending(), r, response.content);
    return release(h);
  }
  // An ordered request runs only once those before it are answered: it is the front.
  append_answer(out_.pending(), r, response.content);
  s.status = state::written;
  advance_ordered();
}

void host_session::refuse(const request_info& r, const encoded_response& response) {
  driver_.responded(no_handle, response);
  if (!r.ordered || ordered_.empty()) return append_answer(out_.pending(), r, response.content);
  const handle h = take_slot();
  slot& s = slots_[h];
  s.status = state::held;
  s.ordered = true;
  append_answer(s.frame, r, response.content);
  held_bytes_ += s.frame.size();
  ordered_.push_back(h);
}

void host_session::append_answer(std::string& out, const request_info& r,
                                 std::string_view content) const {
  frame_header h;
  h.keep_alive = r.keep_alive && !draining_;
  h.request_id = r.id;
  if (r.announce) {
    h.features = features_;
    h.window = limits_.max_in_flight;
    h.window_bytes = limits_.max_in_flight_bytes;
  }
  append_frame(out, h, content);
}

// Writes the ordered answers that are next in turn and starts the next
// ordered request; run() may answer at once, which this loop then writes.
void host_session::advance_ordered() {
  if (advancing_) return;
  advancing_ = true;
  while (!ordered_.empty()) {
    const handle h = ordered_.front();
    slot& s = slots_[h];
    if (s.status == state::running) break;
    if (s.status == state::queued) {
      s.status = state::running;
      driver_.run(h, *s.request, s.id, true, s.traceparent);
      continue;
    }
    if (s.status == state::held) {
      out_.pending() += s.frame;
      held_bytes_ -= s.frame.size();
    }
    ordered_.pop_front();
    release(h);
  }
  advancing_ = false;
}

void host_session::retire() {
  if (draining_) return;
  draining_ = true;
  retired_ = true;
  notice_going_away();
}

void host_session::begin_drain() {
  if (stopping_) return;
  stopping_ = true;
  draining_ = true;
  // Every open stream ends with shutting_down, before the notice; its
  // handler is cancelled and finishes (stream_finished) when it can.
  const auto streams = stream_ids_;  // cancel_stream() may finish one at once
  for (const auto& [id, h] : streams) {
    stream_end(h, error_response(errc::shutting_down, "the host is shutting down"));
    driver_.cancel_stream(h);
  }
  // Ordered requests still waiting for the ones before them are not started
  // any more: answered shutting_down in their turn, as if read after the stop.
  for (const handle h : ordered_) {
    slot& s = slots_[h];
    if (s.status != state::queued) continue;
    leave_window(s);
    s.status = state::held;
    s.request.reset();
    const auto refusal = error_response(errc::shutting_down, "the host is shutting down; try again later");
    driver_.responded(no_handle, refusal);
    append_answer(s.frame, {s.id, s.keep_alive, true, s.announce}, refusal.content);
    held_bytes_ += s.frame.size();
  }
  notice_going_away();
}

void host_session::notice_going_away() {
  if (noticed_ || !(features_ & feature::going_away) || !reading()) return;
  frame_header h;
  h.keep_alive = true;
  h.kind = frame_kind::going_away;
  h.last_request_id = last_id_;
  append_frame(out_.pending(), h, {});
  noticed_ = true;
}

void host_session::shut() noexcept {
  shut_ = true;
  reading_ = false;
  out_.discard();
  // Requests that run no handler are forgotten; running ones end in answered().
  ordered_.erase_if([this](handle h) {
    if (slots_[h].status != state::queued && slots_[h].status != state::held) return false;
    if (slots_[h].status == state::queued) leave_window(slots_[h]);
    release(h);
    return true;
  });
  held_bytes_ = 0;
}

void host_session::write_failed() noexcept {
  out_.done();
  shut();
}

host_session::handle host_session::take_slot() {
  if (!free_.empty()) {
    const handle h = free_.back();
    free_.pop_back();
    return h;
  }
  slots_.emplace_back();
  return static_cast<handle>(slots_.size() - 1);
}

void host_session::release(handle h) {
  slot& s = slots_[h];
  s.status = state::free;
  s.id.reset();
  s.announce = false;
  s.request.reset();
  s.frame.clear();
  s.traceparent.clear();
  s.credit = 0;
  s.ended = false;
  free_.push_back(h);
}

std::size_t host_session::request_bytes(handle h) const noexcept {
  return h < slots_.size() ? slots_[h].bytes : 0;
}

void host_session::leave_window(slot& s) noexcept {
  --in_flight_;
  in_flight_bytes_ -= s.bytes;
  s.bytes = 0;
}

std::string host_session::busy_message() const {
  return "this connection's window is full (" + std::to_string(in_flight_) + " requests of " +
         std::to_string(in_flight_bytes_) + " content bytes in flight; the window is " +
         std::to_string(limits_.max_in_flight) + " requests and " +
         std::to_string(limits_.max_in_flight_bytes) +
         " bytes): the handler did not run, so the request is safe to send again";
}

// Streams (docs/protocol.md, "Streams and subscriptions"). A request that
// opens one is refused, as any request, with one ordinary answer; one that
// carries a part only the host sends ("begin", "item", "end", or a part
// this version does not know) is refused bad_request: it is a peer's
// mistake, and answering it says so instead of leaving the peer waiting.
void host_session::on_stream_request(const frame_header& header, const request_info& r,
                                     request_message& request) {
  std::string why;
  if (header.stream != stream_part::open && header.stream != stream_part::subscribe)
    why = header.stream == stream_part::unknown
              ? "this host does not know that \"stream\" value: a request opens a stream with "
                "\"open\" or \"subscribe\""
              : "\"stream\": \"" + std::string(stream_part_name(header.stream)) +
                    "\" is sent by hosts only: a request opens a stream with \"open\" or \"subscribe\"";
  else if (!r.id || !r.keep_alive)
    why = "a stream needs a tagged keep-alive request (\"request-id\" and \"keep-alive\": true)";
  else if (!(features_ & feature::stream))
    why = "this connection did not agree the \"stream\" feature: list it in the \"features\" of "
          "the connection's first request";
  else if (stream_of(*r.id))
    why = "request-id " + std::to_string(*r.id) + " is an open stream already";
  if (!why.empty()) return refuse(r, error_response(errc::bad_request, why));
  if (open_streams() >= limits_.max_streams)
    return refuse(r, error_response(errc::too_many_streams,
                                    "this connection has " + std::to_string(open_streams()) +
                                        " streams open, the host's max_streams: close one, or "
                                        "send again when one ended"));
  const bool subscribe = header.stream == stream_part::subscribe;
  if (auto refused = driver_.admit_stream(request, subscribe)) return refuse(r, *refused);

  const handle h = take_slot();
  slot& s = slots_[h];
  s.status = state::streaming;
  s.keep_alive = true;
  s.id = r.id;
  s.credit = std::min(header.credit.value_or(0), max_credit);
  s.ended = false;
  const std::uint64_t id = *r.id;
  if (stream_ids_.empty() || stream_ids_.back().first < id)
    stream_ids_.emplace_back(id, h);
  else
    stream_ids_.insert(std::lower_bound(stream_ids_.begin(), stream_ids_.end(),
                                        std::make_pair(id, handle{0})),
                       {id, h});
  // The begin is the request's answer: the first request's carries the
  // features and the window; a subscription's, the topic's sequence when
  // it registered.
  const auto sequence =
      subscribe ? driver_.run_stream(h, request, id, true, r.traceparent) : std::nullopt;
  frame_header begin;
  begin.sequence = sequence;
  begin.keep_alive = true;
  begin.request_id = r.id;
  begin.stream = stream_part::begin;
  if (r.announce) {
    begin.features = features_;
    begin.window = limits_.max_in_flight;
    begin.window_bytes = limits_.max_in_flight_bytes;
  }
  append_frame(out_.pending(), begin, {});
  if (!subscribe) driver_.run_stream(h, request, id, false, r.traceparent);
}

void host_session::on_credit(const frame_header& header) {
  const auto stream = header.request_id ? stream_of(*header.request_id) : std::nullopt;
  if (!stream || !header.credit) {
    log(log_level::debug, "host: " + peer_.to_string() +
                              " granted credit to a request that is not an open stream; ignored");
    return;
  }
  slot& s = slots_[*stream];
  if (*header.credit == 0) return;
  s.credit = *header.credit >= max_credit - s.credit ? max_credit : s.credit + *header.credit;
  driver_.credited(*stream);
}

std::optional<host_session::handle> host_session::stream_of(std::uint64_t id) const {
  const auto it = std::lower_bound(stream_ids_.begin(), stream_ids_.end(), std::make_pair(id, handle{0}));
  if (it == stream_ids_.end() || it->first != id) return std::nullopt;
  return it->second;
}

void host_session::forget_stream_id(handle h) {
  const auto it = std::find_if(stream_ids_.begin(), stream_ids_.end(),
                               [h](const auto& e) { return e.second == h; });
  if (it == stream_ids_.end()) return;
  stream_ids_.erase(it);
  ++streams_ending_;
}

bool host_session::stream_live(handle h) const noexcept {
  return !shut_ && h < slots_.size() && slots_[h].status == state::streaming && !slots_[h].ended;
}

std::uint64_t host_session::stream_credit(handle h) const noexcept {
  return stream_live(h) ? slots_[h].credit : 0;
}

void host_session::append_stream_frame(handle h, stream_part part, std::string_view content,
                                       std::optional<std::uint64_t> sequence) {
  frame_header f;
  f.keep_alive = true;
  f.request_id = slots_[h].id;
  f.stream = part;
  f.sequence = sequence;
  append_frame(out_.pending(), f, content);
}

void host_session::stream_item(handle h, std::string_view content,
                               std::optional<std::uint64_t> sequence) {
  if (!stream_live(h) || slots_[h].credit == 0) return;
  --slots_[h].credit;
  append_stream_frame(h, stream_part::item, content, sequence);
}

void host_session::stream_end(handle h, const std::optional<encoded_response>& error) {
  slot& s = slots_[h];
  if (s.status != state::streaming || s.ended) return;
  s.ended = true;
  forget_stream_id(h);
  if (shut_) return;
  append_stream_frame(h, stream_part::end, error ? std::string_view(error->content) : std::string_view(),
                      std::nullopt);
  driver_.responded(h, error ? *error : encoded_response{});
}

void host_session::stream_finished(handle h, const std::optional<encoded_response>& error) {
  if (h >= slots_.size() || slots_[h].status != state::streaming) return;
  stream_end(h, error);
  --streams_ending_;
  release(h);
}

}  // namespace comet
