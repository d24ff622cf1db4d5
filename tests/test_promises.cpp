// Promises of README.md, docs/ and the public headers that no other test
// kept (issue 14, item 3): hosts, handlers, clients, errors and logging, over
// real sockets on loopback.
#include <comet/comet.hpp>
#include <comet/version.hpp>

#include "support.hpp"
#include "tcp_segments.hpp"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <vector>

using namespace comet;
using namespace comet::test;
using Catch::Contains;

namespace {

// Whether the peer's socket becomes readable (data or EOF) within `limit`:
// for a bounded wait on something that must NOT happen.
bool readable_within(raw_peer& p, std::chrono::milliseconds limit) {
  pollfd fd{p.socket().native_handle(), POLLIN, 0};
  return ::poll(&fd, 1, static_cast<int>(limit.count())) > 0;
}

std::vector<log_capture::line> lines_containing(const log_capture& log, std::string_view text) {
  std::vector<log_capture::line> out;
  for (auto& l : log.lines())
    if (l.text.find(text) != std::string::npos) out.push_back(l);
  return out;
}

}  // namespace

// errors.hpp: "The wire spelling of a code"; "unknown spellings map to
// errc::remote_error".
TEST_CASE("every error code's wire_name reads back as that code with errc_from_wire",
          "[promises][errors]") {
  std::vector<errc> codes;
  for (int v = static_cast<int>(errc::bad_request); v <= static_cast<int>(errc::host_full); ++v)
    codes.push_back(static_cast<errc>(v));
  for (int v = static_cast<int>(errc::peer_offline); v <= static_cast<int>(errc::queue_full); ++v)
    codes.push_back(static_cast<errc>(v));
  REQUIRE(codes.size() == 25);
  std::set<std::string_view> names;
  for (const errc code : codes) {
    const auto name = wire_name(code);
    INFO("errc value " << static_cast<int>(code) << " spelt '" << name << "'");
    CHECK_FALSE(name.empty());
    CHECK(errc_from_wire(name) == code);
    // The spelling is the enumerator's name: lower case and underscores.
    CHECK(std::regex_match(std::string(name), std::regex("[a-z]+(_[a-z]+)*")));
    // And the category knows the code.
    CHECK(make_error_code(code).message() != "unknown comet error");
    names.insert(name);
  }
  CHECK(names.size() == codes.size());  // no two codes share a spelling
  CHECK(errc_from_wire("") == errc::remote_error);
  CHECK(errc_from_wire("No_Handler") == errc::remote_error);  // spellings are exact
}

// errors.hpp: safe_to_retry() "the host provably did not run the request":
// exactly busy, host_full, shutting_down, unread, queue_full, peer_offline,
// connect_timeout and unresolved (docs/api.md, "Which failures are safe to
// send again").
TEST_CASE("safe_to_retry is true for exactly the codes that say the host did not run the request",
          "[unit][errors]") {
  const std::set<errc> safe{errc::busy,         errc::host_full,       errc::shutting_down,
                            errc::unread,       errc::queue_full,      errc::peer_offline,
                            errc::connect_timeout, errc::unresolved};
  int checked = 0;
  for (const auto& [first, last] : {std::pair{errc::bad_request, errc::host_full},
                                    std::pair{errc::peer_offline, errc::queue_full}})
    for (int v = static_cast<int>(first); v <= static_cast<int>(last); ++v, ++checked) {
      const auto code = static_cast<errc>(v);
      INFO("errc " << wire_name(code));
      CHECK(error(code, "x").safe_to_retry() == safe.contains(code));
    }
  CHECK(checked == 25);  // every code (the wire_name case above counts them too)
}

// version.hpp: "One number for #if: 10203 is 1.2.3", and comet::version.
TEST_CASE("the version macros agree with each other and with comet::version",
          "[promises][version]") {
  static_assert(COMET_VERSION ==
                COMET_VERSION_MAJOR * 10000 + COMET_VERSION_MINOR * 100 + COMET_VERSION_PATCH);
  const std::string spelt = std::to_string(COMET_VERSION_MAJOR) + "." +
                            std::to_string(COMET_VERSION_MINOR) + "." +
                            std::to_string(COMET_VERSION_PATCH);
  CHECK(spelt == COMET_VERSION_STRING);
  CHECK(std::string(comet::version) == COMET_VERSION_STRING);
  CHECK(COMET_VERSION_MINOR < 100);
  CHECK(COMET_VERSION_PATCH < 100);
}

