#include <comet/client.hpp>

#include <comet/codec.hpp>
#include <comet/errors.hpp>
#include <comet/io_pool.hpp>
#include <comet/log.hpp>

#include "client_impl.hpp"
#include "spawn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/object.hpp>

#include <stdexcept>

namespace comet {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// The socket and its watchdog for one request. Both live on one strand, so
// the watchdog can close the socket without racing the coroutine.
struct exchange_state {
  exchange_state(const asio::any_io_executor& ex, asio::ssl::context* tls)
      : stream(tcp::socket(ex), tls), watchdog(ex) {}
  enum class phase { connecting, requesting };
  transport stream;
  asio::steady_timer watchdog;
  phase current = phase::connecting;
  std::optional<phase> timed_out;
};

void arm(const std::shared_ptr<exchange_state>& st, std::chrono::steady_clock::time_point deadline) {
  st->watchdog.expires_at(deadline);
  st->watchdog.async_wait([st, phase = st->current](boost::system::error_code ec) {
    if (ec || st->current != phase) return;
    st->timed_out = phase;
    st->stream.close();
  });
}

// True when blocking this thread could starve the executor that must run
// the work: the thread is running the io_context behind `ex`.
bool runs_on_this_thread(const asio::any_io_executor& ex) {
  using io_executor = asio::io_context::executor_type;
  if (auto* e = ex.target<io_executor>()) return e->running_in_this_thread();
  if (auto* s = ex.target<asio::strand<io_executor>>())
    return s->get_inner_executor().running_in_this_thread();
  if (auto* s = ex.target<asio::strand<asio::any_io_executor>>())
    return runs_on_this_thread(s->get_inner_executor());
  return false;
}

}  // namespace

std::string peer_info::describe() const {
  return options.name.empty() ? peer.to_string() : options.name + " at " + peer.to_string();
}

error peer_info::offline(const boost::system::error_code& ec) const {
  return error(errc::peer_offline,
               "cannot connect to " + describe() + ": " + ec.message() + "; is the host running?");
}

error peer_info::connect_timed_out() const {
  return error(errc::connect_timeout,
               "cannot connect to " + describe() + ": no answer within " +
                   std::to_string(std::min(options.connect_timeout, options.request_timeout).count()) +
                   " ms; is the host up and reachable?");
}

error peer_info::timed_out() const {
  return error(errc::request_timeout, describe() + " did not answer within " +
                                          std::to_string(options.request_timeout.count()) + " ms");
}

error peer_info::tls_failed(const boost::system::error_code& ec) const {
  return error(errc::tls_error,
               "TLS handshake with " + describe() + " failed: " + describe_tls_failure(ec));
}

asio::awaitable<boost::system::error_code> peer_info::handshake(transport& t) const {
  t.verify_peer_name(peer.ip);
  sessions->offer(t);
  auto [ec] = co_await t.tls().async_handshake(asio::ssl::stream_base::client, use_tuple);
  co_return ec;
}

error peer_info::tls_timed_out() const {
  return error(errc::tls_error,
               "TLS handshake with " + describe() + " did not finish within " +
                   std::to_string(std::min(options.connect_timeout, options.request_timeout).count()) +
                   " ms; does the host use TLS?");
}

error peer_info::lost(const boost::system::error_code& ec, std::string_view doing) const {
  // Hosts close TLS connections without close_notify (frames carry their
  // lengths): a truncated stream is an ordinary close.
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
    return error(errc::connection_closed,
                 describe() + " closed the connection before answering (its log says why; a "
                              "host using TLS closes plain connections)");
  // With TLS 1.3 a host rejects a client certificate after the client's
  // handshake is done: the refusal arrives as an alert on the first read.
  if (ec.category() == asio::error::get_ssl_category())
    return error(errc::tls_error, "TLS with " + describe() + " failed while " +
                                      std::string(doing) + ": " + describe_tls_failure(ec));
  return error(errc::connection_closed, "lost the connection to " + describe() + " while " +
                                            std::string(doing) + ": " + ec.message());
}

bool peer_info::retry_connect(const boost::system::error_code& ec, std::size_t attempt) const {
  return ec == asio::error::connection_refused && attempt < options.connect_retries;
}

std::chrono::milliseconds peer_info::retry_delay(std::size_t attempt) {
  return std::chrono::milliseconds(50) * (1 << std::min<std::size_t>(attempt, 6));
}

