#include <comet/host.hpp>

#include <comet/codec.hpp>
#include <comet/log.hpp>

#include "spawn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <cstring>
#include <list>
#include <mutex>

namespace comet {
namespace {

using tcp = asio::ip::tcp;
using strand_type = asio::strand<asio::any_io_executor>;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

constexpr std::size_t initial_read_size = 4096;

// One accepted socket. Everything but `strand` is touched only on the strand.
struct connection {
  explicit connection(tcp::socket s, strand_type st) : socket(std::move(s)), strand(std::move(st)) {}
  tcp::socket socket;
  strand_type strand;
  bool busy = false;  // a request has been read and is not answered yet
  std::list<std::shared_ptr<connection>>::iterator position;
};

}  // namespace

struct host::impl : std::enable_shared_from_this<host::impl> {
  impl(asio::any_io_executor ex, host_options opts)
      : executor(std::move(ex)),
        options(std::move(opts)),
        control(asio::make_strand(executor)),
        acceptor(control),
        drained(control, asio::steady_timer::time_point::max()),
        force_close(control) {}

  asio::any_io_executor executor;
  host_options options;
  action_router router;
  strand_type control;  // acceptor, timers
  tcp::acceptor acceptor;
  asio::steady_timer drained;
  asio::steady_timer force_close;
  endpoint bound;

  std::atomic<bool> started{false};
  std::atomic<bool> accepting{false};
  std::atomic<bool> stopping{false};
  std::chrono::steady_clock::time_point start_time{};

  std::atomic<std::uint64_t> requests_served{0};
  std::atomic<std::uint64_t> error_responses{0};
  std::atomic<std::uint64_t> connections_accepted{0};

  std::mutex connections_mutex;
  std::list<std::shared_ptr<connection>> connections;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::shared_ptr<connection> conn);
  asio::awaitable<encoded_response> answer(const frame_header& header, std::string_view content,
                                      const endpoint& peer);

  void close_connections(bool idle_only) {
    std::lock_guard lock(connections_mutex);
    for (auto& conn : connections)
      asio::post(conn->strand, [conn, idle_only] {
        if (idle_only && conn->busy) return;
        boost::system::error_code ignored;
        conn->socket.close(ignored);
      });
  }

  void forget(const std::shared_ptr<connection>& conn) {
    bool now_drained = false;
    {
      std::lock_guard lock(connections_mutex);
      connections.erase(conn->position);
      now_drained = connections.empty();
    }
    if (now_drained && stopping) notify_if_drained();
  }

  bool is_drained() {
    std::lock_guard lock(connections_mutex);
    return connections.empty() && !accepting;
  }

  void notify_if_drained() {
    asio::post(control, [self = shared_from_this()] {
      if (self->is_drained()) {
        self->drained.cancel();
        self->force_close.cancel();
      }
    });
  }

  void begin_stop() {
    if (stopping.exchange(true)) return;
    asio::post(control, [self = shared_from_this()] {
      boost::system::error_code ignored;
      self->acceptor.close(ignored);
      self->close_connections(/*idle_only=*/true);
      self->force_close.expires_after(self->options.shutdown_timeout);
      self->force_close.async_wait([self](boost::system::error_code ec) {
        if (ec) return;
        if (!self->is_drained())
          log(log_level::warn, "host " + self->bound.to_string() +
                                   ": shutdown timeout reached, closing connections with "
                                   "requests still in flight");
        self->close_connections(/*idle_only=*/false);
      });
    });
  }
};

asio::awaitable<void> host::impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    auto strand = asio::make_strand(executor);
    auto [ec, socket] = co_await acceptor.async_accept(asio::any_io_executor(strand), use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      log(log_level::warn, "host " + bound.to_string() + ": accept failed: " + ec.message());
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
          ec == asio::error::no_memory) {
        // Out of file descriptors: wait for some to be released, then retry.
        asio::steady_timer backoff(control, std::chrono::milliseconds(100));
        co_await backoff.async_wait(use_tuple);
      }
      continue;
    }
    if (stopping) break;
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto conn = std::make_shared<connection>(std::move(socket), strand);
    {
      std::lock_guard lock(connections_mutex);
      connections.push_front(conn);
      conn->position = connections.begin();
    }
    ++connections_accepted;
    asio::co_spawn(conn->strand, serve(conn), detail::log_failure("host connection"));
  }
  accepting = false;
  notify_if_drained();
}