// handlers.hpp: request_context::request_id is docs/protocol.md's
// "request-id", when tagged.
TEST_CASE("a handler's request_context carries the request-id of a tagged request",
          "[promises][handlers]") {
  host_fixture f;
  std::mutex m;
  std::vector<std::optional<std::uint64_t>> seen;  // recorded on pool threads, checked here
  f.server.on("id", [&](const std::string&, const json::value& v, const request_context& ctx) {
    std::lock_guard lock(m);
    seen.push_back(ctx.request_id);
    return v;
  });
  f.server.on("id_co", [&](const std::string&, const json::value& v,
                           const request_context& ctx) -> asio::awaitable<json::value> {
    {
      std::lock_guard lock(m);
      seen.push_back(ctx.request_id);
    }
    co_return v;
  });
  f.start();
  raw_peer p(f.at);
  for (const std::string action : {"id", "id_co"}) {
    frame_header h;
    h.keep_alive = true;
    h.request_id = action == "id" ? 18446744073709551615ull : 7;
    p.write(encode_frame(h, encode_request(action, 1)));
    const auto answer = split(p.read_frame());
    CHECK(answer.header.at("request-id") == json::value(*h.request_id));
    p.write(request_frame(action, 2, /*keep_alive=*/true));  // untagged
    CHECK(decode_response(split(p.read_frame()).content).result == 2);
  }
  std::lock_guard lock(m);
  REQUIRE(seen.size() == 4);
  CHECK(seen[0] == std::optional<std::uint64_t>(18446744073709551615ull));
  CHECK_FALSE(seen[1]);
  CHECK(seen[2] == std::optional<std::uint64_t>(7));
  CHECK_FALSE(seen[3]);
}

// handlers.hpp: request_context::executor is "the executor the connection
// runs on" (it was the host's), so work posted to it is serialized with
// that connection.
TEST_CASE("a handler's request_context executor is the one its connection runs on",
          "[promises][handlers]") {
  host_fixture f(2);  // two threads: each connection runs on a strand of its own
  using strand = asio::strand<asio::any_io_executor>;
  struct sighting {
    asio::any_io_executor executor;
    bool runs_on_it;  // the handler ran on that executor
    bool posted_ran_on_it;
  };
  std::mutex m;
  std::vector<sighting> seen;  // recorded on pool threads, checked on this one
  std::atomic<int> posted{0};
  f.server.on("where", [&](const std::string&, const json::value& v, const request_context& ctx) {
    const auto* s = ctx.executor.target<strand>();
    const bool on_it = s != nullptr && s->running_in_this_thread();
    std::size_t index = 0;
    {
      std::lock_guard lock(m);
      seen.push_back({ctx.executor, on_it, false});
      index = seen.size() - 1;
    }
    // Work posted to it runs on the connection's strand too.
    asio::post(ctx.executor, [&, s, index] {
      std::lock_guard lock(m);
      seen[index].posted_ran_on_it = s != nullptr && s->running_in_this_thread();
      ++posted;
    });
    return v;
  });
  f.server.on("where_co", [&](const std::string&, const json::value& v,
                              const request_context& ctx) -> asio::awaitable<json::value> {
    const auto here = co_await asio::this_coro::executor;
    {
      std::lock_guard lock(m);
      seen.push_back({ctx.executor, here == ctx.executor, true});
    }
    co_return v;
  });
  f.start();
  raw_peer first(f.at), second(f.at);
  // Two requests on one keep-alive connection, then one on another.
  for (const std::string action : {"where", "where_co"}) {
    const int before = posted;
    first.write(request_frame(action, json::value(action), /*keep_alive=*/true));
    CHECK(decode_response(split(first.read_frame()).content).result == json::value(action));
    if (action == "where") REQUIRE(wait_until([&] { return posted == before + 1; }));
  }
  second.write(request_frame("where", 3, /*keep_alive=*/true));
  CHECK(decode_response(split(second.read_frame()).content).result == 3);
  REQUIRE(wait_until([&] { return posted == 2; }));

  std::lock_guard lock(m);
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].executor.target<strand>() != nullptr);
  CHECK(seen[0].executor == seen[1].executor);  // the same connection, the same executor
  CHECK_FALSE(seen[0].executor == seen[2].executor);  // another connection, another strand
  CHECK_FALSE(seen[0].executor == f.server.get_executor());  // not the host's
  for (const auto& s : seen) {
    CHECK(s.runs_on_it);
    CHECK(s.posted_ran_on_it);
  }
}

