// Documented behaviour that no other test covered: shutting_down,
// protocol_error and the client's content limit, the log sink and level, the
// idle timeout for a peer that does not read, a stalled TLS handshake on the
// client, and the context-per-thread pool comet-host runs.
#include <comet/comet.hpp>

#include "support.hpp"
#include "temp_file.hpp"
#include "tls_pki.hpp"
#include "tls_settings.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using namespace comet;
using namespace comet::test;
using Catch::Contains;

namespace {

// Answers a string of `value` bytes: large answers from small requests.
json::value bytes_of(const std::string&, const json::value& value) {
  return json::string(static_cast<std::size_t>(value.as_int64()), 'z');
}

}  // namespace

TEST_CASE("a stopping host answers a request it then reads shutting_down",
          "[integration][host]") {
  host_options o = host_fixture::loopback();
  o.shutdown_timeout = 20s;  // the stop waits for the held request; it never forces it
  host_fixture f(2, o);
  add_echo(f.server);
  std::promise<void> entered;
  std::atomic<bool> release{false};
  f.server.on("hold", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    entered.set_value();
    asio::steady_timer t(co_await asio::this_coro::executor);
    for (int i = 0; i < 2000 && !release; ++i) {  // 10 s at most
      t.expires_after(5ms);
      co_await t.async_wait(asio::use_awaitable);
    }
    co_return v;
  });
  f.start();
  raw_peer p(f.at);
  // Pipelined on a keep-alive connection, in one write: the host reads both,
  // and decides on the second once the first is answered.
  p.write(request_frame("hold", "held", /*keep_alive=*/true) +
          request_frame("echo", "late", /*keep_alive=*/true));
  REQUIRE(entered.get_future().wait_for(10s) == std::future_status::ready);
  f.server.stop();
  release = true;

  const auto first = split(p.read_frame());
  CHECK(decode_response(first.content).result == "held");
  const auto second = split(p.read_frame());
  const auto refused = decode_response(second.content);
  REQUIRE(refused.error);
  CHECK(*refused.error == errc::shutting_down);
  CHECK_THAT(refused.error_message, Contains("shutting down"));
  CHECK_FALSE(second.header.contains("keep-alive"));
  CHECK(p.closed_by_peer());
  const auto by_code = f.server.stats().errors_by_code;
  CHECK(by_code == std::map<std::string, std::uint64_t, std::less<>>{{"shutting_down", 1}});
}

TEST_CASE("a peer that answers garbage is a protocol_error", "[integration][client]") {
  struct garbage {
    std::string what, reply, message;
  };
  const std::vector<garbage> replies{
      {"a header that is not JSON", std::string("\x00\x05hello", 7), "sent a bad frame"},
      {"content that is not JSON", encode_frame({}, "this is not json"), "not valid JSON"},
      {"an object without a result", encode_frame({}, R"({"answer": 42})"), "no \"result\""},
      {"binary content", [] {
         frame_header h;
         h.content_type = "binary/custom-client-binary-type";
         h.content_encoding = "binary";
         return encode_frame(h, std::string("\x01\x02", 2));
       }(), "not text/json"},
  };
  io_pool pool(1);
  for (const auto& g : replies) {
    for (const bool keep_alive : {false, true}) {
      INFO(g.what << (keep_alive ? ", keep-alive client" : ", one-shot client"));
      scripted_peer peer(g.reply);
      const client c(pool.get_executor(), peer.at(), {.request_timeout = 10s, .keep_alive = keep_alive});
      const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
      CHECK(e.code() == errc::protocol_error);
      CHECK_THAT(e.what(), Contains(g.message));
      CHECK(wait_until([&] { return peer.answered() >= 1; }));  // counted just after its write
    }
  }
}

