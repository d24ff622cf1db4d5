// The host's HTTP listener for Prometheus, with Boost.Beast: one coroutine
// per connection on the listener's strand, reading requests with a bounded
// parser under the stream's expiry (Beast's basic_stream, the one timeout
// discipline), answering GET /metrics, 404 and 405, keep-alive allowed.
#include "metrics_listener.hpp"

#include <comet/errors.hpp>
#include <comet/log.hpp>

#include "spawn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <list>
#include <optional>

namespace comet {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";
// How long a refused request's connection is drained before it closes, so
// that its peer reads the refusal rather than a reset.
constexpr auto linger = std::chrono::milliseconds(500);

http::response<http::string_body> plain(http::status status, unsigned version, bool keep_alive,
                                        std::string body) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  return res;
}

}  // namespace

struct metrics_listener::state : std::enable_shared_from_this<state> {
  state(asio::any_io_executor executor, std::function<std::string()> render_text,
        metrics_listener_limits l)
      : strand(asio::make_strand(executor)),
        acceptor(strand),
        render(std::move(render_text)),
        limits(l) {}

  asio::strand<asio::any_io_executor> strand;
  tcp::acceptor acceptor;
  std::function<std::string()> render;
  metrics_listener_limits limits;
  // On the strand only.
  bool stopped = false;
  std::list<beast::tcp_stream*> open;  // each connection's stream, to close at stop
  std::string where;                   // "127.0.0.1:9464", for log lines

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(tcp::socket socket);
  http::response<http::string_body> answer(const http::request<http::string_body>& req) const;
  void close_all();
};

asio::awaitable<void> metrics_listener::state::accept_loop() {
  auto self = shared_from_this();
  while (!stopped) {
    auto [ec, socket] = co_await acceptor.async_accept(strand, use_tuple);
    if (ec) {
      if (stopped || ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      log(log_level::warn, "metrics " + where + ": accept failed: " + ec.message());
      continue;
    }
    if (open.size() >= limits.max_connections) {
      log(log_level::debug, "metrics " + where + ": " + std::to_string(open.size()) +
                                " connections open already; closing a new one");
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    asio::co_spawn(strand, serve(std::move(socket)), detail::log_failure("metrics connection"));
  }
}

http::response<http::string_body> metrics_listener::state::answer(
    const http::request<http::string_body>& req) const {
  const std::string_view target(req.target().data(), req.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics")
    return plain(http::status::not_found, req.version(), req.keep_alive(),
                 "not found: this listener serves GET /metrics only\n");
  if (req.method() != http::verb::get) {
    auto res = plain(http::status::method_not_allowed, req.version(), req.keep_alive(),
                     "method not allowed: use GET /metrics\n");
    res.set(http::field::allow, "GET");
    return res;
  }
  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::content_type, content_type);
  res.keep_alive(req.keep_alive());
  res.body() = render();
  return res;
}

asio::awaitable<void> metrics_listener::state::serve(tcp::socket socket) {
  auto self = shared_from_this();
  beast::tcp_stream stream(std::move(socket));
  open.push_front(&stream);
  const auto position = open.begin();
  beast::flat_buffer buffer(limits.max_header_bytes + limits.max_body_bytes + 1024);
  bool refused = false;
  while (!stopped) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header_bytes));
    parser.body_limit(limits.max_body_bytes);
    stream.expires_after(limits.idle_timeout);
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
    if (stopped) break;
    std::optional<http::response<http::string_body>> res;
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      res = plain(http::status::request_header_fields_too_large, 11, false,
                  "the request's header is larger than " +
                      std::to_string(limits.max_header_bytes) + " bytes\n");
    } else if (ec == http::error::body_limit) {
      res = plain(http::status::payload_too_large, 11, false,
                  "the request's body is larger than " + std::to_string(limits.max_body_bytes) +
                      " bytes\n");
    } else if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
               ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
               ec == asio::error::eof) {
      break;
    } else if (ec) {
      res = plain(http::status::bad_request, 11, false, "bad request: " + ec.message() + "\n");
    } else {
      res = answer(parser.get());
    }
    refused = ec.failed();
    res->prepare_payload();
    stream.expires_after(limits.idle_timeout);
    auto [write_ec, written] = co_await http::async_write(stream, *res, use_tuple);
    if (write_ec || !res->keep_alive() || stopped) break;
  }
  boost::system::error_code ignored;
  if (refused && !stopped) {
    // What the peer still sends is read and dropped for a moment, so that
    // closing does not reset the connection under the refusal.
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.expires_after(linger);
    char sink[4096];
    for (std::size_t drained = 0; !stopped && drained < 64 * 1024;) {
      auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), use_tuple);
      if (ec) break;
      drained += n;
    }
  }
  stream.close();
  open.erase(position);
}

void metrics_listener::state::close_all() {
  stopped = true;
  boost::system::error_code ignored;
  acceptor.close(ignored);
  for (auto* stream : open) stream->close();
}

metrics_listener::metrics_listener(asio::any_io_executor executor,
                                   std::function<std::string()> render,
                                   metrics_listener_limits limits)
    : state_(std::make_shared<state>(std::move(executor), std::move(render), limits)) {}

// The host stops the listener (host::stop, ~host); a never started one
// holds no work.
metrics_listener::~metrics_listener() = default;

endpoint metrics_listener::start(const endpoint& at) {
  const auto fail = [&](const std::string& why) {
    return error(errc::bind_failed, "cannot serve metrics on " + at.to_string() + ": " + why);
  };
  boost::system::error_code ec;
  tcp::endpoint where;
  if (at.is_address()) {
    where = tcp::endpoint(asio::ip::make_address(at.ip, ec), at.port);
    if (ec) throw fail(ec.message());
  } else {
    tcp::resolver resolver(state_->strand);
    const auto results = resolver.resolve(at.ip, std::to_string(at.port), ec);
    if (ec || results.empty())
      throw fail("the host name '" + at.ip + "' does not resolve (" +
                 (ec ? ec.message() : std::string("no addresses")) + ")");
    where = results.begin()->endpoint();
  }
  auto& acceptor = state_->acceptor;
  acceptor.open(where.protocol(), ec);
  if (!ec) acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(where, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  tcp::endpoint local;
  if (!ec) local = acceptor.local_endpoint(ec);
  if (ec) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    throw fail(ec.message() + (ec == asio::error::address_in_use
                                   ? "; another program holds the port: pick another "
                                     "metrics_listen port or stop that program"
                                   : ""));
  }
  const endpoint bound{local.address().to_string(), local.port()};
  state_->where = bound.to_string();
  asio::co_spawn(state_->strand, state_->accept_loop(), detail::log_failure("metrics accept loop"));
  log(log_level::info, "host metrics at http://" + state_->where + "/metrics");
  return bound;
}

void metrics_listener::stop() {
  asio::post(state_->strand, [s = state_] { s->close_all(); });
}

}  // namespace comet