// embedding.md: send_sync "throws errc::would_deadlock on [a thread] that
// does [run the executor]"; the pool case is in test_client.cpp, this is a
// program's own io_context.
TEST_CASE("send_sync on a thread that runs the client's own io_context throws would_deadlock",
          "[promises][client]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  // Two threads run it: were send_sync to block one, the other would carry
  // the send and the test would see an answer instead of the refusal.
  std::thread a([&] { io.run(); }), b([&] { io.run(); });
  const client c(io.get_executor(), f.at);
  std::promise<std::pair<std::optional<errc>, std::string>> outcome;
  asio::post(io, [&] {
    try {
      c.send_sync("echo", 1);
      outcome.set_value({std::nullopt, "answered"});
    } catch (const comet::error& e) {
      outcome.set_value({e.code() == errc::would_deadlock ? std::optional(errc::would_deadlock)
                                                           : std::optional(errc::remote_error),
                         e.what()});
    }
  });
  auto result = outcome.get_future();
  const bool ready = result.wait_for(20s) == std::future_status::ready;
  // From this thread, which does not run it, the same client answers.
  json::value answer;
  try {
    answer = c.send_sync("echo", 2);
  } catch (const comet::error& e) {
    answer = e.what();
  }
  work.reset();
  a.join();
  b.join();
  REQUIRE(ready);
  const auto [code, what] = result.get();
  INFO(what);
  CHECK(code == std::optional(errc::would_deadlock));
  CHECK_THAT(what, Contains("co_await client.send"));
  CHECK(answer == 2);
}

// host.hpp: start() "Throws comet::error(errc::bind_failed) with the
// reason". 192.0.2.1 (TEST-NET-1) is on no interface of this machine: the
// bind fails with EADDRNOTAVAIL, and nothing is sent anywhere.
TEST_CASE("a host asked to listen on an address this machine lacks fails with bind_failed",
          "[promises][host]") {
  io_pool pool(1);
  host_options o;
  o.listen = {"192.0.2.1", 0};
  host h(pool.get_executor(), o);
  add_echo(h);
  const auto e = error_thrown_by([&] { h.start(); });
  CHECK(e.code() == errc::bind_failed);
  CHECK_THAT(e.what(), Contains("cannot listen on 192.0.2.1:0") &&
                           Contains(std::system_category().message(EADDRNOTAVAIL)));
  CHECK_FALSE(h.running());
}

// protocol.md: "auth-token": required ...; "never echoed".
TEST_CASE("a host never echoes the auth-token in its answers", "[promises][security]") {
  host_options o = host_fixture::loopback();
  o.auth_token = "s3cret-Token-4711";
  host_fixture f(2, o);
  add_echo(f.server);
  f.start();
  SECTION("the right token") {
    raw_peer p(f.at);
    frame_header h;
    h.keep_alive = true;
    h.request_id = 5;
    h.auth_token = o.auth_token;
    p.write(encode_frame(h, encode_request("echo", "hi")));
    const std::string bytes = p.read_frame();
    const auto answer = split(bytes);
    CHECK(decode_response(answer.content).result == "hi");
    CHECK(answer.header.at("request-id") == 5);  // what it honours is echoed...
    CHECK_FALSE(answer.header.contains("auth-token"));  // ...but not the token
    CHECK(bytes.find(o.auth_token) == std::string::npos);
  }
  SECTION("a wrong token") {
    raw_peer p(f.at);
    frame_header h;
    h.auth_token = "guessed-Token-0815";
    p.write(encode_frame(h, encode_request("echo", "hi")));
    const std::string bytes = p.read_to_eof();
    const auto answer = split(bytes);
    const auto response = decode_response(answer.content);
    REQUIRE(response.error);
    CHECK(*response.error == errc::unauthorized);
    CHECK_FALSE(answer.header.contains("auth-token"));
    CHECK(bytes.find("guessed-Token-0815") == std::string::npos);
    CHECK(bytes.find(o.auth_token) == std::string::npos);
  }
}