asio::awaitable<encoded_response> host::impl::answer(const frame_header& header,
                                                std::string_view content, const endpoint& peer) {
  if (!header.is_json())
    co_return error_response(
        errc::bad_request, "content-type '" + header.content_type +
                               "' is not supported: this host answers text/json requests");
  std::string why;
  auto request = decode_request(content, why);
  if (!request) co_return error_response(errc::bad_request, why);
  if (stopping)
    co_return error_response(errc::shutting_down, "the host is shutting down; try again later");
  request_context context{peer, header.request_id, executor};
  co_return co_await router.dispatch(request->action, request->value, context);
}

asio::awaitable<void> host::impl::serve(std::shared_ptr<connection> conn) {
  auto self = shared_from_this();
  tcp::socket& socket = conn->socket;
  endpoint peer;
  {
    boost::system::error_code ec;
    auto remote = socket.remote_endpoint(ec);
    if (!ec) peer = endpoint{remote.address().to_string(), remote.port()};
  }

  std::string buffer;  // bytes [0, filled) are received and not yet consumed
  std::size_t filled = 0;
  frame_decoder decoder(options.max_content_length);
  std::string out;

  for (bool keep_open = true; keep_open;) {
    auto status = decoder.decode({buffer.data(), filled});
    while (status == frame_decoder::status::need_more) {
      if (stopping && filled == 0) break;
      const std::size_t want =
          std::min(decoder.bytes_needed(), std::max(filled + initial_read_size, 2 * buffer.size()));
      if (buffer.size() < want) buffer.resize(std::max(want, filled + initial_read_size));
      auto [ec, n] = co_await socket.async_read_some(
          asio::buffer(buffer.data() + filled, buffer.size() - filled), use_tuple);
      if (ec) {
        if (filled != 0 && ec != asio::error::operation_aborted)
          log(log_level::warn, "host: " + peer.to_string() + " closed the connection mid-frame (" +
                                   ec.message() + "); dropping " + std::to_string(filled) +
                                   " bytes");
        break;
      }
      filled += n;
      status = decoder.decode({buffer.data(), filled});
    }

    if (status == frame_decoder::status::need_more) break;  // closed or stopping
    if (status == frame_decoder::status::malformed) {
      log(log_level::warn, "host: malformed frame from " + peer.to_string() + ": " +
                               decoder.error() + "; closing the connection");
      break;
    }

    conn->busy = true;
    frame_header response_header;
    response_header.request_id = decoder.header().request_id;
    encoded_response response;
    if (status == frame_decoder::status::too_large) {
      log(log_level::warn, "host: " + peer.to_string() + ": " + decoder.error() +
                               "; answering too_large and closing");
      response = error_response(errc::too_large, decoder.error());
      keep_open = false;
    } else {
      keep_open = decoder.header().keep_alive && !stopping;
      response_header.keep_alive = keep_open;
      response = co_await answer(decoder.header(), decoder.content(), peer);
      const std::size_t used = decoder.frame_size();
      std::memmove(buffer.data(), buffer.data() + used, filled - used);
      filled -= used;
      if (stopping) keep_open = false;
      response_header.keep_alive = keep_open;
    }
    decoder.reset();
    ++requests_served;
    if (response.error) ++error_responses;

    out.clear();
    append_frame(out, response_header, response.content);
    auto [ec, written] = co_await asio::async_write(socket, asio::buffer(out), use_tuple);
    conn->busy = false;
    if (ec) {
      log(log_level::warn, "host: cannot answer " + peer.to_string() + ": " + ec.message());
      break;
    }
  }

  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  socket.close(ignored);
  forget(conn);
}

