#include "peer.hpp"

#include "happy_eyeballs.hpp"

#include <comet/log.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <vector>

namespace comet {
namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string in_ms(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }
}  // namespace

bool was_cancelled(const asio::cancellation_state& state) noexcept {
  return (state.cancelled() & (asio::cancellation_type::terminal |
                               asio::cancellation_type::partial)) != asio::cancellation_type::none;
}

asio::awaitable<void> peer_info::connect(transport& t) const {
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  boost::system::error_code ec;
  std::vector<tcp::endpoint> addresses;
  if (target) {
    addresses.push_back(*target);
  } else {
    // A name's addresses may change: resolved for each connection, within
    // the connection's deadline.
    tcp::resolver resolver(t.socket().get_executor());
    t.also_on_close([&resolver] { resolver.cancel(); });
    auto [resolve_ec, results] =
        co_await resolver.async_resolve(peer.ip, std::to_string(peer.port), use_tuple);
    t.also_on_close({});
    if (was_cancelled(cancellation)) throw cancelled();
    if (resolve_ec || results.empty()) throw unresolved(resolve_ec, t.expired());
    for (const auto& entry : results)
      if (std::find(addresses.begin(), addresses.end(), entry.endpoint()) == addresses.end())
        addresses.push_back(entry.endpoint());
    addresses = interleave_families(addresses);
  }
  for (std::size_t attempt = 0;; ++attempt) {
    // One address is dialled alone; a name's several addresses race
    // (happy_eyeballs.hpp), and a retry re-runs the whole race.
    tcp::endpoint reached = addresses.front();
    if (addresses.size() == 1) {
      std::tie(ec) = co_await t.socket().async_connect(reached, use_tuple);
    } else {
      const std::string name = describe();
      const race_outcome outcome = co_await happy_eyeballs_connect(t, addresses, name);
      ec = outcome.ec;
      reached = outcome.reached;
    }
    if (!ec) {
      if (addresses.size() > 1)
        log(log_level::debug, "connected to " + describe() + " via " +
                                  endpoint{reached.address().to_string(), reached.port()}.to_string());
      break;
    }
    if (t.expired()) throw connect_timed_out();
    if (was_cancelled(cancellation)) throw cancelled();
    if (!retry_connect(ec, attempt)) throw offline(ec);
    log(log_level::debug, "connecting to " + describe() + ": " + ec.message() + "; retrying in " +
                              in_ms(retry_delay(attempt)));
    boost::system::error_code ignored;
    t.socket().close(ignored);  // the next connect opens it afresh
    asio::steady_timer backoff(t.socket().get_executor(), retry_delay(attempt));
    co_await backoff.async_wait(use_tuple);
    if (was_cancelled(cancellation)) throw cancelled();
    if (t.expired()) throw connect_timed_out();
  }
  boost::system::error_code ignored;
  t.socket().set_option(tcp::no_delay(true), ignored);
  if (!t.secure()) co_return;
  t.verify_peer_name(peer.ip);
  if (!peer.is_address()) SSL_set_tlsext_host_name(t.tls().native_handle(), peer.ip.c_str());
  sessions->offer(t);
  std::tie(ec) = co_await t.tls().async_handshake(asio::ssl::stream_base::client, use_tuple);
  if (!ec) co_return;
  if (t.expired()) throw tls_timed_out();
  if (was_cancelled(cancellation)) throw cancelled();
  throw tls_failed(ec);
}

std::string peer_info::describe() const {
  std::string where = peer.to_string();
  // An address of a client's endpoint list that a name resolved to.
  if (target && !peer.is_address()) where += " (" + target->address().to_string() + ")";
  return options.name.empty() ? where : options.name + " at " + where;
}

error peer_info::offline(const boost::system::error_code& ec) const {
  return error(errc::peer_offline,
               "cannot connect to " + describe() + ": " + ec.message() + "; is the host running?");
}