// protocol.md: "Answers produced together go out in one write." Pipelined
// requests to plain handlers are answered in one pass; the peer's kernel
// counts the data segments that reach it (the host sets TCP_NODELAY, so a
// write per answer would be a segment per answer).
TEST_CASE("answers to pipelined requests produced together go out in one write",
          "[promises][host]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  raw_peer p(f.at);
  p.write(request_frame("echo", 0, /*keep_alive=*/true));
  CHECK(decode_response(split(p.read_frame()).content).result == 0);
  const long before = data_segments_in(p.socket().native_handle());
  REQUIRE(before >= 1);  // the kernel reports it, and counted the first answer

  constexpr int pipelined = 8;
  std::string burst;
  for (int i = 1; i <= pipelined; ++i) burst += request_frame("echo", i, /*keep_alive=*/true);
  p.write(burst);  // one write: one segment on loopback, read by the host at once
  for (int i = 1; i <= pipelined; ++i)
    CHECK(decode_response(split(p.read_frame()).content).result == i);
  CHECK(data_segments_in(p.socket().native_handle()) - before == 1);
}

// security.md: "a handler that throws: answered handler_failed; the host
// and the connection live on".
TEST_CASE("a keep-alive connection lives on after a handler_failed answer",
          "[promises][host]") {
  host_fixture f;
  add_echo(f.server);
  f.server.on("boom", [](const std::string&, const json::value&) -> json::value {
    throw std::runtime_error("plain boom");
  });
  f.server.on("boom_co", [](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    if (v.is_int64()) throw std::runtime_error("coroutine boom");
    co_return v;
  });
  f.start();
  raw_peer p(f.at);
  int n = 0;
  for (const std::string action : {"boom", "boom_co"}) {
    p.write(request_frame(action, 1, /*keep_alive=*/true));
    const auto failed = split(p.read_frame());
    const auto response = decode_response(failed.content);
    REQUIRE(response.error);
    CHECK(*response.error == errc::handler_failed);
    CHECK_THAT(response.error_message, Contains("boom"));
    CHECK(failed.header.contains("keep-alive"));  // the host says it keeps the connection
    p.write(request_frame("echo", ++n, /*keep_alive=*/true));
    CHECK(decode_response(split(p.read_frame()).content).result == n);
  }
  const auto stats = f.server.stats();
  CHECK(stats.connections_accepted == 1);
  CHECK(stats.errors_by_code.at("handler_failed") == 2);
  CHECK(stats.requests_served == 4);
}

// security.md: "allow and auth_token are checked before a request's content
// is parsed or any handler runs". A refused peer's content, malformed and
// nested past the parser's depth limit, is answered unauthorized, never
// bad_request.
TEST_CASE("the allow-list and the auth-token refuse a peer before its content is parsed",
          "[promises][security]") {
  host_options o = host_fixture::loopback();
  std::string why;
  SECTION("auth-token") {
    o.auth_token = "token";
    why = "requires an auth-token";
  }
  SECTION("allow-list") {
    o.allow = {"10.0.0.0/8"};
    why = "does not accept requests from your address";
  }
  host_fixture f(2, o);
  std::atomic<int> handled{0};
  f.server.add_action_handler([&](const std::string&, const json::value&) -> std::optional<json::value> {
    ++handled;
    return json::value(nullptr);
  });
  f.start();
  raw_peer p(f.at);
  p.write(encode_frame({}, std::string(5000, '[') + "not json"));
  const auto response = decode_response(split(p.read_to_eof()).content);
  REQUIRE(response.error);
  CHECK(*response.error == errc::unauthorized);
  CHECK_THAT(response.error_message, Contains(why));
  CHECK(handled == 0);
  const auto by_code = f.server.stats().errors_by_code;
  CHECK(by_code == std::map<std::string, std::uint64_t, std::less<>>{{"unauthorized", 1}});
}

// security.md: "frames carry their own lengths, so a cut-off answer is
// always detected"; README: connection_closed is "the peer closed before
// answering".
TEST_CASE("an answer cut off by the host's close fails the send as connection_closed",
          "[promises][client]") {
  const std::string whole = encode_frame({}, encode_response(json::value("a long enough answer")));
  io_pool pool(1);
  for (const std::size_t cut : {std::size_t{1}, std::size_t{10}, whole.size() - 1}) {
    for (const bool keep_alive : {false, true}) {
      INFO("the first " << cut << " of " << whole.size() << " bytes, keep_alive " << keep_alive);
      scripted_peer peer(whole.substr(0, cut));
      const client c(pool.get_executor(), peer.at(),
                     {.request_timeout = 20s, .keep_alive = keep_alive, .connect_retries = 0});
      const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
      CHECK(e.code() == errc::connection_closed);
      CHECK(wait_until([&] { return peer.answered() >= 1; }));
    }
  }
}

