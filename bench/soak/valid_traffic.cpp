// Valid traffic through comet::client: one-shot sends (a connection per
// request, COMET's way) and keep-alive sends multiplexed on a shared pool.
// Each request either comes back exactly or fails with the error its action
// is meant to cause; anything else is lost or mismatched.
#include "soak.hpp"

#include <comet/codec.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <exception>

namespace comet_soak {
namespace {

using namespace asio::experimental::awaitable_operators;

// One request: what to send and the error it must cause, if any.
struct planned_request {
  std::string action;
  json::value value;
  std::optional<comet::errc> expected_error;
};

planned_request plan(soak_context& ctx, std::string_view via, rng_type& rng) {
  const auto roll = rng() % 100;
  if (roll < 3)
    return {std::string(echo_action), oversize_value(ctx.unique_id(), rng), comet::errc::too_large};
  if (roll < 5) return {std::string(unknown_action), ctx.fresh_value(via, rng), comet::errc::no_handler};
  if (roll < 15) return {std::string(fail_action), ctx.fresh_value(via, rng), comet::errc::handler_failed};
  if (roll < 40) return {std::string(slow_echo_action), ctx.fresh_value(via, rng), std::nullopt};
  return {std::string(echo_action), ctx.fresh_value(via, rng), std::nullopt};
}

std::string id_of(const json::value& v) {
  if (const auto* o = v.if_object())
    if (const auto* id = o->if_contains("id")) return comet::to_json_text(*id);
  return "?";
}

void record_error(soak_context& ctx, std::string_view via, const planned_request& request,
                  const comet::error& e) {
  const std::string code = code_name(e.code());
  if (e.code().category() == comet::error_category() &&
      !comet::wire_name(static_cast<comet::errc>(e.code().value())).empty())
    ctx.counts.wire_error(code);
  if (request.expected_error && e.code() == *request.expected_error) {
    ctx.counts.expected_error(code);
    return;
  }
  if (request.expected_error == comet::errc::too_large &&
      e.code() == comet::errc::connection_closed && via == "one-shot") {
    // The host answered too_large and closed; the client, still writing
    // the content, failed on the write and never read the answer.
    ctx.counts.unread_error("too_large");
    ctx.counts.known_issue("client_loses_too_large", std::string(via) + " id " +
                                                         id_of(request.value) + ": " + e.what());
    return;
  }
  ctx.counts.lost(code, std::string(via) + " " + request.action + " id " + id_of(request.value) +
                            ": " + e.what());
}

asio::awaitable<void> send_one(soak_context& ctx, const comet::client& client,
                               std::string_view via, rng_type& rng) {
  const planned_request request = plan(ctx, via, rng);
  ctx.counts.sent();
  try {
    const json::value result = co_await client.send(request.action, request.value);
    if (request.expected_error)
      ctx.counts.mismatched(std::string(via) + " " + request.action + " id " + id_of(request.value) +
                            " was answered, but should have failed with " +
                            code_name(*request.expected_error));
    else
      check_echo(ctx.counts, via, request.value, result);
  } catch (const comet::error& e) {
    record_error(ctx, via, request, e);
  } catch (const std::exception& e) {
    ctx.counts.lost("exception", std::string(via) + " id " + id_of(request.value) + ": " + e.what());
  }
}

}  // namespace

void check_echo(tally& counts, std::string_view via, const json::value& sent,
                const json::value& result) {
  if (result == sent) {
    counts.answered();
    return;
  }
  counts.mismatched(std::string(via) + " id " + id_of(sent) + ": sent " +
                    comet::to_json_text(sent).substr(0, 150) + ", got " +
                    comet::to_json_text(result).substr(0, 150));
}

asio::awaitable<void> one_shot_worker(soak_context& ctx, std::uint64_t seed) {
  rng_type rng(seed);
  while (!ctx.expired()) co_await send_one(ctx, ctx.one_shot, "one-shot", rng);
}

// Bursts of four concurrent sends, so that the pool multiplexes requests from
// many workers on its few connections.
asio::awaitable<void> keep_alive_worker(soak_context& ctx, std::uint64_t seed) {
  rng_type rng(seed);
  const comet::client& c = ctx.keep_alive;
  while (!ctx.expired())
    co_await (send_one(ctx, c, "keep-alive", rng) && send_one(ctx, c, "keep-alive", rng) &&
              send_one(ctx, c, "keep-alive", rng) && send_one(ctx, c, "keep-alive", rng));
}

}  // namespace comet_soak
