// The client's side of docs/protocol.md's "Announced extensions" over real
// loopback sockets, against hosts written by hand (the repository's host
// does not speak them yet): cancel frames only to a host that announced
// "cancel", a going-away notice ending the unread requests, and a request
// the host never read whole sent again on another connection.
#include <comet/comet.hpp>

#include "support.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <poll.h>

#include <future>
#include <thread>

using namespace comet;
using namespace comet::test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

// A listener on 127.0.0.1 whose connections a test's own thread serves.
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

  asio::io_context io;
  tcp::acceptor acceptor;
  endpoint at;
};

std::uint64_t id_of(const std::string& frame) {
  std::string ignored;
  const std::size_t n = (static_cast<unsigned char>(frame.at(0)) << 8) |
                        static_cast<unsigned char>(frame.at(1));
  const auto h = parse_frame_header(std::string_view(frame).substr(2, n), ignored);
  if (!h || !h->request_id) throw std::runtime_error("a frame without a request id");
  return *h->request_id;
}

// An answer as a host that speaks `features` writes its first one.
std::string answer(std::uint64_t id, const json::value& result,
                   std::optional<std::uint32_t> features = std::nullopt) {
  frame_header h;
  h.keep_alive = true;
  h.request_id = id;
  h.features = features;
  if (features) h.window = 64;
  return encode_frame(h, encode_response(result));
}

client_options keep_alive() {
  client_options o;
  o.keep_alive = true;
  return o;
}

// `c.send("slow", 1) || a 200 ms timer`: true when the timer won.
bool timer_won(io_pool& pool, client& c) {
  return run(pool.get_executor(), [&]() -> asio::awaitable<bool> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 200ms);
    auto outcome = co_await (c.send("slow", 1) || timer.async_wait(asio::use_awaitable));
    co_return outcome.index() == 1;
  });
}

}  // namespace

TEST_CASE("a cancelled keep-alive send reaches a host that announced cancel as a cancel frame",
          "[integration][client][extensions]") {
  fake_host host;
  std::string first, slow, after, failure;
  std::thread script([&] {
    try {
      raw_peer conn = host.next();
      first = conn.read_frame();
      conn.write(answer(id_of(first), 1, feature::all));
      slow = conn.read_frame();  // never answered
      after = conn.read_frame();
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at, keep_alive());
  CHECK(c.send_sync("echo", 1) == 1);
  CHECK(timer_won(pool, c));
  script.join();
  REQUIRE(failure.empty());
  const auto announced = split(first).header;
  CHECK(announced.at("features") == json::array{"cancel", "going-away"});
  REQUIRE_FALSE(after.empty());
  const auto cancel = split(after);
  CHECK(cancel.header.at("control") == "cancel");
  CHECK(cancel.header.at("request-id") == json::value(id_of(slow)));
  CHECK(cancel.header.at("content-length") == 0);
  CHECK(cancel.content.empty());
}

TEST_CASE("a cancelled keep-alive send sends no cancel frame to a host that announced none",
          "[integration][client][extensions]") {
  fake_host host;
  std::string slow, after, failure;
  std::thread script([&] {
    try {
      raw_peer conn = host.next();
      const auto first = conn.read_frame();
      conn.write(answer(id_of(first), 1));  // as today's hosts: no "features"
      slow = conn.read_frame();
      after = conn.read_frame();
      conn.write(answer(id_of(after), 3));
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at, keep_alive());
  CHECK(c.send_sync("echo", 1) == 1);
  CHECK(timer_won(pool, c));
  // The next frame the host reads is this request: nothing came between.
  CHECK(c.send_sync("echo", 3) == 3);
  script.join();
  REQUIRE(failure.empty());
  const auto next = split(after);
  CHECK_FALSE(next.header.contains("control"));
  CHECK(decode_request(next.content, failure)->action == "echo");
  CHECK(id_of(after) > id_of(slow));
}

TEST_CASE("a going-away notice ends the sends after its last request id as unread, safe to send again",
          "[integration][client][extensions]") {
  fake_host host;
  std::string failure;
  std::uint64_t last = 0;
  std::thread script([&] {
    try {
      raw_peer conn = host.next();
      const auto first = conn.read_frame();
      conn.write(answer(id_of(first), 1, feature::all));
      std::vector<std::uint64_t> ids;
      for (int i = 0; i < 3; ++i) ids.push_back(id_of(conn.read_frame()));
      last = *std::min_element(ids.begin(), ids.end());
      frame_header notice;
      notice.keep_alive = true;
      notice.kind = frame_kind::going_away;
      notice.last_request_id = last;
      conn.write(encode_frame(notice, {}) + answer(last, "answered"));
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at, keep_alive());
  CHECK(c.send_sync("echo", 1) == 1);
  std::vector<std::future<json::value>> sends;
  for (int i = 0; i < 3; ++i) sends.push_back(c.async_send("echo", i, asio::use_future));
  int answered = 0, unread = 0;
  for (auto& s : sends) {
    REQUIRE(s.wait_for(10s) == std::future_status::ready);
    try {
      const auto result = s.get();
      CHECK(result == "answered");
      ++answered;
    } catch (const comet::error& e) {
      INFO(e.what());
      CHECK(e.code() == errc::unread);
      CHECK(e.safe_to_retry());
      CHECK_THAT(e.what(), Catch::Contains("is going away and did not read this request; it is safe "
                                           "to send again"));
      ++unread;
    }
  }
  script.join();
  REQUIRE(failure.empty());
  CHECK(answered == 1);
  CHECK(unread == 2);
}

TEST_CASE("a send the host never read whole is sent again on a new connection and succeeds",
          "[integration][client][extensions]") {
  // A small receive buffer at the host, and a request far larger than the
  // client's send buffer can hold: the client is still writing it when the
  // host closes.
  fake_host host(4096);
  std::string failure;
  std::size_t first_read = 0, replayed = 0;
  std::thread script([&] {
    try {
      {
        raw_peer conn = host.next();
        char part[1024];
        first_read = conn.socket().read_some(asio::buffer(part));
        conn.reset();  // closes with unread bytes, as a crashing host would
      }
      raw_peer conn = host.next();
      const auto frame = conn.read_frame();
      replayed = frame.size();
      conn.write(answer(id_of(frame), "ok"));
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at, keep_alive());
  const std::string big(8 << 20, 'x');
  CHECK(c.send_sync("echo", json::value(big)) == "ok");
  script.join();
  REQUIRE(failure.empty());
  CHECK(first_read > 0);
  CHECK(replayed > big.size());
}