// host.hpp / configuration.md: idle_timeout "Zero: never".
TEST_CASE("with idle_timeout 0 a host never drops a silent peer", "[promises][limits]") {
  host_options o = host_fixture::loopback();
  o.idle_timeout = 0ms;
  host_fixture f(2, o);
  add_echo(f.server);
  f.start();
  raw_peer silent(f.at), stalled(f.at);
  stalled.write(request_frame("echo", "half").substr(0, 9));  // mid-frame, then nothing
  REQUIRE(wait_until([&] { return f.server.stats().connections_open == 2; }));
  // Other work goes on meanwhile.
  auto c = f.make_client();
  for (int i = 0; i < 3; ++i) CHECK(c.send_sync("echo", i) == i);
  REQUIRE(wait_until([&] { return f.server.stats().requests_served == 3; }));
  // A bounded wait for what must not happen: a close of either. (A zero
  // read as "0 ms" would close both at once; 300 ms is no proof of "never",
  // only that zero does not mean "now".)
  CHECK_FALSE(readable_within(silent, 300ms));
  CHECK_FALSE(readable_within(stalled, 10ms));
  CHECK(f.server.stats().connections_open == 2);
  // Both still serve.
  silent.write(request_frame("echo", "still here"));
  CHECK(decode_response(split(silent.read_frame()).content).result == "still here");
  stalled.write(request_frame("echo", "half").substr(9));
  CHECK(decode_response(split(stalled.read_frame()).content).result == "half");
}

// host.hpp / configuration.md: handler_timeout "Zero: no deadline".
TEST_CASE("with handler_timeout 0 a coroutine handler has no deadline", "[promises][limits]") {
  host_options o = host_fixture::loopback();
  o.handler_timeout = 0ms;
  host_fixture f(2, o);
  f.server.on("sleep", sleep_then_echo);
  f.start();
  auto c = f.make_client();
  CHECK(c.send_sync("sleep", 300) == 300);  // waits on a timer: it could be cancelled, and is not
  CHECK(f.server.stats().error_responses == 0);
}

// configuration.md: "0.0.0.0" or "::" listens on every interface.
TEST_CASE("a host listening on 0.0.0.0 or :: is reached through loopback",
          "[promises][host]") {
  struct listen_case {
    std::string listen, dial;
  };
  for (const auto& lc : {listen_case{"0.0.0.0", "127.0.0.1"}, listen_case{"::", "::1"}}) {
    INFO("listening on " << lc.listen << ", dialling " << lc.dial);
    host_options o;
    o.listen = {lc.listen, 0};
    host_fixture f(1, o);
    add_echo(f.server);
    const auto at = f.start();
    CHECK(at.ip == lc.listen);
    CHECK(at.port != 0);
    const client c(f.pool.get_executor(), endpoint{lc.dial, at.port});
    CHECK(c.send_sync("echo", lc.dial) == json::value(lc.dial));
  }
}

// host.hpp ~host: "Closes the listener and every connection at once";
// embedding.md: "Destroying a running host closes its connections at once."
TEST_CASE("destroying a running host closes its listener and connections at once",
          "[promises][host]") {
  std::promise<void> entered;
  std::atomic<bool> cancelled{false};
  io_pool pool(2);
  auto server = std::make_unique<host>(pool.get_executor(), host_fixture::loopback());
  add_echo(*server);
  server->on("hold", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    entered.set_value();
    asio::steady_timer t(co_await asio::this_coro::executor, 60s);
    try {
      co_await t.async_wait(asio::use_awaitable);
    } catch (const boost::system::system_error&) {
      cancelled = true;
      throw;
    }
    co_return v;
  });
  const auto at = server->start();
  raw_peer idle(at), busy(at);
  idle.write(request_frame("echo", 1, /*keep_alive=*/true));
  CHECK(decode_response(split(idle.read_frame()).content).result == 1);
  busy.write(request_frame("hold", 2));
  REQUIRE(entered.get_future().wait_for(10s) == std::future_status::ready);

  server.reset();  // no stop() first
  // Within the raw peers' 10 s timeout, well before the handler's 60 s.
  boost::system::error_code idle_end, busy_end;
  CHECK(idle.read_to_eof(idle_end).empty());
  CHECK(busy.read_to_eof(busy_end).empty());  // no answer: closed, not answered
  CHECK(idle_end != asio::error::timed_out);
  CHECK(busy_end != asio::error::timed_out);
  CHECK(wait_until([&] { return cancelled.load(); }));
  // The listener is closed: connecting is refused.
  CHECK(wait_until([&] {
    asio::io_context io;
    tcp::socket s(io);
    boost::system::error_code ec;
    s.connect(tcp::endpoint(asio::ip::make_address(at.ip), at.port), ec);
    return ec == asio::error::connection_refused;
  }));
}