error peer_info::unresolved(const boost::system::error_code& ec, bool timed_out) const {
  return error(errc::unresolved,
               "cannot resolve the host name '" + peer.ip + "' of " + describe() + ": " +
                   (timed_out ? "no answer within " +
                                    in_ms(std::min(options.connect_timeout, options.request_timeout))
                              : ec ? ec.message() : std::string("no addresses")) +
                   "; check the name, or write the host's IP address");
}

error peer_info::connect_timed_out() const {
  return error(errc::connect_timeout,
               "cannot connect to " + describe() + ": no answer within " +
                   in_ms(std::min(options.connect_timeout, options.request_timeout)) +
                   "; is the host up and reachable?");
}

error peer_info::timed_out(std::chrono::milliseconds timeout) const {
  return error(errc::request_timeout, describe() + " did not answer within " + in_ms(timeout));
}

error peer_info::tls_failed(const boost::system::error_code& ec) const {
  return error(errc::tls_error,
               "TLS handshake with " + describe() + " failed: " + describe_tls_failure(ec));
}

error peer_info::tls_timed_out() const {
  return error(errc::tls_error,
               "TLS handshake with " + describe() + " did not finish within " +
                   in_ms(std::min(options.connect_timeout, options.request_timeout)) +
                   "; does the host use TLS?");
}

error peer_info::lost(const boost::system::error_code& ec, std::string_view doing) const {
  // What closes a connection unanswered: a host at max_connections, a stop
  // past shutdown_timeout, and, for a plain client only, a host using TLS.
  // A host that closes with the request unread resets the connection.
  const std::string causes =
      tls ? "the host's log says why: it may be at its max_connections limit, or stopping"
          : "the host's log says why: it may be at its max_connections limit, stopping, or "
            "expecting TLS, which this client does not use";
  // Hosts close TLS connections without close_notify (frames carry their
  // lengths): a truncated stream is an ordinary close.
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
    return error(errc::connection_closed,
                 describe() + " closed the connection before answering (" + causes + ")");
  if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe)
    return error(errc::connection_closed, describe() + " reset the connection while " +
                                              std::string(doing) + " (" + causes + ")");
  // With TLS 1.3 a host rejects a client certificate after the client's
  // handshake is done: the refusal arrives as an alert on the first read.
  if (ec.category() == asio::error::get_ssl_category())
    return error(errc::tls_error, "TLS with " + describe() + " failed while " +
                                      std::string(doing) + ": " + describe_tls_failure(ec));
  return error(errc::connection_closed, "lost the connection to " + describe() + " while " +
                                            std::string(doing) + ": " + ec.message());
}

error peer_info::cancelled() const {
  return error(errc::cancelled, "the send to " + describe() + " was cancelled");
}

error peer_info::queue_full(std::size_t limit) const {
  return error(errc::queue_full,
               "not sent to " + describe() + ": " + std::to_string(limit) +
                   " sends are waiting for a connection already (client_options::max_queued_sends); "
                   "it is safe to send again once fewer are in flight");
}

error peer_info::closed_meanwhile() const {
  return error(errc::cancelled,
               "the client to " + describe() + " was closed while this send was in flight");
}

error peer_info::client_closed() const {
  return error(errc::client_closed, "the client to " + describe() +
                                        " is closed (close() or async_close() was called); "
                                        "make a new client to send again");
}

bool peer_info::retry_connect(const boost::system::error_code& ec, std::size_t attempt) const {
  return ec == asio::error::connection_refused && attempt < options.connect_retries;
}

std::chrono::milliseconds peer_info::retry_delay(std::size_t attempt) {
  return std::chrono::milliseconds(50) * (1 << std::min<std::size_t>(attempt, 6));
}

json::value peer_info::result_of(const frame_header& header, std::string_view content) const {
  if (!header.is_json())
    throw error(errc::protocol_error, describe() + " answered with content-type '" +
                                          header.content_type + "', not text/json");
  response_message response = decode_response(content);
  if (response.error)
    throw error(*response.error,
                describe() + " answered " + response.error_code + ": " + response.error_message);
  return std::move(response.result);
}

}  // namespace comet