TEST_CASE("an answer over the client's max_content_length fails the send as protocol_error",
          "[integration][client][limits]") {
  host_fixture f;
  f.server.on("bytes", bytes_of);
  f.start();
  for (const bool keep_alive : {false, true}) {
    INFO("keep_alive " << keep_alive);
    auto c = f.make_client({.max_content_length = 1000, .keep_alive = keep_alive});
    // {"result": "zz...z"} with 986 z: exactly 1000 bytes, the largest it reads.
    CHECK(c.send_sync("bytes", 986) == json::string(986, 'z'));
    const auto e = error_thrown_by([&] { c.send_sync("bytes", 987); });
    CHECK(e.code() == errc::protocol_error);
    CHECK_THAT(e.what(), Contains("1001") && Contains("1000"));
    CHECK(c.send_sync("bytes", 3) == "zzz");  // the client lives on
  }
}

TEST_CASE("the log sink gets the library's messages at or above the level, none below",
          "[integration][log]") {
  {
    log_capture log(log_level::info);
    host_fixture f;
    const auto at = f.start();  // logs its address at info
    comet::log(log_level::debug, "a debug line");
    comet::log(log_level::warn, "a warn line");
    comet::log(log_level::off, "never a line");  // off is a level to set, not to log at
    const auto lines = log.lines();
    const auto has = [&](log_level level, const std::string& text) {
      return std::any_of(lines.begin(), lines.end(),
                         [&](const auto& l) { return l.level == level && l.text == text; });
    };
    CHECK(has(log_level::info, "host listening on " + at.to_string()));
    CHECK(has(log_level::warn, "a warn line"));
    CHECK_FALSE(log.contains("a debug line"));
    CHECK_FALSE(log.contains("never a line"));
  }
  {
    log_capture log(log_level::warn);
    host_fixture f;
    f.start();
    raw_peer p(f.at);
    p.write(std::string("\x00\x05hello", 7));  // a malformed frame: the host warns
    REQUIRE(log.wait_for("malformed frame from"));
    for (const auto& l : log.lines()) {
      INFO(l.text);
      CHECK(l.level >= log_level::warn);
    }
    CHECK_FALSE(log.contains("listening"));
  }
  {
    log_capture log(log_level::off);
    comet::log(log_level::error, "an error line");
    CHECK(log.lines().empty());
  }
  CHECK(get_log_level() == log_level::info);  // restored by the captures
  CHECK(parse_log_level("warn") == log_level::warn);
  CHECK(to_string(log_level::trace) == "trace");
  CHECK_FALSE(parse_log_level("loud"));
}

TEST_CASE("with no sink set, log lines go to stderr", "[unit][log]") {
  const temp_file captured("", ".log");
  std::fflush(stderr);
  const int saved = ::dup(STDERR_FILENO);
  const int file = ::open(captured.path().c_str(), O_WRONLY);
  REQUIRE(saved >= 0);
  REQUIRE(file >= 0);
  ::dup2(file, STDERR_FILENO);
  ::close(file);
  set_log_sink({});
  set_log_level(log_level::info);
  comet::log(log_level::warn, "to stderr");
  comet::log(log_level::debug, "below the level");
  std::fflush(stderr);
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  CHECK(read_file(captured.path().string()) == "comet [warn] to stderr\n");
}

TEST_CASE("a host drops a peer that does not read its answers after idle_timeout",
          "[integration][host][limits]") {
  host_options o = host_fixture::loopback();
  o.idle_timeout = 500ms;
  host_fixture f(2, o);
  f.server.on("bytes", bytes_of);
  f.start();
  log_capture log;
  raw_peer p(f.at);
  const auto begun = std::chrono::steady_clock::now();
  // 8 MiB: more than the kernel buffers for a peer that does not read, so the
  // host's write stalls. The peer sends nothing more.
  constexpr std::size_t size = 8 << 20;
  p.write(request_frame("bytes", size, /*keep_alive=*/true));
  REQUIRE(wait_until([&] { return f.server.stats().requests_served == 1; }));
  REQUIRE(wait_until([&] { return f.server.stats().connections_open == 0; }));
  CHECK(std::chrono::steady_clock::now() - begun >= 500ms);
  CHECK(log.contains("has not read its answers"));
  // The peer finds the connection closed: part of the answer, then the end.
  boost::system::error_code ended_by;
  const std::string got = p.read_to_eof(ended_by);
  CHECK((ended_by == asio::error::eof || ended_by == asio::error::connection_reset));
  CHECK(got.size() < size);
}

