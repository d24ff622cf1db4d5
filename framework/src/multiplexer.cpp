#include "multiplexer.hpp"

#include <algorithm>

namespace comet {

void multiplexer::connected() {
  if (state_ != state::connecting) return;
  state_ = peer_.support == peer_knowledge::keep_alive::yes ? state::open : state::probing;
}

bool multiplexer::accepts(std::size_t max_in_flight) const noexcept {
  if (write_failed_) return false;
  const bool ready = state_ == state::open ||
                     (state_ == state::connecting && peer_.support == peer_knowledge::keep_alive::yes);
  return ready && pending_.size() < max_in_flight;
}

void multiplexer::add(pooled_request& request, std::string_view content) {
  pending_.push_back({request.id, request.deadline, &request});
  request.content_size = content.size();
  frame_header h;
  h.keep_alive = true;
  h.request_id = request.id;
  h.auth_token = info_.options.auth_token;
  append_frame(out_.pending(), h, content);
}

std::string_view multiplexer::prepare_write() {
  if (write_failed_ ||
      (state_ != state::open && state_ != state::probing && state_ != state::closing))
    return {};
  return out_.begin();
}

void multiplexer::write_failed() noexcept {
  write_failed_ = true;
  out_.done();
  out_.discard();
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
    on_response(settled);
    decoder_.reset();
  }
  return used;
}

void multiplexer::on_response(settle_fn settled) {
  const frame_header& header = decoder_.header();
  pooled_request* request = nullptr;
  if (header.request_id) {
    auto it = std::find_if(pending_.begin(), pending_.end(),
                           [id = *header.request_id](const entry& e) { return e.id == id; });
    if (it != pending_.end()) {
      request = it->request;
      pending_.erase(it);
    }
  } else if (pending_.size() == 1) {  // a COMET host does not echo ids
    request = pending_.front().request;
    pending_.clear();
  }
  std::optional<json::value> result;
  std::optional<error> failure;
  try {
    result = info_.result_of(header, decoder_.content());
  } catch (const error& e) {
    failure = e;
  }
  if (header.keep_alive) {
    if (state_ == state::probing) {
      state_ = state::open;
      peer_.support = peer_knowledge::keep_alive::yes;
    }
  } else {
    // The peer closes after this answer. Only an ordinary answer says it
    // never keeps connections (a COMET host): a comet-net host also closes
    // after refusing a request (too_large, unauthorized).
    if (peer_.support == peer_knowledge::keep_alive::unknown && !failure)
      peer_.support = peer_knowledge::keep_alive::no;
    // A comet-net host reads nothing after a frame it refuses as too
    // large: the requests written after it never ran.
    if (failure && failure->code() == errc::too_large && header.request_id) {
      refused_id_ = header.request_id;
      if (request) peer_.refused_size = std::min(peer_.refused_size, request->content_size);
    }
    state_ = state::closing;
  }
  if (state_ == state::closing && pending_.empty()) state_ = state::closed;
  if (request) {
    request->result = std::move(result);
    request->failure = std::move(failure);
    settled(*request);
  }
}

bool multiplexer::abandon(const pooled_request& request) noexcept {
  for (auto& e : pending_)
    if (e.request == &request) {
      e.request = nullptr;
      return true;
    }
  return false;
}

bool multiplexer::only_abandoned() const noexcept {
  return std::all_of(pending_.begin(), pending_.end(), [](const entry& e) { return !e.request; });
}

multiplexer::time_point multiplexer::earliest_deadline() const noexcept {
  time_point earliest = time_point::max();
  for (const auto& e : pending_)
    if (e.request) earliest = std::min(earliest, e.deadline);
  return earliest;
}

multiplexer::time_point multiplexer::expire(time_point now, settle_fn settled) {
  time_point earliest = time_point::max();
  std::erase_if(pending_, [&](const entry& e) {
    if (e.deadline > now) {
      if (e.request) earliest = std::min(earliest, e.deadline);
      return false;
    }
    if (e.request) {
      e.request->failure = info_.timed_out(e.request->timeout);
      settled(*e.request);
    }
    return true;
  });
  if (state_ == state::closing && pending_.empty()) state_ = state::closed;
  return earliest;
}

void multiplexer::fail(const error& e, settle_fn settled) {
  state_ = state::closed;
  write_failed_ = true;
  auto listed = std::move(pending_);
  pending_.clear();
  for (const auto& entry : listed) {
    if (!entry.request) continue;
    // Written after the refused request, on this connection: never read.
    if (refused_id_ && entry.id > *refused_id_)
      entry.request->replay = true;
    else
      entry.request->failure = e;
    settled(*entry.request);
  }
}

}  // namespace comet
