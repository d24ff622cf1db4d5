// One request on a connection of its own, as COMET sends every message;
// also what a keep-alive pool falls back to against a COMET host.
#include "client_impl.hpp"

#include "read_buffer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace comet {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// The connection of one one-shot exchange. close() reaches it through the
// tracker, on its own strand.
struct one_shot final : send_tracker::cancellable {
  one_shot(const asio::any_io_executor& ex, asio::ssl::context* tls)
      : stream(tcp::socket(ex), tls) {}
  void cancel_for_close() override {
    closed_by_client = true;
    stream.close();
  }
  const asio::any_io_executor& executor() const override { return ex_; }
  transport stream;
  asio::any_io_executor ex_ = stream.socket().get_executor();
  bool closed_by_client = false;
};

// Unlists a one-shot exchange from its tracker however the exchange ends.
struct tracked_scope {
  send_tracker& tracker;
  const send_tracker::cancellable* what;
  ~tracked_scope() { tracker.untrack(what); }
};

}  // namespace

asio::awaitable<json::value> one_shot_exchange(std::shared_ptr<const peer_info> info,
                                               send_tracker& tracker, std::string frame,
                                               std::chrono::milliseconds timeout,
                                               send_report* report) {
  // Our own errors say what a cancellation ended; Asio's default would throw
  // a bare operation_aborted at the next co_await.
  co_await asio::this_coro::throw_if_cancelled(false);
  co_await asio::this_coro::reset_cancellation_state(asio::enable_partial_cancellation());
  const auto cancellation = co_await asio::this_coro::cancellation_state;
  const peer_info& peer = *info;
  const auto started = std::chrono::steady_clock::now();
  auto st = std::make_shared<one_shot>(co_await asio::this_coro::executor, peer.tls.get());
  tracker.track(st);
  const tracked_scope scope{tracker, st.get()};
  // After close(), not after async_close(): that one waits for the sends
  // counted before it, which must run.
  if (tracker.closed_now()) throw peer.closed_meanwhile();

  // A failed operation that the caller or close() interrupted says so.
  auto interrupted = [&]() -> std::optional<error> {
    if (st->closed_by_client) return peer.closed_meanwhile();
    if (was_cancelled(cancellation)) return peer.cancelled();
    return std::nullopt;
  };

  st->stream.expires_at(started + std::min(peer.options.connect_timeout, timeout));
  try {
    co_await peer.connect(st->stream);
  } catch (const error&) {
    if (auto e = interrupted()) throw *e;
    throw;
  }
  // A cancellation that arrives while a step's completion is on its way is
  // recorded in the state but ends nothing: each step checks for it.
  if (auto e = interrupted()) throw *e;
  st->stream.expires_at(started + timeout);

  // A host may answer before it has read the whole request (too_large) and
  // close: a failed write is reported only if no answer can be read.
  auto [write_ec, written] = co_await st->stream.async_write(asio::buffer(frame), use_tuple);
  if (write_ec && st->stream.expired()) throw peer.timed_out(timeout);
  if (auto e = interrupted()) throw *e;

  frame_decoder decoder(peer.options.max_content_length);
  read_buffer in;
  for (;;) {
    const auto status = decoder.decode(in.data());
    if (status == frame_decoder::status::complete) break;
    if (status != frame_decoder::status::need_more)
      throw error(errc::protocol_error, peer.describe() + " sent a bad frame: " + decoder.error());
    if (auto e = interrupted()) throw *e;
    auto [room, size] = in.prepare(decoder.bytes_needed());
    auto [ec, n] = co_await st->stream.async_read_some(asio::buffer(room, size), use_tuple);
    if (ec) {
      if (st->stream.expired()) throw peer.timed_out(timeout);
      if (auto e = interrupted()) throw *e;
      throw write_ec ? peer.lost(write_ec, "sending the request") : peer.lost(ec, "reading the answer");
    }
    in.commit(n);
  }
  st->stream.expires_never();
  if (report) report->answer_bytes = decoder.content().size();
  if (peer.sessions) peer.sessions->remember(st->stream);
  st->stream.close();
  co_return peer.result_of(decoder.header(), decoder.content());
}

}  // namespace comet