json::value peer_info::result_of(const frame_header& header, std::string_view content) const {
  if (!header.is_json())
    throw error(errc::protocol_error, describe() + " answered with content-type '" +
                                          header.content_type + "', not text/json");
  response_message response = decode_response(content);
  if (response.error)
    throw error(*response.error,
                describe() + " answered " + response.error_code + ": " + response.error_message);
  return std::move(response.result);
}

client::impl::impl(asio::any_io_executor ex, bool single_threaded,
                   std::shared_ptr<const peer_info> peer)
    : executor(std::move(ex)), info(std::move(peer)) {
  if (!info->options.keep_alive) return;
  asio::any_io_executor serial =
      single_threaded ? executor : asio::any_io_executor(asio::make_strand(executor));
  pool = std::make_shared<peer_pool>(std::move(serial), single_threaded, info);
}

client::impl::~impl() {
  if (pool) asio::post(pool->strand(), [pool = pool] { pool->shutdown(); });
}

asio::awaitable<json::value> client::impl::exchange(std::shared_ptr<const peer_info> info,
                                                    std::string frame) {
  const peer_info& peer = *info;
  const auto started = std::chrono::steady_clock::now();
  auto st = std::make_shared<exchange_state>(co_await asio::this_coro::executor, peer.tls.get());

  arm(st, started + std::min(peer.options.connect_timeout, peer.options.request_timeout));
  boost::system::error_code ignored;
  for (std::size_t attempt = 0;; ++attempt) {
    auto [connect_ec] = co_await st->stream.socket().async_connect(peer.target, use_tuple);
    if (st->timed_out) throw peer.connect_timed_out();
    if (!connect_ec) break;
    if (!peer.retry_connect(connect_ec, attempt)) throw peer.offline(connect_ec);
    st->stream.socket().close(ignored);  // the next async_connect opens it afresh
    asio::steady_timer backoff(st->stream.socket().get_executor(), peer_info::retry_delay(attempt));
    co_await backoff.async_wait(use_tuple);
    if (st->timed_out) throw peer.connect_timed_out();
  }
  st->stream.socket().set_option(tcp::no_delay(true), ignored);
  if (st->stream.secure()) {
    const auto handshake_ec = co_await peer.handshake(st->stream);
    if (st->timed_out) throw peer.tls_timed_out();
    if (handshake_ec) throw peer.tls_failed(handshake_ec);
  }
  st->current = exchange_state::phase::requesting;
  arm(st, started + peer.options.request_timeout);

  // A host may answer before it has read the whole request (too_large) and
  // close: a failed write is reported only if no answer can be read.
  auto [write_ec, written] = co_await st->stream.async_write(asio::buffer(frame), use_tuple);
  if (write_ec && st->timed_out) throw peer.timed_out();

  frame_decoder decoder(peer.options.max_content_length);
  std::string buffer(4096, '\0');
  std::size_t filled = 0;
  for (;;) {
    const auto status = decoder.decode({buffer.data(), filled});
    if (status == frame_decoder::status::complete) break;
    if (status != frame_decoder::status::need_more)
      throw error(errc::protocol_error, peer.describe() + " sent a bad frame: " + decoder.error());
    if (buffer.size() < decoder.bytes_needed())
      buffer.resize(std::max(decoder.bytes_needed(), 2 * buffer.size()));
    else if (filled == buffer.size())
      buffer.resize(2 * buffer.size());
    auto [ec, n] = co_await st->stream.async_read_some(
        asio::buffer(buffer.data() + filled, buffer.size() - filled), use_tuple);
    if (ec && st->timed_out) throw peer.timed_out();
    if (ec && write_ec) throw peer.lost(write_ec, "sending the request");
    if (ec) throw peer.lost(ec, "reading the answer");
    filled += n;
  }
  st->current = exchange_state::phase::connecting;  // disarms the watchdog
  st->watchdog.cancel();
  if (peer.sessions) peer.sessions->remember(st->stream);
  st->stream.close();
  co_return peer.result_of(decoder.header(), decoder.content());
}

client_options client_options::from_config(const config& cfg, std::string name) {
  client_options o;
  o.name = std::move(name);
  o.connect_timeout = cfg.framework.connect_timeout;
  o.request_timeout = cfg.framework.request_timeout;
  o.max_content_length = cfg.framework.max_content_length;
  o.keep_alive = cfg.framework.keep_alive;
  o.max_connections = cfg.framework.max_connections_per_peer;
  o.auth_token = cfg.framework.auth_token;
  o.tls = cfg.framework.tls;
  return o;
}