// embedding.md: "client_set has both too [close(), async_close()], for all
// of a config's clients."
TEST_CASE("client_set close and async_close end every client of the set", "[promises][client]") {
  host_fixture f;
  add_echo(f.server);
  std::atomic<int> logged{0};
  f.server.on("log", [&](const std::string&, const json::value& v) {
    ++logged;
    return v;
  });
  f.start();
  config cfg;
  cfg.clients = {{"A", f.at}, {"B", f.at}};
  SECTION("close") {
    const client_set clients(f.pool.get_executor(), cfg);
    CHECK(clients["A"].send_sync("echo", 1) == 1);
    clients.close();
    for (const auto& entry : clients.all()) {
      INFO(entry.first);
      const client& c = entry.second;
      CHECK(c.closed());
      CHECK(error_thrown_by([&] { c.send_sync("echo", 2); }).code() == errc::client_closed);
    }
  }
  SECTION("async_close waits for the posts made before it") {
    const client_set clients(f.pool.get_executor(), cfg);
    clients["A"].post("log", "a");
    clients["B"].post("log", "b");
    run(f.pool.get_executor(), [&]() -> asio::awaitable<void> { co_await clients.async_close(); });
    CHECK(logged == 2);  // both answered before async_close completed
    for (const auto& entry : clients.all()) {
      INFO(entry.first);
      const client& c = entry.second;
      CHECK(c.closed());
      CHECK(error_thrown_by([&] { c.send_sync("echo", 3); }).code() == errc::client_closed);
    }
  }
}

// embedding.md: "The sink is called from whichever thread produced the line
// (serialised by the library)".
TEST_CASE("the log sink is never called from two threads at once", "[promises][log]") {
  const auto previous = get_log_level();
  std::atomic<int> inside{0}, overlaps{0}, calls{0};
  std::set<std::thread::id> threads;  // touched inside the sink only
  set_log_level(log_level::info);
  set_log_sink([&](log_level, std::string_view) {
    if (++inside > 1) ++overlaps;
    threads.insert(std::this_thread::get_id());  // a data race, and a TSan report, if not serialised
    ++calls;
    std::this_thread::yield();  // widens the window another call would overlap in
    --inside;
  });
  constexpr int writers = 4, lines_each = 2000;
  std::vector<std::thread> pool;
  for (int i = 0; i < writers; ++i)
    pool.emplace_back([] {
      for (int j = 0; j < lines_each; ++j) comet::log(log_level::info, "promises: a line");
    });
  for (auto& t : pool) t.join();
  set_log_sink({});
  set_log_level(previous);
  CHECK(overlaps == 0);
  CHECK(calls == writers * lines_each);
  CHECK(threads.size() >= 2);  // it was called from several threads
}

// 7ccdc50: one line per request at debug (host: <peer> action '<a>':
// answered|<code> in X ms); nothing per request at info.
TEST_CASE("each request logs one debug line with its action, outcome and time, none at info",
          "[promises][log]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  auto c = f.make_client();
  {
    log_capture log(log_level::debug);
    CHECK(c.send_sync("echo", 1) == 1);
    CHECK(error_thrown_by([&] { c.send_sync("nope", 1); }).code() == errc::no_handler);
    // Logged before the answer is written: there once the send returned.
    const auto answered = lines_containing(log, "action 'echo'");
    REQUIRE(answered.size() == 1);
    CHECK(answered[0].level == log_level::debug);
    CHECK_THAT(answered[0].text,
               Catch::Matches("host: 127\\.0\\.0\\.1:[0-9]+ action 'echo': answered in [0-9]+\\.[0-9]{3} ms"));
    const auto refused = lines_containing(log, "action 'nope'");
    REQUIRE(refused.size() == 1);
    CHECK(refused[0].level == log_level::debug);
    CHECK_THAT(refused[0].text,
               Catch::Matches("host: 127\\.0\\.0\\.1:[0-9]+ action 'nope': no_handler in [0-9]+\\.[0-9]{3} ms"));
  }
  {
    log_capture log(log_level::info);
    CHECK(c.send_sync("echo", 2) == 2);
    CHECK(error_thrown_by([&] { c.send_sync("nope", 2); }).code() == errc::no_handler);
    CHECK_FALSE(log.contains("action '"));
    CHECK(log.lines().empty());
  }
}

