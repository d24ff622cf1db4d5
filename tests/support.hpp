// Test helpers: run a coroutine with a time limit, and a blocking raw-socket
// peer for byte-level checks and fault injection. Everything is bounded in
// time, so a hung test fails instead of hanging CI.
#pragma once

#include <comet/comet.hpp>

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

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

// Polls `done` until it holds or `limit` passes; returns whether it held.
// For what a test observes asynchronously (a counter, a log line, a closed
// socket): `REQUIRE(wait_until([&] { return stats().x == 3; }))`.
template <class F>
bool wait_until(F done, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
}

// A loopback port nothing listens on (bound for a moment, then released).
inline std::uint16_t unused_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// Sends `value` to `action` until a send is answered, and returns the
// answer (nullopt past `limit`): a client that found its peer down fails
// sends at once with peer_offline until its backoff has passed. Any other
// failure is the test's.
template <class Client>
std::optional<json::value> send_until_up(const Client& c, std::string action, const json::value& value,
                                         std::chrono::milliseconds limit = 20s) {
  std::optional<json::value> answer;
  wait_until([&] {
    try {
      answer = c.send_sync(action, value);
    } catch (const comet::error& failure) {
      if (failure.code() != errc::peer_offline) throw;
    }
    return answer.has_value();
  }, limit);
  return answer;
}

// The comet::error that `f` throws; fails the test if it throws none.
template <class F>
comet::error error_thrown_by(F&& f) {
  try {
    f();
  } catch (const comet::error& e) {
    return e;
  }
  FAIL("expected a comet::error");
  throw std::logic_error("unreachable");
}

// Collects the library's log lines while it lives (instead of stderr), at
// `level` and above; then restores the stderr sink and the previous level.
class log_capture {
 public:
  struct line {
    log_level level;
    std::string text;
  };

  explicit log_capture(log_level level = log_level::info) : previous_(get_log_level()) {
    set_log_level(level);
    set_log_sink([this](log_level l, std::string_view text) {
      std::lock_guard lock(mutex_);
      lines_.push_back({l, std::string(text)});
    });
  }
  log_capture(const log_capture&) = delete;
  log_capture& operator=(const log_capture&) = delete;
  ~log_capture() {
    set_log_sink({});  // waits for a call in progress: `this` is not used after it
    set_log_level(previous_);
  }

  std::vector<line> lines() const {
    std::lock_guard lock(mutex_);
    return lines_;
  }
  bool contains(std::string_view text) const {
    std::lock_guard lock(mutex_);
    for (const auto& l : lines_)
      if (l.text.find(text) != std::string::npos) return true;
    return false;
  }
  // Waits (generously) for a line containing `text`.
  bool wait_for(std::string_view text, std::chrono::milliseconds limit = 10s) const {
    return wait_until([&] { return contains(text); }, limit);
  }

 private:
  log_level previous_;
  mutable std::mutex mutex_;
  std::vector<line> lines_;
};

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
// It waits with its own poll(): Asio's blocking reads and writes retry after
// SO_RCVTIMEO/SO_SNDTIMEO with an unbounded poll, so they would hang instead
// of failing when the host misbehaves.
class raw_peer {
 public:
  explicit raw_peer(const endpoint& to, std::chrono::milliseconds timeout = 10s)
      : socket_(io_), timeout_(timeout) {
    socket_.connect(tcp::endpoint(asio::ip::make_address(to.ip), to.port));
    set_timeouts();
  }
  explicit raw_peer(tcp::socket&& s) : socket_(std::move(s)) { set_timeouts(); }

  void write(std::string_view bytes) {
    boost::system::error_code ec;
    write(bytes, ec);
    if (ec) throw boost::system::system_error(ec, "raw_peer::write");
  }
  // For peers the host may drop while they are still writing. Returns how
  // many bytes were written (all of them unless `ec` is set).
  std::size_t write(std::string_view bytes, boost::system::error_code& ec) {
    std::size_t written = 0;
    while (written < bytes.size()) {
      const std::size_t n = transfer_some(POLLOUT, const_cast<char*>(bytes.data() + written),
                                          bytes.size() - written, ec);
      if (ec) break;
      written += n;
    }
    return written;
  }

  // Reads until the peer closes (or the timeout fails the read).
  std::string read_to_eof() {
    boost::system::error_code ended_by;
    return read_to_eof(ended_by);
  }
  // `ended_by` says how: eof or connection_reset when the peer closed,
  // timed_out when it did not within the timeout.
  std::string read_to_eof(boost::system::error_code& ended_by) {
    std::string out;
    char chunk[4096];
    for (;;) {
      const std::size_t n = transfer_some(POLLIN, chunk, sizeof chunk, ended_by);
      if (ended_by) return out;
      out.append(chunk, n);
    }
  }

  // Reads exactly one frame; empty when the peer closed first.
  std::string read_frame() {
    std::string out(2, '\0');
    if (!read_exactly(out.data(), 2)) return {};
    const std::size_t header = (static_cast<unsigned char>(out[0]) << 8) |
                               static_cast<unsigned char>(out[1]);
    out.resize(2 + header);
    if (!read_exactly(out.data() + 2, header)) return {};
    auto h = json::parse(std::string_view(out).substr(2));
    const auto length = static_cast<std::size_t>(h.at("content-length").to_number<std::uint64_t>());
    out.resize(2 + header + length);
    if (!read_exactly(out.data() + 2 + header, length)) return {};
    return out;
  }

