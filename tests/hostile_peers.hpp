// Shared by the hostile-peer tests (test_hostile*.cpp): a host that echoes,
// and the checks each case ends with.
#pragma once

#include <comet/host.hpp>

#include "support.hpp"

#include <string>
#include <string_view>

namespace comet::test {

inline constexpr auto peer_timeout = 3s;

struct echo_host : host_fixture {
  explicit echo_host(host_options o = loopback()) : host_fixture(2, std::move(o)) {
    server.on("echo", [](const std::string&, const json::value& v) { return v; });
    start();
  }
};

inline response_message answer_of(const std::string& frame) {
  REQUIRE_FALSE(frame.empty());
  return decode_response(split(frame).content);
}

// Another client gets its answer, and the host holds no connection it was
// given before (so nothing hostile leaked).
inline void require_alive(echo_host& f) {
  {
    raw_peer p(f.at, peer_timeout);
    p.write(request_frame("echo", "alive"));
    auto r = answer_of(p.read_frame());
    REQUIRE_FALSE(r.error);
    REQUIRE(r.result == "alive");
  }
  REQUIRE(wait_until([&] { return f.server.stats().connections_open == 0; }));
}

// The host closed the connection (FIN or reset) without writing anything.
inline bool closed_without_answer(raw_peer& p) {
  boost::system::error_code ended_by;
  const std::string got = p.read_to_eof(ended_by);
  INFO("received " << got.size() << " bytes; the read ended with: " << ended_by.message());
  return got.empty() && (ended_by == asio::error::eof || ended_by == asio::error::connection_reset);
}

// Sends `bytes` and half-closes, so a host waiting for more sees EOF. The host
// may drop the connection before everything is written; that is fine here.
inline void send_and_half_close(raw_peer& p, std::string_view bytes) {
  boost::system::error_code ignored;
  p.write(bytes, ignored);
  p.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

inline void require_error_answer(raw_peer& p, errc expected) {
  auto r = answer_of(p.read_frame());
  REQUIRE(r.error);
  CHECK(*r.error == expected);
  CHECK(p.closed_by_peer());
}

}  // namespace comet::test
