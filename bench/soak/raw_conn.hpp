// A raw TCP connection for hostile peers: bytes in, bytes out, with every
// wait bounded by one deadline. It must be used from a coroutine running on
// the serial executor (a strand) it was made with.
#pragma once

#include "soak.hpp"

#include <comet/codec.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <memory>

namespace comet_soak {

class raw_conn {
 public:
  raw_conn(asio::any_io_executor serial, clock_type::time_point deadline);
  raw_conn(const raw_conn&) = delete;
  raw_conn& operator=(const raw_conn&) = delete;
  ~raw_conn();

  asio::awaitable<boost::system::error_code> connect(const comet::endpoint& to);
  asio::awaitable<boost::system::error_code> write(std::string_view bytes);
  // Like write, but gives up when the peer has not taken every byte within
  // `patience`: true when written, false when blocked (or failed).
  asio::awaitable<bool> write_within(std::string_view bytes, std::chrono::milliseconds patience);

  struct frame {
    comet::frame_header header;
    std::string content;
  };
  // The next whole frame; nullopt with the reason when none arrives.
  asio::awaitable<std::optional<frame>> read_frame(std::string& why_not);

  // Reads until the peer closes or the deadline passes.
  struct ending {
    std::size_t bytes = 0;          // received before the end, unread frames included
    boost::system::error_code ec;  // eof or connection_reset when closed; timed_out
  };
  asio::awaitable<ending> read_to_end();

  void half_close();
  void close();
  // Closes with a TCP reset (SO_LINGER 0), as a killed peer would.
  void reset();

 private:
  struct state;
  boost::system::error_code outcome(boost::system::error_code ec) const;
  std::shared_ptr<state> st_;
  std::string in_;
  std::size_t filled_ = 0;
};

}  // namespace comet_soak
