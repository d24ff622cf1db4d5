// A connection past max_connections is not closed bare (its sender could
// not tell that from a request the host lost): its first request is read
// and answered host_full, which says the host did not run it, and then it
// closes. Bounded: at most max_refusing at once (each holds a socket and a
// few hundred bytes; past it, a bare close), each within refusal_deadline,
// reading at most refusal_read_limit bytes.
#include "host_impl.hpp"

#include <comet/handlers.hpp>
#include <comet/log.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>

namespace comet {
namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto refusal_deadline = std::chrono::seconds(1);
// Content past this is not waited for: the answer goes out after the header.
constexpr std::size_t refusal_content_limit = 64 * 1024;
constexpr std::size_t refusal_read_limit = 1024 * 1024;

asio::awaitable<void> answer_full(std::shared_ptr<tcp::socket> held, std::size_t max_connections) {
  tcp::socket& socket = *held;
  asio::steady_timer deadline(socket.get_executor(), refusal_deadline);
  deadline.async_wait([held](boost::system::error_code ec) {
    if (ec) return;
    boost::system::error_code ignored;
    held->close(ignored);
  });
  // Small buffers: a flood of refused connections is what this answers.
  frame_decoder decoder(refusal_content_limit);
  std::string in;
  std::size_t received = 0;
  for (;;) {
    const auto status = decoder.decode(std::string_view(in.data(), received));
    if (status == frame_decoder::status::malformed) co_return;  // nothing to answer
    if (status != frame_decoder::status::need_more) break;      // complete, or header read
    in.resize(std::max({decoder.bytes_needed(), received + 256, in.size()}));
    auto [ec, n] = co_await socket.async_read_some(
        asio::buffer(in.data() + received, in.size() - received), use_tuple);
    if (ec) co_return;
    received += n;
  }
  frame_header h;
  h.request_id = decoder.header().request_id;
  const auto refusal = error_response(
      errc::host_full, "the host has " + std::to_string(max_connections) +
                           " connections open (max_connections) and did not read this request; "
                           "it is safe to send it again, later or to another host");
  std::string frame = encode_frame(h, refusal.content);
  auto [write_ec, written] = co_await asio::async_write(socket, asio::buffer(frame), use_tuple);
  if (write_ec) co_return;
  // Closing with unread bytes would reset the connection, and the answer
  // with it: what the peer still sends is read and dropped until it closes.
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  std::size_t drained = received;
  // What is drained is dropped: the refusals of a thread share one sink.
  thread_local char sink[16 * 1024];
  while (drained < refusal_read_limit) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink, sizeof sink), use_tuple);
    if (ec) break;
    drained += n;
  }
  deadline.cancel();
}

}  // namespace

void host::impl::refuse_full(tcp::socket socket) {
  // A TLS peer could only read an answer after a handshake: it is closed.
  if (tls || refusing.fetch_add(1, std::memory_order_relaxed) >= max_refusing) {
    if (!tls) refusing.fetch_sub(1, std::memory_order_relaxed);
    boost::system::error_code ignored;
    socket.close(ignored);
    return;
  }
  const auto ex = socket.get_executor();
  auto held = std::make_shared<tcp::socket>(std::move(socket));
  asio::co_spawn(ex, answer_full(std::move(held), options.max_connections),
                 [self = shared_from_this()](std::exception_ptr) {
                   self->refusing.fetch_sub(1, std::memory_order_relaxed);
                 });
}

}  // namespace comet