// 7ccdc50 / host.hpp: a coroutine handler is cancelled when its peer closes
// the connection; that is expected, so logged at debug, not warn.
TEST_CASE("a handler cancelled because its peer went away logs at debug, not warn",
          "[promises][log]") {
  host_fixture f;
  std::promise<void> entered;
  f.server.on("hold", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    entered.set_value();
    asio::steady_timer t(co_await asio::this_coro::executor, 60s);
    co_await t.async_wait(asio::use_awaitable);
    co_return v;
  });
  f.start();
  log_capture log(log_level::debug);
  {
    raw_peer p(f.at);
    p.write(request_frame("hold", 1));
    REQUIRE(entered.get_future().wait_for(10s) == std::future_status::ready);
  }  // closed: the handler's caller went away
  REQUIRE(log.wait_for("handler for action 'hold' from 127.0.0.1:"));
  const auto failed = lines_containing(log, "handler for action 'hold'");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].level == log_level::debug);
  CHECK(log.contains("went away with 1 request(s) in flight"));
  for (const auto& l : log.lines()) {
    INFO(l.text);
    CHECK(l.level < log_level::warn);
  }
}

// 7ccdc50: a request that does not fit a typed handler's type is the
// peer's mistake: bad_request, logged at info.
TEST_CASE("a typed handler's bad_request logs at info, not warn", "[promises][log]") {
  host_fixture f;
  f.server.on("half", [](const int& n) { return n / 2; });
  f.start();
  auto c = f.make_client();
  CHECK(c.send_sync("half", 8) == 4);
  log_capture log(log_level::debug);
  const auto e = error_thrown_by([&] { c.send_sync("half", "eight"); });
  CHECK(e.code() == errc::bad_request);
  const auto failed = lines_containing(log, "handler for action 'half'");
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].level == log_level::info);
  for (const auto& l : log.lines()) {
    INFO(l.text);
    CHECK(l.level < log_level::warn);
  }
}

// 7ccdc50 / host.cpp: at max_connections the host warns at most once a
// second, saying how many connections it refused since its last line.
TEST_CASE("refusals past max_connections in a burst log a warn line or two that count them",
          "[promises][log][limits]") {
  full_host f;
  log_capture log(log_level::warn);
  const std::regex counted(".*refused ([0-9]+) new connection\\(s\\) since the last such line.*");
  const auto reported = [&] {
    std::vector<std::uint64_t> counts;
    for (const auto& l : lines_containing(log, "(max_connections)")) {
      std::smatch m;
      if (std::regex_match(l.text, m, counted)) counts.push_back(std::stoull(m[1].str()));
    }
    return counts;
  };

  constexpr int burst = 30;
  const auto begun = std::chrono::steady_clock::now();
  for (int i = 0; i < burst; ++i) {
    raw_peer refused(f.at);
    refused.write(request_frame("echo", i));
    CHECK(decode_response(split(refused.read_frame()).content).error == errc::host_full);
    CHECK(refused.closed_by_peer());
  }
  REQUIRE(wait_until([&] { return f.server.stats().connections_refused == burst; }));
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::steady_clock::now() - begun).count();
  auto counts = reported();
  REQUIRE_FALSE(counts.empty());
  CHECK(counts.front() == 1);  // the first refusal is reported at once
  // At most a line a second: one or two for a burst, however loaded the machine.
  CHECK(counts.size() <= static_cast<std::size_t>(seconds) + 2);
  CHECK(counts.size() < static_cast<std::size_t>(burst));

  // The next refusal a second after the last line reports those held back.
  for (int i = 0; i < 60 && reported().size() == counts.size(); ++i) {
    std::this_thread::sleep_for(100ms);  // paces the probes; the log line is what is waited for
    raw_peer refused(f.at);
    refused.write(request_frame("echo", i));
    CHECK(decode_response(split(refused.read_frame()).content).error == errc::host_full);
    CHECK(refused.closed_by_peer());
  }
  counts = reported();
  REQUIRE(counts.size() >= 2);
  CHECK(counts.back() >= 2);  // several refusals in one line
  std::uint64_t sum = 0;
  for (const auto n : counts) sum += n;
  CHECK(sum <= f.server.stats().connections_refused);
  // The connection that holds the only slot is served throughout.
  f.holder->write(request_frame("echo", "held"));
  CHECK(decode_response(split(f.holder->read_frame()).content).result == "held");
}