host_options host_options::from_config(const config& cfg) {
  host_options o;
  o.listen = cfg.host;
  o.max_content_length = cfg.framework.max_content_length;
  o.shutdown_timeout = cfg.framework.shutdown_timeout;
  return o;
}

host::host(asio::any_io_executor executor, host_options options)
    : impl_(std::make_shared<impl>(std::move(executor), std::move(options))) {}

host::host(asio::any_io_executor executor, const config& cfg)
    : host(std::move(executor), host_options::from_config(cfg)) {}

host::~host() {
  if (!impl_->started) return;
  impl_->stopping = true;
  asio::post(impl_->control, [self = impl_] {
    boost::system::error_code ignored;
    self->acceptor.close(ignored);
    self->force_close.cancel();
    self->close_connections(/*idle_only=*/false);
  });
}

action_router& host::router() {
  if (impl_->started)
    throw std::logic_error("comet::host: register handlers before start()");
  return impl_->router;
}

endpoint host::start() {
  if (impl_->started.exchange(true))
    throw std::logic_error("comet::host::start() called twice");
  const endpoint& want = impl_->options.listen;
  auto fail = [&](const std::string& why) -> error {
    impl_->started = false;
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    return error(errc::bind_failed, "cannot listen on " + want.to_string() + ": " + why);
  };
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(want.ip, ec);
  if (ec) throw fail("'" + want.ip + "' is not an IP address");
  const tcp::endpoint ep(address, want.port);
  tcp::acceptor& acceptor = impl_->acceptor;
  if (acceptor.open(ep.protocol(), ec); ec) throw fail(ec.message());
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (acceptor.bind(ep, ec); ec)
    throw fail(ec.message() + (ec == asio::error::address_in_use
                                   ? "; another program holds the port: pick another Port "
                                     "or stop that program"
                                   : ""));
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) throw fail(ec.message());
  const auto local = acceptor.local_endpoint();
  impl_->bound = endpoint{local.address().to_string(), local.port()};
  impl_->start_time = std::chrono::steady_clock::now();
  impl_->accepting = true;
  asio::co_spawn(impl_->control, impl_->accept_loop(), detail::log_failure("host accept loop"));
  log(log_level::info, "host listening on " + impl_->bound.to_string());
  return impl_->bound;
}

endpoint host::local_endpoint() const { return impl_->bound; }

bool host::running() const noexcept { return impl_->started && !impl_->stopping; }

void host::stop() {
  if (!impl_->started) return;
  impl_->begin_stop();
}

asio::awaitable<void> host::async_stop() {
  auto self = impl_;
  if (!self->started) co_return;
  self->begin_stop();
  // The drained timer is only touched on the control strand; it never
  // expires on its own and is cancelled once the last connection is gone.
  // A named initiation, not a temporary: GCC 12 may destroy a lambda
  // temporary in a co_await expression twice.
  auto wait_until_drained = [self](auto handler) {
    asio::post(self->control, [self, handler = std::move(handler)]() mutable {
      // Completing through the handler's own executor, never inline:
      // the coroutine must resume where it runs, not on this strand.
      if (self->is_drained()) return asio::post(std::move(handler));
      self->drained.async_wait([handler = std::move(handler)](boost::system::error_code) mutable {
        asio::post(std::move(handler));
      });
    });
  };
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(wait_until_drained,
                                                                      asio::use_awaitable);
  log(log_level::info, "host " + self->bound.to_string() + " stopped");
}

host_stats host::stats() const {
  host_stats s;
  if (impl_->started) s.uptime = std::chrono::steady_clock::now() - impl_->start_time;
  s.requests_served = impl_->requests_served;
  s.error_responses = impl_->error_responses;
  s.connections_accepted = impl_->connections_accepted;
  std::lock_guard lock(impl_->connections_mutex);
  s.connections_open = impl_->connections.size();
  return s;
}

}  // namespace comet
