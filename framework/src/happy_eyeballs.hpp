// Internal: connecting to one of a host name's addresses as RFC 8305
// ("Happy Eyeballs v2") says, so that one silent address (an IPv6 route
// that drops packets, a machine down on one of its addresses) does not use
// up a client's whole connect_timeout. peer_info::connect uses it for a
// name that resolves to more than one address; an address given literally
// is dialled alone.
//
// Attempts start in the order given (interleave_families() first), each
// `stagger` (250 ms, RFC 8305's recommended delay) after the previous one
// began, or at once when every attempt started so far has failed. The
// first to connect wins; the others are closed. A round that fails as a
// whole is what connect_retries retries.
#pragma once

#include "transport.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <string>
#include <vector>

namespace comet {

// The same addresses, the families alternating as RFC 8305 section 4 says:
// the first address's family first, then the other's first, and so on,
// each family keeping the resolver's order.
std::vector<asio::ip::tcp::endpoint> interleave_families(
    const std::vector<asio::ip::tcp::endpoint>& addresses);

struct race_outcome {
  // Empty when connected. Otherwise connection_refused if any address
  // refused (a host that is starting: worth a retry), else the error of the
  // attempt that failed last; operation_aborted when `t` was closed (its
  // expiry, or the client's close) or the caller cancelled.
  boost::system::error_code ec;
  asio::ip::tcp::endpoint reached;  // the winner's address, when connected
};

// Connects t.socket() (closed at the call) to one of `addresses` (not
// empty), racing them as above; `peer` names the peer in debug log lines
// ("Lab at lab-pc:65432: trying 10.0.0.7:65432 (address 2 of 3)").
// Completes when one attempt connects (t.socket() is then that connection),
// when every attempt has failed, or when `t` closes: t.close() and t's
// expiry end the race through t.also_on_close (which this sets, and clears
// on completion). Signature race_outcome.
// Cancellation: the calling coroutine's terminal and partial cancellation
// (through its cancellation state, as was_cancelled checks) closes every
// attempt and completes with operation_aborted.
// Outlives: `t` must outlive the operation; `addresses` and `peer` are
// copied. Once it
// completes no attempt is open; a closed attempt's late completion touches
// only state the attempts share with the race, never `t`.
asio::awaitable<race_outcome> happy_eyeballs_connect(
    transport& t, const std::vector<asio::ip::tcp::endpoint>& addresses, const std::string& peer,
    std::chrono::milliseconds stagger = std::chrono::milliseconds(250));

}  // namespace comet
