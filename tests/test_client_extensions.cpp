// The client's side of docs/protocol.md's "Announced extensions" over real
// loopback sockets, against hosts written by hand (the repository's host
// does not speak them yet): cancel frames only to a host that announced
// "cancel", a going-away notice ending the unread requests, and a request
// the host never read whole sent again on another connection.
#include <comet/comet.hpp>

#include "fake_host.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <poll.h>

#include <future>
#include <thread>

using namespace comet;
using namespace comet::test;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

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

// What a host that announced `features` reads after a keep-alive client's
// request "slow" is cancelled (by a 200 ms timer): every frame up to and
// including the client's next request, which it answers.
struct after_cancel {
  std::uint64_t slow_id = 0;
  std::vector<std::string> frames;
};
after_cancel frames_after_cancel(std::optional<std::uint32_t> features) {
  fake_host host;
  after_cancel seen;
  std::string failure;
  std::thread script([&] {
    try {
      raw_peer conn = host.next();
      const auto first = conn.read_frame();
      conn.write(answer(id_of(first), 1, features));
      seen.slow_id = id_of(conn.read_frame());  // never answered
      for (;;) {
        seen.frames.push_back(conn.read_frame());
        if (header_of(seen.frames.back()).kind == frame_kind::message) break;  // the request
      }
      conn.write(answer(id_of(seen.frames.back()), 3));
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at, keep_alive());
  CHECK(c.send_sync("echo", 1) == 1);
  const bool timer_won = run(pool.get_executor(), [&]() -> asio::awaitable<bool> {
    asio::steady_timer timer(co_await asio::this_coro::executor, 200ms);
    auto outcome = co_await (c.send("slow", 1) || timer.async_wait(asio::use_awaitable));
    co_return outcome.index() == 1;
  });
  CHECK(timer_won);
  CHECK(c.send_sync("echo", 3) == 3);
  script.join();
  REQUIRE(failure.empty());
  return seen;
}

// A keep-alive client's three sends around a going-away notice: a host
// answers the connection's first request, reads the three, then writes a
// notice whose last request id is the first of them, with its answer
// "answered". When `takes_them_again`, it takes the two it did not read on
// a new connection and answers "again"; otherwise it stops listening
// before the notice. The sends' futures come back ready.
struct around_going_away {
  std::vector<std::future<json::value>> sends;
  std::size_t replayed = 0;    // the sends the host took again
  std::uint64_t connects = 0;  // the client's
};
around_going_away sends_around_going_away(bool takes_them_again) {
  fake_host host;
  std::string failure;
  around_going_away seen;
  std::thread script([&] {
    try {
      raw_peer conn = host.next();
      const auto first = conn.read_frame();
      conn.write(answer(id_of(first), 1, feature::all));
      std::vector<std::uint64_t> ids;
      for (int i = 0; i < 3; ++i) ids.push_back(id_of(conn.read_frame()));
      const std::uint64_t last = *std::min_element(ids.begin(), ids.end());
      if (!takes_them_again) host.acceptor.close();  // the host stops listening, then says it goes away
      frame_header notice;
      notice.keep_alive = true;
      notice.kind = frame_kind::going_away;
      notice.last_request_id = last;
      conn.write(encode_frame(notice, {}) + answer(last, "answered"));
      if (!takes_them_again) return;
      // The two it did not read come again, on a new connection: its
      // first carries the features, the other waits for that answer.
      raw_peer again = host.next();
      auto frame = again.read_frame();
      again.write(answer(id_of(frame), "again", feature::all));
      ++seen.replayed;
      frame = again.read_frame();
      again.write(answer(id_of(frame), "again"));
      ++seen.replayed;
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  io_pool pool(1);
  client c(pool.get_executor(), host.at, keep_alive());
  CHECK(c.send_sync("echo", 1) == 1);
  for (int i = 0; i < 3; ++i) seen.sends.push_back(c.async_send("echo", i, asio::use_future));
  for (auto& s : seen.sends) REQUIRE(s.wait_for(10s) == std::future_status::ready);
  script.join();
  REQUIRE(failure.empty());
  seen.connects = c.stats().connects;
  return seen;
}

}  // namespace

TEST_CASE("a cancelled keep-alive send reaches a host that announced cancel as a cancel frame",
          "[integration][client][extensions]") {
  const auto seen = frames_after_cancel(feature::all);
  REQUIRE(seen.frames.size() == 2);  // the cancel, then the next request
  const auto cancel = split(seen.frames[0]);
  CHECK(cancel.header.at("control") == "cancel");
  CHECK(cancel.header.at("request-id") == json::value(seen.slow_id));
  CHECK(cancel.header.at("content-length") == 0);
  CHECK(cancel.content.empty());
  CHECK_FALSE(split(seen.frames[1]).header.contains("control"));
}

TEST_CASE("a cancelled keep-alive send sends no cancel frame to a host that announced none",
          "[integration][client][extensions]") {
  const auto seen = frames_after_cancel(std::nullopt);  // as today's hosts: no "features"
  REQUIRE(seen.frames.size() == 1);  // the next request, nothing before it
  const auto next = split(seen.frames[0]);
  CHECK_FALSE(next.header.contains("control"));
  std::string why;
  CHECK(decode_request(next.content, why)->action == "echo");
}

TEST_CASE("the first request of a keep-alive connection announces the features, one-shot ones do not",
          "[integration][client][extensions]") {
  for (const bool keep : {true, false}) {
    fake_host host;
    std::string first, failure;
    std::thread script([&] {
      try {
        raw_peer conn = host.next();
        first = conn.read_frame();
        frame_header h;  // as COMET answers: no id, and it closes
        conn.write(encode_frame(h, encode_response(1)));
      } catch (const std::exception& e) {
        failure = e.what();
      }
    });
    io_pool pool(1);
    client_options o;
    o.keep_alive = keep;
    client c(pool.get_executor(), host.at, o);
    CHECK(c.send_sync("echo", 1) == 1);
    script.join();
    REQUIRE(failure.empty());
    const auto header = split(first).header;
    if (keep)
      CHECK(header.at("features") == json::array{"cancel", "going-away", "stream", "trace"});
    else
      CHECK_FALSE(header.contains("features"));
  }
}

// The notice's unread requests are sent again on another connection (the
// host may only be closing an old one, max_connection_age): here the host
// takes them on a new connection and answers them.
TEST_CASE("a going-away notice sends the sends after its last request id again on a new connection",
          "[integration][client][extensions]") {
  auto seen = sends_around_going_away(true);
  std::map<std::string, int> answers;
  for (auto& s : seen.sends) ++answers[json::value_to<std::string>(s.get())];
  CHECK(answers == std::map<std::string, int>{{"answered", 1}, {"again", 2}});
  CHECK(seen.replayed == 2);
  CHECK(seen.connects == 2);
}

// Until clients sent them again, this was every going-away notice's
// outcome; now it is a stopping host's, whose port refuses the new
// connection.
TEST_CASE("a going-away notice ends the sends after its last request id as unread when no host takes them again",
          "[integration][client][extensions]") {
  auto seen = sends_around_going_away(false);
  int answered = 0, unread = 0;
  for (auto& s : seen.sends) {
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
