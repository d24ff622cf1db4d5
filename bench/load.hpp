// The raw load generator: a hand-written Asio client on one thread (the
// calling one) that drives one of the four load modes against a server and
// measures it. Request frames are encoded once up front (only multiplexed
// requests are re-encoded, for their ids); answers are read into one buffer
// per connection and every complete frame in it is checked: the echoed value
// must equal what was sent, so a broken server cannot look fast.
//
// Latency is measured per request from the moment its write is started to
// the moment the read that completed its answer returned; for one-shot, from
// the start of the connect.
#pragma once

#include "scenario.hpp"

#include <boost/asio/ip/tcp.hpp>

namespace comet_bench {

// Runs `s.mode` with `s.connections`, `s.depth` and `s.payload` against
// `target` for timing.warmup + timing.duration, then lets answers in flight
// arrive for up to timing.drain and closes everything. Blocks the calling
// thread for that long; never throws for a network failure (it is an error
// in the result).
result run_raw_load(const scenario& s, const boost::asio::ip::tcp::endpoint& target,
                    const run_timing& timing);

}  // namespace comet_bench