TEST_CASE("a TLS client's stalled handshake is bounded by connect_timeout",
          "[integration][tls]") {
  test_pki pki;
  // Never accepts: the kernel completes the TCP handshake, and nothing ever
  // answers the ClientHello.
  asio::io_context io;
  tcp::acceptor mute(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const endpoint at{"127.0.0.1", mute.local_endpoint().port()};
  io_pool pool(1);
  for (const bool keep_alive : {false, true}) {
    INFO("keep_alive " << keep_alive);
    client_options o;
    o.connect_timeout = 300ms;
    o.request_timeout = 20s;
    o.keep_alive = keep_alive;
    o.tls = client_tls(pki);
    const client c(pool.get_executor(), at, o);
    const auto begun = std::chrono::steady_clock::now();
    const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
    const auto took = std::chrono::steady_clock::now() - begun;
    CHECK(e.code() == errc::tls_error);
    CHECK_THAT(e.what(), Contains("did not finish within 300 ms"));
    CHECK(took >= 300ms);
    CHECK(took < 10s);  // long before request_timeout
  }
}

TEST_CASE("a host on a context-per-thread pool serves one-shot and keep-alive clients",
          "[integration][host]") {
  // The layout comet-host runs: one io_context per thread, connections spread over them.
  io_pool pool(2, io_pool_layout::context_per_thread);
  REQUIRE(pool.single_threaded_contexts());
  host h(pool, host_fixture::loopback());
  std::mutex mutex;
  std::set<std::thread::id> threads;  // where handlers ran
  const auto note_thread = [&] {
    std::lock_guard lock(mutex);
    threads.insert(std::this_thread::get_id());
  };
  h.on("square", [&](const std::string&, const json::value& v) {
    note_thread();
    return v.as_int64() * v.as_int64();
  });
  h.on("pause", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    note_thread();
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(v.as_int64()));
    co_await t.async_wait(asio::use_awaitable);
    co_return v;
  });
  const auto at = h.start();
  const client one_shot(pool, at);
  const client pooled(pool, at, {.keep_alive = true, .max_connections = 2});

  // All in flight together, started from both contexts: plain and coroutine
  // handlers, one-shot and multiplexed.
  const auto executors = pool.executors();
  std::vector<std::future<json::value>> answers;
  constexpr std::int64_t sends = 400;
  const auto square = [](std::int64_t i) { return i % 4 < 2; };
  for (std::int64_t i = 0; i < sends; ++i) {
    const client& c = i % 2 ? pooled : one_shot;
    auto send = square(i) ? c.send("square", i) : c.send("pause", i % 7);
    answers.push_back(asio::co_spawn(executors[static_cast<std::size_t>(i) % executors.size()],
                                     std::move(send), asio::use_future));
  }
  for (std::int64_t i = 0; i < sends; ++i) {
    INFO("send " << i);
    auto& answer = answers[static_cast<std::size_t>(i)];
    REQUIRE(answer.wait_for(60s) == std::future_status::ready);
    CHECK(answer.get() == (square(i) ? i * i : i % 7));
  }
  // One-shot requests run on their connection's context, and consecutive
  // connections go to different contexts.
  CHECK(threads.size() == 2);
  const auto s = h.stats();
  CHECK(s.requests_served == sends);
  CHECK(s.error_responses == 0);
  CHECK(s.connections_accepted <= sends / 2 + 2);  // one per one-shot send, two pooled
}
