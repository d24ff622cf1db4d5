#include "raw_conn.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace comet_soak {
namespace {

using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;
// Answers are small; anything bigger is not a frame this soak expects.
constexpr std::size_t largest_answer = 1 << 20;

}  // namespace

// Shared with the timers' handlers, which may run after the raw_conn is gone.
struct raw_conn::state {
  explicit state(const asio::any_io_executor& ex) : socket(ex), watchdog(ex), patience(ex) {}
  tcp::socket socket;
  asio::steady_timer watchdog;  // closes the socket at the deadline
  asio::steady_timer patience;  // cancels a write_within that waits too long
  bool timed_out = false;
  // Which write_within the patience timer is for; 0 when none is running.
  std::uint64_t waiting_write = 0;
  std::uint64_t writes = 0;
};

raw_conn::raw_conn(asio::any_io_executor serial, clock_type::time_point deadline)
    : st_(std::make_shared<state>(serial)) {
  st_->watchdog.expires_at(deadline);
  st_->watchdog.async_wait([st = st_](boost::system::error_code ec) {
    if (ec) return;
    st->timed_out = true;
    boost::system::error_code ignored;
    st->socket.close(ignored);
  });
}

raw_conn::~raw_conn() {
  st_->watchdog.cancel();
  st_->patience.cancel();
  close();
}

boost::system::error_code raw_conn::outcome(boost::system::error_code ec) const {
  if (ec && st_->timed_out) return asio::error::timed_out;
  return ec;
}

asio::awaitable<boost::system::error_code> raw_conn::connect(const comet::endpoint& to) {
  const tcp::endpoint target(asio::ip::make_address(to.ip), to.port);
  auto [ec] = co_await st_->socket.async_connect(target, use_tuple);
  co_return outcome(ec);
}

asio::awaitable<boost::system::error_code> raw_conn::write(std::string_view bytes) {
  auto [ec, n] = co_await asio::async_write(st_->socket, asio::buffer(bytes), use_tuple);
  co_return outcome(ec);
}

asio::awaitable<bool> raw_conn::write_within(std::string_view bytes,
                                             std::chrono::milliseconds patience) {
  const std::uint64_t this_write = ++st_->writes;
  st_->waiting_write = this_write;
  st_->patience.expires_after(patience);
  st_->patience.async_wait([st = st_, this_write](boost::system::error_code ec) {
    if (ec || st->waiting_write != this_write) return;  // finished in time
    boost::system::error_code ignored;
    st->socket.cancel(ignored);
  });
  auto [ec, n] = co_await asio::async_write(st_->socket, asio::buffer(bytes), use_tuple);
  st_->waiting_write = 0;
  st_->patience.cancel();
  co_return !ec;
}

asio::awaitable<std::optional<raw_conn::frame>> raw_conn::read_frame(std::string& why_not) {
  comet::frame_decoder decoder(largest_answer);
  for (;;) {
    const auto status = decoder.decode({in_.data(), filled_});
    if (status == comet::frame_decoder::status::complete) {
      frame f{decoder.header(), std::string(decoder.content())};
      in_.erase(0, decoder.frame_size());
      filled_ -= decoder.frame_size();
      co_return f;
    }
    if (status != comet::frame_decoder::status::need_more) {
      why_not = "the host sent a bad frame: " + decoder.error();
      co_return std::nullopt;
    }
    if (in_.size() < filled_ + read_chunk) in_.resize(filled_ + read_chunk);
    auto [ec, n] = co_await st_->socket.async_read_some(
        asio::buffer(in_.data() + filled_, in_.size() - filled_), use_tuple);
    if (ec) {
      why_not = "the read ended with '" + outcome(ec).message() + "' after " +
                std::to_string(filled_) + " bytes of a frame";
      co_return std::nullopt;
    }
    filled_ += n;
  }
}

asio::awaitable<raw_conn::ending> raw_conn::read_to_end() {
  ending end{filled_, {}};
  filled_ = 0;
  char chunk[4096];
  for (;;) {
    auto [ec, n] = co_await st_->socket.async_read_some(asio::buffer(chunk), use_tuple);
    if (ec) {
      end.ec = outcome(ec);
      co_return end;
    }
    end.bytes += n;
  }
}

void raw_conn::half_close() {
  boost::system::error_code ignored;
  st_->socket.shutdown(tcp::socket::shutdown_send, ignored);
}

void raw_conn::close() {
  boost::system::error_code ignored;
  st_->socket.close(ignored);
}

void raw_conn::reset() {
  boost::system::error_code ignored;
  st_->socket.set_option(asio::socket_base::linger(true, 0), ignored);
  st_->socket.close(ignored);
}

}  // namespace comet_soak
