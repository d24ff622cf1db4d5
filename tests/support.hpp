// Test helpers: run a coroutine with a time limit, and a blocking raw-socket
// peer for byte-level checks and fault injection. Everything is bounded in
// time, so a hung test fails instead of hanging CI.
#pragma once

#include <comet/comet.hpp>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <future>
#include <iterator>
#include <string>

namespace comet::test {

namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

// Runs `make()` (a callable returning an awaitable) on `ex` and waits for it.
template <class F>
auto run(asio::any_io_executor ex, F make, std::chrono::milliseconds limit = 20s) {
  auto done = asio::co_spawn(ex, std::move(make), asio::use_future);
  if (done.wait_for(limit) != std::future_status::ready) FAIL("coroutine did not finish in time");
  return done.get();
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string vector_file(const std::string& name) {
  return read_file(std::string(COMET_VECTORS_DIR) + "/" + name);
}

// The vectors' index.json, parsed once (a reference, so range-for over its
// array is safe).
inline const json::value& vector_index() {
  static const json::value index = json::parse(vector_file("index.json"));
  return index;
}

// A blocking TCP peer with receive/send timeouts, driven from the test thread.
class raw_peer {
 public:
  explicit raw_peer(const endpoint& to, std::chrono::seconds timeout = 10s) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address(to.ip), to.port));
    set_timeouts(timeout);
  }
  explicit raw_peer(tcp::socket&& s) : socket_(std::move(s)) { set_timeouts(10s); }

  void write(std::string_view bytes) { asio::write(socket_, asio::buffer(bytes)); }

  // Reads until the peer closes (or the timeout fails the read).
  std::string read_to_eof() {
    std::string out;
    boost::system::error_code ec;
    asio::read(socket_, asio::dynamic_buffer(out), ec);
    return out;
  }

  // Reads exactly one frame; empty when the peer closed first.
  std::string read_frame() {
    std::string out(2, '\0');
    boost::system::error_code ec;
    asio::read(socket_, asio::buffer(out), ec);
    if (ec) return {};
    const std::size_t header = (static_cast<unsigned char>(out[0]) << 8) |
                               static_cast<unsigned char>(out[1]);
    out.resize(2 + header);
    asio::read(socket_, asio::buffer(out.data() + 2, header), ec);
    if (ec) return {};
    auto h = json::parse(std::string_view(out).substr(2));
    const auto length = static_cast<std::size_t>(h.at("content-length").to_number<std::uint64_t>());
    out.resize(2 + header + length);
    asio::read(socket_, asio::buffer(out.data() + 2 + header, length), ec);
    if (ec) return {};
    return out;
  }

  // True when the peer has closed: a read returns EOF (or reset).
  bool closed_by_peer() {
    char c;
    boost::system::error_code ec;
    socket_.read_some(asio::buffer(&c, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  tcp::socket& socket() { return socket_; }

 private:
  void set_timeouts(std::chrono::seconds t) {
    timeval tv{static_cast<time_t>(t.count()), 0};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  asio::io_context io_;
  tcp::socket socket_;
};

// Splits a whole frame into its JSON header and content.
struct split_frame {
  json::object header;
  std::string content;
};
inline split_frame split(const std::string& frame) {
  REQUIRE(frame.size() >= 2);
  const std::size_t n = (static_cast<unsigned char>(frame[0]) << 8) |
                        static_cast<unsigned char>(frame[1]);
  REQUIRE(frame.size() >= 2 + n);
  return {json::parse(std::string_view(frame).substr(2, n)).as_object(), frame.substr(2 + n)};
}

// A request frame as COMET's client writes it, with optional extensions.
inline std::string request_frame(std::string_view action, const json::value& value,
                                 bool keep_alive = false) {
  frame_header h;
  h.keep_alive = keep_alive;
  return encode_frame(h, encode_request(action, value));
}

// An io_pool and a started host on 127.0.0.1 with an ephemeral port.
struct host_fixture {
  explicit host_fixture(std::size_t threads = 2, host_options options = loopback())
      : pool(threads), server(pool.get_executor(), std::move(options)) {}

  static host_options loopback() {
    host_options o;
    o.listen = {"127.0.0.1", 0};
    return o;
  }

  endpoint start() { return at = server.start(); }

  client make_client(client_options options = {}) { return client(pool.get_executor(), at, options); }

  io_pool pool;
  host server;
  endpoint at;
};

}  // namespace comet::test
