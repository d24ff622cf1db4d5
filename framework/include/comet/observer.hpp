// Hooks for a program's own telemetry (OpenTelemetry, a log, a registry):
// an observer set in host_options or client_options is told of every
// request answered or sent, and of every stream and subscription as it
// opens and ends (docs/observability.md, "Hooks").
//
// It is called on the io thread that finished the work, inline: it must be
// quick and must not block (hand anything slow to another executor). The
// events' views are valid only during the call. An exception it throws is
// caught and logged; the request is not affected. Without an observer
// nothing is called and nothing is gathered for one.
#pragma once

#include <comet/endpoint.hpp>
#include <comet/errors.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace comet {

// One request: on a host, once it is answered; on a client, once a send
// completes (after every endpoint it was sent to).
struct request_event {
  std::string_view action;
  // A host: the peer that sent it. A client: the endpoint that answered
  // (or the last one tried).
  const endpoint& peer;
  // nullopt: answered with a result; else the code it failed with (the
  // host's answer, or the client's own: peer_offline, request_timeout...).
  std::optional<errc> error;
  // A host: from the request's arrival to its answer. A client: the whole
  // send, its connect, queueing and retries included.
  std::chrono::nanoseconds duration;
  // The request's and the answer's content, in bytes (the JSON after the
  // header); 0 for an answer that never came.
  std::size_t request_bytes = 0;
  std::size_t answer_bytes = 0;
  // The request's W3C traceparent, empty when it had none.
  std::string_view traceparent;
};

enum class stream_kind { stream, subscription };

// A stream (open_stream / on_stream) or a subscription.
struct stream_event {
  stream_kind kind = stream_kind::stream;
  std::string_view name;  // the stream's action, or the topic
  const endpoint& peer;   // as in request_event
  // At the end: nullopt when it ended normally (the writer's end), else
  // the code that ended it (cancelled when the reader closed it). At the
  // open: nullopt.
  std::optional<errc> error;
  // At the end: how long it was open. At the open: zero.
  std::chrono::nanoseconds duration{0};
  std::string_view traceparent;
};

class observer {
 public:
  virtual ~observer() = default;
  virtual void request_done(const request_event&) {}
  virtual void stream_opened(const stream_event&) {}
  virtual void stream_ended(const stream_event&) {}
};

}  // namespace comet