// host.hpp: "Register before start()"; start() once. Both are usage_error,
// and the running host is unharmed.
TEST_CASE("handlers registered after start and a second start are usage_error",
          "[promises][host]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  const auto late = error_thrown_by([&] { add_echo(f.server); });
  CHECK(late.code() == errc::usage_error);
  CHECK_THAT(late.what(), Contains("register handlers before start()"));
  const auto chained = error_thrown_by([&] {
    f.server.add_action_handler([](const std::string&, const json::value& v) { return v; });
  });
  CHECK(chained.code() == errc::usage_error);
  const auto twice = error_thrown_by([&] { f.server.start(); });
  CHECK(twice.code() == errc::usage_error);
  CHECK_THAT(twice.what(), Contains("start() called twice"));
  CHECK(f.server.running());
  CHECK(f.make_client().send_sync("echo", 1) == 1);
}

// api.md: any other exception is answered handler_failed with its message
// ("a Boost system_error's own message, without the library's source
// location").
TEST_CASE("a handler's Boost system_error is answered with its message, no source location",
          "[promises][handlers]") {
  host_fixture f;
  f.server.on("open", [](const std::string&, const json::value&) -> json::value {
    static constexpr boost::source_location where = BOOST_CURRENT_LOCATION;
    const boost::system::error_code ec(EACCES, boost::system::system_category(), &where);
    throw boost::system::system_error(ec, "opening the probe");
  });
  f.start();
  const auto e = error_thrown_by([&] { f.make_client().send_sync("open", 1); });
  CHECK(e.code() == errc::handler_failed);
  const std::string permission_denied = std::system_category().message(EACCES);
  CHECK_THAT(e.what(), Contains("handler for action 'open' failed: " + permission_denied));
  CHECK_THAT(e.what(), !Contains("test_promises.cpp") && !Contains("[system:"));
}

// protocol.md: "a code it does not know reads as remote_error"; the host's
// message is kept.
TEST_CASE("an error code the client does not know is remote_error with the host's message",
          "[promises][client]") {
  scripted_peer peer(encode_frame(
      {}, R"({"result": "Error: new", "error": {"code": "brand_new_code", "message": "a newer host's failure"}})"));
  io_pool pool(1);
  const client c(pool.get_executor(), peer.at());
  const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
  CHECK(e.code() == errc::remote_error);
  CHECK_THAT(e.what(), Contains("a newer host's failure"));
}

// host.hpp: handler_timeout: "A plain function cannot be interrupted; it is
// not bounded by this."
TEST_CASE("a plain-function handler that runs past handler_timeout still answers",
          "[promises][limits]") {
  host_options o = host_fixture::loopback();
  o.handler_timeout = 50ms;
  host_fixture f(2, o);
  f.server.on("busy", [](const std::string&, const json::value& v) {
    // Work that takes four times the deadline (not a wait for anything).
    const auto until = std::chrono::steady_clock::now() + 200ms;
    while (std::chrono::steady_clock::now() < until) std::this_thread::yield();
    return v;
  });
  f.start();
  CHECK(f.make_client().send_sync("busy", "done") == "done");
  CHECK(f.server.stats().error_responses == 0);
}

// io_pool.hpp: release() lets run() return once no work is left (pending
// handlers still finish); stop() abandons pending work; running_in_this_thread().
TEST_CASE("io_pool release finishes pending work, stop abandons it", "[promises][pool]") {
  std::atomic<bool> fired{false}, abandoned_ran{false};
  std::promise<bool> on_pool;
  {
    io_pool pool(2);
    CHECK_FALSE(pool.running_in_this_thread());
    asio::post(pool.get_executor(), [&] { on_pool.set_value(pool.running_in_this_thread()); });
    asio::steady_timer t(pool.get_executor(), 100ms);
    t.async_wait([&](boost::system::error_code ec) { fired = !ec; });
    pool.release();
    pool.join();  // returns once the timer has fired
    CHECK(fired);
  }
  CHECK(on_pool.get_future().get());
  {
    io_pool pool(1);
    asio::steady_timer t(pool.get_executor(), 60s);
    t.async_wait([&](boost::system::error_code) { abandoned_ran = true; });
    pool.stop();
    pool.join();  // at once, not in 60 s
    CHECK_FALSE(abandoned_ran);
  }
}