namespace {
std::shared_ptr<const peer_info> make_peer_info(endpoint peer, client_options options) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(peer.ip, ec);
  if (ec)
    throw std::invalid_argument("comet::client: '" + peer.ip +
                                "' is not an IP address (IPv4 or IPv6 literal expected)");
  tcp::endpoint target(address, peer.port);
  auto tls = make_client_tls_context(options.tls);
  auto sessions = tls ? std::make_shared<tls_session_cache>() : nullptr;
  return std::make_shared<const peer_info>(peer_info{std::move(peer), std::move(options), target,
                                                     std::move(tls), std::move(sessions)});
}
}  // namespace

client::client(asio::any_io_executor executor, endpoint peer, client_options options)
    : impl_(std::make_shared<const impl>(std::move(executor), false,
                                         make_peer_info(std::move(peer), std::move(options)))) {}

client::client(io_pool& pool, endpoint peer, client_options options)
    : impl_(std::make_shared<const impl>(pool.get_executor(), pool.single_threaded_contexts(),
                                         make_peer_info(std::move(peer), std::move(options)))) {}

asio::awaitable<json::value> client::send(std::string action, json::value value) const {
  auto self = impl_;
  if (self->pool) {
    if (self->pool->inline_ok())
      co_return co_await self->pool->send(std::move(action), std::move(value));
    co_return co_await asio::co_spawn(self->pool->strand(),
                                      self->pool->send(std::move(action), std::move(value)),
                                      asio::use_awaitable);
  }
  frame_header header;
  header.auth_token = self->info->options.auth_token;
  std::string frame = encode_frame(header, encode_request(action, value));
  // Named, not a temporary: GCC 12 destroys some temporaries of a co_await
  // full-expression twice.
  const auto strand = asio::make_strand(self->executor);
  co_return co_await asio::co_spawn(strand, impl::exchange(self->info, std::move(frame)),
                                    asio::use_awaitable);
}

json::value client::send_sync(std::string action, json::value value) const {
  if (runs_on_this_thread(impl_->executor))
    throw error(errc::would_deadlock,
                "send_sync to " + impl_->info->describe() +
                    " was called on a thread of the executor that must run it, which would "
                    "deadlock; in a coroutine or handler use `co_await client.send(...)`, or "
                    "`post(...)` to send in the background");
  auto answer = asio::co_spawn(impl_->executor, send(std::move(action), std::move(value)),
                               asio::use_future);
  return answer.get();
}

namespace {
asio::awaitable<void> send_in_background(client c, std::string action, json::value value) {
  try {
    co_await c.send(action, std::move(value));
  } catch (const error& e) {
    log(log_level::warn, "background send of action '" + action + "' failed: " + e.what());
  }
}
}  // namespace

void client::post(std::string action, json::value value) const {
  asio::co_spawn(impl_->executor, send_in_background(*this, std::move(action), std::move(value)),
                 detail::log_failure("background send"));
}

const endpoint& client::peer() const noexcept { return impl_->info->peer; }
const std::string& client::name() const noexcept { return impl_->info->options.name; }
const asio::any_io_executor& client::get_executor() const noexcept { return impl_->executor; }

client_set::client_set(asio::any_io_executor executor, const config& cfg) : source_(cfg.source) {
  for (const auto& [name, peer] : cfg.clients)
    clients_.emplace(name, client(executor, peer, client_options::from_config(cfg, name)));
}

bool client_set::contains(std::string_view name) const { return clients_.contains(name); }

const client& client_set::operator[](std::string_view name) const {
  if (auto it = clients_.find(name); it != clients_.end()) return it->second;
  std::string known;
  for (const auto& [n, c] : clients_) known += (known.empty() ? "" : ", ") + n;
  throw error(errc::unknown_client,
              "no client named '" + std::string(name) + "' in " +
                  (source_.empty() ? std::string("the config") : source_) + " (" +
                  (known.empty() ? std::string("no clients configured") : "configured: " + known) +
                  "); add [Socket_connection.Client." + std::string(name) + "] with IP and Port");
}

std::optional<json::value> send_tcp_message(const client& target, std::string action,
                                             json::value message, bool no_thread) {
  if (!no_thread) {
    target.post(std::move(action), std::move(message));
    return std::nullopt;
  }
  json::object response;
  response["result"] = target.send_sync(std::move(action), std::move(message));
  return json::value(std::move(response));
}

}  // namespace comet
