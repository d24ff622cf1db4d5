// Hostile peers over raw sockets, each scenario checking the outcome that
// docs/protocol.md documents: bad content gets bad_request, a declared
// content-length over the limit gets too_large, a frame that cannot be parsed
// (or is cut short) closes the connection without an answer, a stalled peer
// is dropped after the idle timeout. Valid requests some of them carry are
// counted like any other valid request.
#include "raw_conn.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <array>
#include <functional>

namespace comet_soak {
namespace {

using namespace std::string_literals;
using problem = std::string;  // empty: the host behaved as documented
using ms = std::chrono::milliseconds;

// The longest a scenario may take; a stalled peer needs the host's idle
// timeout and its check interval.
constexpr auto scenario_limit = 8000ms;

asio::awaitable<void> sleep_for(ms how_long) {
  asio::steady_timer t(co_await asio::this_coro::executor, how_long);
  co_await t.async_wait(asio::use_awaitable);
}

template <class T>
const T& pick(const std::vector<T>& items, rng_type& rng) {
  return items[rng() % items.size()];
}

std::string describe(const boost::system::error_code& ec) { return "'" + ec.message() + "'"; }

// --- Expected outcomes ------------------------------------------------------

// The host closes (FIN or reset) without sending a byte.
asio::awaitable<problem> closed_silently(raw_conn& c) {
  const auto end = co_await c.read_to_end();
  if (end.ec == asio::error::timed_out)
    co_return "the host did not close the connection in time";
  if (end.bytes != 0)
    co_return "the host sent " + std::to_string(end.bytes) + " bytes instead of closing silently";
  if (end.ec != asio::error::eof && end.ec != asio::error::connection_reset)
    co_return "the connection ended with " + describe(end.ec);
  co_return problem{};
}

// The next frame is an error response with this code; the host then closes
// unless the request asked for keep-alive.
asio::awaitable<problem> error_answer(raw_conn& c, soak_context& ctx, comet::errc expected,
                                      bool keep_alive) {
  std::string why_not;
  const auto f = co_await c.read_frame(why_not);
  if (!f) co_return "no " + code_name(expected) + " answer: " + why_not;
  comet::response_message r;
  try {
    r = comet::decode_response(f->content);
  } catch (const comet::error& e) {
    co_return "the answer is not a response: "s + e.what();
  }
  if (!r.error) co_return "answered " + comet::to_json_text(r.result).substr(0, 100) +
                          " instead of " + code_name(expected);
  ctx.counts.wire_error(r.error_code);
  if (*r.error != expected) co_return "answered " + r.error_code + " instead of " + code_name(expected);
  if (f->header.keep_alive != keep_alive)
    co_return "the answer's keep-alive is " + std::string(f->header.keep_alive ? "true" : "false");
  if (keep_alive) co_return problem{};
  co_return co_await closed_silently(c);
}

// Reads the answer to a valid request sent raw, and counts it as such.
asio::awaitable<void> echo_answer(raw_conn& c, soak_context& ctx, std::string_view via,
                                  const json::value& sent) {
  std::string why_not;
  const auto f = co_await c.read_frame(why_not);
  if (!f) {
    ctx.counts.lost("no_answer", std::string(via) + ": " + why_not);
    co_return;
  }
  try {
    const auto r = comet::decode_response(f->content);
    if (r.error) {
      ctx.counts.wire_error(r.error_code);
      ctx.counts.lost(r.error_code, std::string(via) + ": " + r.error_message);
      co_return;
    }
    check_echo(ctx.counts, via, sent, r.result);
  } catch (const comet::error& e) {
    ctx.counts.lost("protocol_error", std::string(via) + ": " + e.what());
  }
}

// --- Scenarios --------------------------------------------------------------

struct scenario_env {
  soak_context& ctx;
  rng_type& rng;
  raw_conn& conn;
};

// A valid request frame with a unique value, and that value.
std::pair<std::string, json::value> valid_request(scenario_env& env, std::string_view via,
                                                  bool keep_alive) {
  json::value v = env.ctx.fresh_value(via, env.rng);
  return {request_frame(echo_action, v, keep_alive), v};
}

// Bytes that are no frame at all: noise, a web client, a TLS hello, zeros.
asio::awaitable<problem> garbage(scenario_env& env) {
  std::string bytes;
  switch (env.rng() % 5) {
    case 0: bytes = random_bytes(1 + env.rng() % 8192, env.rng); break;
    case 1: bytes = "GET / HTTP/1.1\r\nHost: comet\r\n\r\n"; break;
    case 2: bytes = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s + random_bytes(64, env.rng); break;
    case 3: bytes = std::string(1 + env.rng() % 4096, '\0'); break;
    default: bytes = std::string(1 + env.rng() % 4096, '\xff'); break;
  }
  co_await env.conn.write(bytes);  // the host may close before taking it all
  env.conn.half_close();
  co_return co_await closed_silently(env.conn);
}

// A valid frame cut short, then EOF.
asio::awaitable<problem> truncated(scenario_env& env) {
  const auto [frame, value] = valid_request(env, "truncated", env.rng() % 2 == 0);
  co_await env.conn.write(std::string_view(frame).substr(0, 1 + env.rng() % (frame.size() - 1)));
  env.conn.half_close();
  co_return co_await closed_silently(env.conn);
}

// A declared content-length over the limit, with or without some content.
asio::awaitable<problem> oversize(scenario_env& env) {
  static const std::vector<std::string> lengths{
      std::to_string(host_max_content + 1), std::to_string(16 * host_max_content),
      "9223372036854775807", "18446744073709551615"};
  std::string bytes = frame_with_header(header_text(pick(lengths, env.rng)));
  // Some content too; past what the socket buffers take, the host's close
  // (a reset, as content is left unread) may fail the write: the answer
  // must still be readable.
  switch (env.rng() % 3) {
    case 0: break;
    case 1: bytes += std::string(1 + env.rng() % 32768, 'x'); break;
    default: bytes += std::string(4 * 1024 * 1024, 'x'); break;
  }
  if (co_await env.conn.write(bytes)) env.ctx.counts.observe("oversize: write failed, then read the answer");
  co_return co_await error_answer(env.conn, env.ctx, comet::errc::too_large, false);
}

// Content that is no request: not JSON, not an object, no action, invalid
// UTF-8, deep nesting, empty.
std::string bad_content(rng_type& rng) {
  static const std::vector<std::string> contents{
      "not json",
      "{",
      R"({"action": "echo", "value": 1} trailing)",
      "[]",
      "5",
      "null",
      R"({"value": 1})",
      R"({"action": 7, "value": 1})",
      R"({"action": ["echo"]})",
      nested_arrays(10000),
      R"({"action": "echo", "value": )" + nested_arrays(20000) + "}",
      R"({"action": "echo", "value": )" + nested_objects(5000) + "}",  // 35 KB, under the limit
      "{\"action\": \"ec\xff\", \"value\": 1}",
      "{\"action\": \"echo\", \"value\": \"\xc0\xaf\"}",
      "{\"action\": \"echo\", \"value\": \"\xed\xa0\x80\"}",
      "{\"action\": \"echo\", \"value\": \"\xe2\x82\"}",
      "{\"action\": \"echo\", \"value\": {\"\x80\": 1}}",
      "{\"action\": \"echo\", \"value\": \"a\x00z\"}"s,
      "",
  };
  return pick(contents, rng);
}

asio::awaitable<problem> bad_content_request(scenario_env& env) {
  comet::frame_header h;
  if (env.rng() % 4 == 0) h.content_type = "application/octet-stream";
  const std::string content =
      h.is_json() ? bad_content(env.rng) : R"({"action": "echo", "value": 1})";
  co_await env.conn.write(comet::encode_frame(h, content));
  co_return co_await error_answer(env.conn, env.ctx, comet::errc::bad_request, false);
}

// On a keep-alive connection: bad content is answered bad_request and the
// connection serves the next request.
asio::awaitable<problem> bad_then_good(scenario_env& env) {
  comet::frame_header h;
  h.keep_alive = true;
  co_await env.conn.write(comet::encode_frame(h, bad_content(env.rng)));
  if (auto p = co_await error_answer(env.conn, env.ctx, comet::errc::bad_request, true); !p.empty())
    co_return p;
  const auto [frame, value] = valid_request(env, "bad-then-good", false);
  env.ctx.counts.sent();
  co_await env.conn.write(frame);
  co_await echo_answer(env.conn, env.ctx, "bad-then-good", value);
  co_return co_await closed_silently(env.conn);
}

// A JSON header that is no header: no answer.
asio::awaitable<problem> bad_header(scenario_env& env) {
  static const std::vector<std::string> headers{
      nested_arrays(10000),
      header_text("2").insert(1, R"("deep": )" + nested_arrays(10000) + ", "),
      header_text("2").insert(1, "\"\xff\": 1, "),
      header_text("2").insert(1, "\"x\": \"\xed\xa0\x80\", "),
      header_text("-1"),
      header_text("3.5"),
      header_text("null"),
      R"({"byteorder": "little"})",
      "[]",
      "{",
  };
  co_await env.conn.write(frame_with_header(pick(headers, env.rng), "{}"));
  co_return co_await closed_silently(env.conn);
}

// A valid request, dribbled a few bytes at a time: answered as usual.
asio::awaitable<problem> slow_peer(scenario_env& env) {
  const auto [frame, value] = valid_request(env, "slow-peer", false);
  env.ctx.counts.sent();
  const auto started = clock_type::now();
  std::string_view rest = frame;
  while (!rest.empty()) {
    const std::size_t n = std::min<std::size_t>(rest.size(), 1 + env.rng() % 8);
    if (auto ec = co_await env.conn.write(rest.substr(0, n)); ec) {
      env.ctx.counts.lost("write_failed", "slow-peer: " + ec.message());
      co_return problem{};
    }
    rest.remove_prefix(n);
    if (clock_type::now() - started < 700ms) co_await sleep_for(ms(1 + env.rng() % 15));
  }
  co_await echo_answer(env.conn, env.ctx, "slow-peer", value);
  co_return co_await closed_silently(env.conn);
}

// Half a frame, then nothing: dropped after the idle timeout, not before.
asio::awaitable<problem> stalled_peer(scenario_env& env) {
  const auto [frame, value] = valid_request(env, "stalled", false);
  co_await env.conn.write(std::string_view(frame).substr(0, 1 + env.rng() % (frame.size() - 1)));
  const auto stalled_at = clock_type::now();
  if (auto p = co_await closed_silently(env.conn); !p.empty()) co_return p;
  const auto after = std::chrono::duration_cast<ms>(clock_type::now() - stalled_at);
  if (after < host_idle_timeout - 100ms || after > host_idle_timeout * 3 / 2 + 2000ms)
    co_return "dropped after " + std::to_string(after.count()) + " ms; the idle timeout is " +
              std::to_string(host_idle_timeout.count()) + " ms";
  co_return problem{};
}

// Part or all of a request, then a reset or a close: nothing to check here
// but that everyone else is still served.
asio::awaitable<problem> abandoned(scenario_env& env) {
  const auto [frame, value] = valid_request(env, "abandoned", env.rng() % 2 == 0);
  co_await env.conn.write(std::string_view(frame).substr(0, 1 + env.rng() % frame.size()));
  if (env.rng() % 2 == 0) co_await sleep_for(ms(env.rng() % 20));
  if (env.rng() % 3 == 0) env.conn.close();
  else
    env.conn.reset();
  co_return problem{};
}

// A good keep-alive request followed by a malformed frame in the same write:
// the good one is answered, then the connection closes without more.
asio::awaitable<problem> good_then_garbage(scenario_env& env) {
  const auto [frame, value] = valid_request(env, "good-then-garbage", true);
  env.ctx.counts.sent();
  co_await env.conn.write(frame + "\x00\x03{]}"s);
  co_await echo_answer(env.conn, env.ctx, "good-then-garbage", value);
  co_return co_await closed_silently(env.conn);
}

// Several tagged keep-alive requests in one write, to plain and coroutine
// handlers: each answered once, matched by request id.
asio::awaitable<problem> pipelined(scenario_env& env) {
  const std::size_t count = 2 + env.rng() % 7;
  std::map<std::uint64_t, json::value> waiting;
  std::string bytes;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t id = env.ctx.unique_id();
    json::value v = unique_value(id, "pipelined", env.rng);
    bytes += request_frame(env.rng() % 2 ? echo_action : slow_echo_action, v, true, id);
    waiting.emplace(id, std::move(v));
    env.ctx.counts.sent();
  }
  co_await env.conn.write(bytes);
  for (std::size_t i = 0; i < count; ++i) {
    std::string why_not;
    const auto f = co_await env.conn.read_frame(why_not);
    if (!f) break;
    const auto it = f->header.request_id ? waiting.find(*f->header.request_id) : waiting.end();
    if (it == waiting.end()) {
      env.ctx.counts.mismatched("pipelined: an answer with an unknown or missing request-id");
      continue;
    }
    try {
      check_echo(env.ctx.counts, "pipelined", it->second, comet::decode_response(f->content).result);
    } catch (const comet::error& e) {
      env.ctx.counts.lost("protocol_error", "pipelined: "s + e.what());
    }
    waiting.erase(it);
  }
  for (const auto& [id, v] : waiting)
    env.ctx.counts.lost("no_answer", "pipelined request-id " + std::to_string(id));
  env.conn.half_close();
  co_return co_await closed_silently(env.conn);
}

// A peer that sends requests and never reads the answers: the host must stop
// reading from it (backpressure) long before it has taken everything.
asio::awaitable<problem> non_reader(scenario_env& env) {
  constexpr std::size_t batch_requests = 32;
  constexpr std::size_t give_up_after = 64u << 20;
  const std::string one = request_frame(echo_action, json::string(16 * 1024, 'n'), true);
  std::string batch;
  for (std::size_t i = 0; i < batch_requests; ++i) batch += one;
  std::size_t written = 0;
  while (written < give_up_after) {
    if (!co_await env.conn.write_within(batch, 300ms)) break;
    written += batch.size();
  }
  env.conn.reset();
  if (written >= give_up_after)
    co_return "the host took " + std::to_string(written >> 20) +
              " MiB of requests from a peer that reads no answers";
  co_return problem{};
}

struct scenario {
  std::string_view name;
  double weight;
  asio::awaitable<problem> (*run)(scenario_env&);
};

constexpr std::array<scenario, 13> scenarios{{
    {"garbage", 10, garbage},
    {"truncated", 10, truncated},
    {"oversize", 8, oversize},
    {"bad_content", 10, bad_content_request},
    {"bad_then_good", 6, bad_then_good},
    {"bad_header", 6, bad_header},
    {"slow_peer", 3, slow_peer},
    {"stalled_peer", 1, stalled_peer},
    {"abandoned", 8, abandoned},
    {"good_then_garbage", 5, good_then_garbage},
    {"pipelined", 8, pipelined},
    {"non_reader", 1, non_reader},
    {"connect_only", 2, nullptr},
}};

std::discrete_distribution<std::size_t> scenario_choice() {
  std::vector<double> weights;
  for (const auto& s : scenarios) weights.push_back(s.weight);
  return {weights.begin(), weights.end()};
}

asio::awaitable<void> run_scenario(soak_context& ctx, const scenario& s, rng_type& rng) {
  raw_conn conn(co_await asio::this_coro::executor, clock_type::now() + scenario_limit);
  problem outcome;
  if (auto ec = co_await conn.connect(ctx.at); ec) {
    outcome = "cannot connect: " + ec.message();
  } else if (!s.run) {  // connect and close at once, as a port scanner does
    conn.close();
  } else {
    scenario_env env{ctx, rng, conn};
    outcome = co_await s.run(env);
  }
  ctx.counts.hostile(s.name, outcome);
}

}  // namespace

asio::awaitable<void> hostile_worker(soak_context& ctx, std::uint64_t seed) {
  rng_type rng(seed);
  auto choose = scenario_choice();
  while (!ctx.expired()) {
    const scenario& s = scenarios[choose(rng)];
    try {
      co_await run_scenario(ctx, s, rng);
    } catch (const std::exception& e) {
      ctx.counts.hostile(s.name, "the scenario threw: "s + e.what());
    }
  }
}

}  // namespace comet_soak
