#include <comet/errors.hpp>

#include <array>
#include <utility>

namespace comet {
namespace {

// Every code has a wire spelling: a host answers its own codes, and a
// handler that fails with a comet::error (a relay whose upstream is
// offline, say) is answered with that error's code.
constexpr std::array<std::pair<errc, std::string_view>, 28> wire_codes{{
    {errc::bad_request, "bad_request"},
    {errc::no_handler, "no_handler"},
    {errc::handler_failed, "handler_failed"},
    {errc::timeout, "timeout"},
    {errc::too_large, "too_large"},
    {errc::unauthorized, "unauthorized"},
    {errc::shutting_down, "shutting_down"},
    {errc::remote_error, "remote_error"},
    {errc::busy, "busy"},
    {errc::host_full, "host_full"},
    {errc::too_many_streams, "too_many_streams"},
    {errc::slow_consumer, "slow_consumer"},
    {errc::peer_offline, "peer_offline"},
    {errc::connect_timeout, "connect_timeout"},
    {errc::request_timeout, "request_timeout"},
    {errc::connection_closed, "connection_closed"},
    {errc::protocol_error, "protocol_error"},
    {errc::unknown_client, "unknown_client"},
    {errc::would_deadlock, "would_deadlock"},
    {errc::bind_failed, "bind_failed"},
    {errc::tls_error, "tls_error"},
    {errc::cancelled, "cancelled"},
    {errc::client_closed, "client_closed"},
    {errc::unresolved, "unresolved"},
    {errc::usage_error, "usage_error"},
    {errc::unread, "unread"},
    {errc::queue_full, "queue_full"},
    {errc::unsupported, "unsupported"},
}};

class comet_category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "comet"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::bad_request: return "the host could not read the request";
      case errc::no_handler: return "no handler answered the action";
      case errc::handler_failed: return "the handler failed";
      case errc::timeout: return "the handler ran past its deadline";
      case errc::too_large: return "the message is larger than the limit";
      case errc::unauthorized: return "the request was not authorized";
      case errc::shutting_down: return "the host is shutting down";
      case errc::remote_error: return "the host answered with an error";
      case errc::host_full: return "the host was at its connection limit; it did not read the request";
      case errc::too_many_streams: return "the connection had as many streams open as the host allows; it did not read the request";
      case errc::slow_consumer: return "the subscriber fell a whole queue behind the publisher";
      case errc::unsupported: return "the peer cannot do this";
      case errc::busy: return "the host's window for the connection was full; it did not read the request";
      case errc::peer_offline: return "the peer is offline";
      case errc::connect_timeout: return "connecting to the peer timed out";
      case errc::request_timeout: return "the request timed out";
      case errc::connection_closed: return "the peer closed the connection before answering";
      case errc::protocol_error: return "the peer broke the protocol";
      case errc::unknown_client: return "no client of that name";
      case errc::would_deadlock: return "the call would deadlock";
      case errc::bind_failed: return "cannot listen on the address";
      case errc::tls_error: return "TLS failed";
      case errc::cancelled: return "the send was cancelled";
      case errc::client_closed: return "the client is closed";
      case errc::unresolved: return "the host name does not resolve";
      case errc::usage_error: return "the call is not allowed here";
      case errc::unread: return "the host never read the request";
      case errc::queue_full: return "too many sends are waiting for a connection";
    }
    return "unknown comet error";
  }
};

}  // namespace

bool error::safe_to_retry() const noexcept {
  if (code_.category() != error_category()) return false;
  switch (static_cast<errc>(code_.value())) {
    case errc::busy:
    case errc::host_full:
    case errc::too_many_streams:
    case errc::shutting_down:
    case errc::unread:
    case errc::queue_full:
    case errc::peer_offline:
    case errc::connect_timeout:
    case errc::unresolved: return true;
    default: return false;
  }
}

const std::error_category& error_category() noexcept {
  static const comet_category category;
  return category;
}

std::string_view wire_name(errc e) noexcept {
  for (const auto& [code, name] : wire_codes)
    if (code == e) return name;
  return {};
}

errc errc_from_wire(std::string_view code) noexcept {
  for (const auto& [value, name] : wire_codes)
    if (name == code) return value;
  return errc::remote_error;
}

}  // namespace comet