  // True when the peer has closed: a read returns EOF (or reset).
  bool closed_by_peer() {
    char c;
    boost::system::error_code ec;
    transfer_some(POLLIN, &c, 1, ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  // Closes with a TCP reset (SO_LINGER 0), as a crashed or killed peer would.
  void reset() {
    socket_.set_option(asio::socket_base::linger(true, 0));
    socket_.close();
  }

  tcp::socket& socket() { return socket_; }

 private:
  void set_timeouts() {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count();
    timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }

  // One recv or send once the socket is ready, or timed_out.
  std::size_t transfer_some(short direction, char* data, std::size_t size,
                            boost::system::error_code& ec) {
    pollfd p{socket_.native_handle(), direction, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(timeout_.count()));
    if (ready == 0) {
      ec = asio::error::timed_out;
      return 0;
    }
    const ssize_t n = ready < 0 ? -1
                      : direction == POLLIN ? ::recv(p.fd, data, size, 0)
                                            : ::send(p.fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      ec.assign(errno, boost::system::system_category());
      return 0;
    }
    if (n == 0 && direction == POLLIN) {
      ec = asio::error::eof;
      return 0;
    }
    ec = {};
    return static_cast<std::size_t>(n);
  }

  bool read_exactly(char* data, std::size_t size) {
    boost::system::error_code ec;
    while (size != 0) {
      const std::size_t n = transfer_some(POLLIN, data, size, ec);
      if (ec) return false;
      data += n;
      size -= n;
    }
    return true;
  }

  asio::io_context io_;
  tcp::socket socket_;
  std::chrono::milliseconds timeout_ = 10s;
};

// A TCP peer on 127.0.0.1 that is not a comet host: it reads each request
// frame and answers `reply` (any bytes), then closes. Serves on its own
// thread until destroyed.
class scripted_peer {
 public:
  explicit scripted_peer(std::string reply)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        at_{"127.0.0.1", acceptor_.local_endpoint().port()},
        reply_(std::move(reply)),
        thread_([this] { serve(); }) {}
  scripted_peer(const scripted_peer&) = delete;
  scripted_peer& operator=(const scripted_peer&) = delete;
  ~scripted_peer() {
    done_ = true;
    thread_.join();
  }

  const endpoint& at() const { return at_; }
  // Requests read and answered so far.
  int answered() const { return answered_; }

 private:
  void serve() {
    while (!done_) {
      pollfd p{acceptor_.native_handle(), POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;  // wakes to notice done_
      boost::system::error_code ec;
      tcp::socket s(io_);
      acceptor_.accept(s, ec);
      if (ec) continue;
      try {
        raw_peer peer(std::move(s));
        if (peer.read_frame().empty()) continue;
        peer.write(reply_, ec);
        ++answered_;
      } catch (const std::exception&) {
        // Not a request frame: a failing test says so, not this thread.
      }
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  endpoint at_;
  std::string reply_;
  std::atomic<bool> done_{false};
  std::atomic<int> answered_{0};
  std::thread thread_;  // last: starts once the rest is ready
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

// A keep-alive request frame tagged with request-id `id` (and, on a
// connection's first request, the features it announces).
inline std::string tagged(std::uint64_t id, std::string_view action, const json::value& v,
                          std::optional<std::uint32_t> features = std::nullopt) {
  frame_header h;
  h.keep_alive = true;
  h.request_id = id;
  h.features = features;
  return encode_frame(h, encode_request(action, v));
}

// A coroutine handler ("hold") that keeps each request until `release` is
// set (looked at every 5 ms, 10 s at most), then answers its value; `runs`
// counts the requests it took. Declare it before the host that uses it.
struct held_requests {
  std::atomic<int> runs{0};
  std::atomic<bool> release{false};
  void add_to(host& h) {
    h.on("hold", [this](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
      ++runs;
      asio::steady_timer t(co_await asio::this_coro::executor);
      for (int i = 0; !release && i < 2000; ++i) {
        t.expires_after(std::chrono::milliseconds(5));
        co_await t.async_wait(asio::use_awaitable);
      }
      co_return v;
    });
  }
};

// A coroutine handler that waits `value` milliseconds, then answers it.
inline asio::awaitable<json::value> sleep_then_echo(const std::string&, const json::value& v) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(v.as_int64()));
  co_await t.async_wait(asio::use_awaitable);
  co_return v;
}

// Registers "echo": the answer is the request's value.
inline void add_echo(host& h) {
  h.on("echo", [](const std::string&, const json::value& v) { return v; });
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

// An echo host at max_connections 1 whose one connection `holder` keeps
// open: every other connection is refused.
struct full_host : host_fixture {
  full_host() : host_fixture(2, at_one_connection()) {
    add_echo(server);
    start();
    holder.emplace(at);
    REQUIRE(wait_until([&] { return server.stats().connections_open == 1; }));
  }
  static host_options at_one_connection() {
    host_options o = loopback();
    o.max_connections = 1;
    return o;
  }
  std::optional<raw_peer> holder;
};

}  // namespace comet::test
