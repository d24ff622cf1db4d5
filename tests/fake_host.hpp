// A host written by hand for client tests (test_client_extensions.cpp,
// test_client_streams.cpp): a listener on 127.0.0.1 whose connections a
// test's own thread serves with raw frames, and frame readers that throw
// instead of REQUIRE (support.hpp's split does), for those threads.
#pragma once

#include "support.hpp"

#include <poll.h>

#include <stdexcept>
#include <string>

namespace comet::test {

struct fake_host {
  // `receive_buffer`: the accepted sockets' SO_RCVBUF (0: the system's).
  explicit fake_host(int receive_buffer = 0) : acceptor(io) {
    acceptor.open(tcp::v4());
    if (receive_buffer) acceptor.set_option(asio::socket_base::receive_buffer_size(receive_buffer));
    acceptor.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acceptor.listen();
    at = {"127.0.0.1", acceptor.local_endpoint().port()};
  }
  // The next connection, within 10 s.
  raw_peer next() {
    pollfd p{acceptor.native_handle(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) throw std::runtime_error("no client connected within 10 s");
    return raw_peer(acceptor.accept());
  }
  // Whether a client is connecting now (a connection waits to be accepted).
  bool connection_waiting() {
    pollfd p{acceptor.native_handle(), POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }

  asio::io_context io;
  tcp::acceptor acceptor;
  endpoint at;
};

// A frame's header, or an exception.
inline frame_header header_of(const std::string& frame) {
  std::string why;
  if (frame.size() < 2) throw std::runtime_error("no frame: the client closed");
  const std::size_t n = (static_cast<unsigned char>(frame[0]) << 8) |
                        static_cast<unsigned char>(frame[1]);
  const auto h = parse_frame_header(std::string_view(frame).substr(2, n), why);
  if (!h) throw std::runtime_error("a bad frame header: " + why);
  return *h;
}

inline std::uint64_t id_of(const std::string& frame) {
  const auto h = header_of(frame);
  if (!h.request_id) throw std::runtime_error("a frame without a request id");
  return *h.request_id;
}

}  // namespace comet::test
