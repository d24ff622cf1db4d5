#include "baseline_server.hpp"

#include "wire.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>
#include <boost/json/monotonic_resource.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/serializer.hpp>
#include <boost/json/value.hpp>

#include <cstring>
#include <optional>
#include <string_view>
#include <pthread.h>
#include <thread>

namespace comet_bench {
namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t initial_buffer = 64 * 1024;
// Stop reading from a peer that does not read its answers.
constexpr std::size_t max_unsent = 4 * 1024 * 1024;

// Parses request contents and writes answers. One per server: the server is
// single-threaded, so its parsers and arenas are reused by every connection.
class echo_responder {
 public:
  echo_responder() : parser_(json::storage_ptr(), {}, temp_, sizeof temp_) {}

  // Appends the whole response frame for one request to `out`.
  void answer(std::string& out, const frame_info& info, std::string_view content) {
    body_.clear();
    if (!info.json) {
      error(R"(bad_request)", "content-type is not text/json");
    } else {
      json::monotonic_resource arena(arena_, sizeof arena_);
      parser_.reset(&arena);
      boost::system::error_code ec;
      parser_.write(content, ec);
      if (ec) {
        error("bad_request", "content is not JSON");
      } else {
        const json::value request = parser_.release();
        const json::object* obj = request.if_object();
        const json::value* action = obj ? obj->if_contains("action") : nullptr;
        if (!action || !action->is_string()) {
          error("bad_request", "content has no string \\\"action\\\"");
        } else if (action->get_string() != "echo") {
          error("no_handler", "no handler answered the action");
        } else {
          body_ += R"({"result": )";
          const json::value* value = obj->if_contains("value");
          if (value)
            append_json(*value);
          else
            body_ += "null";
          body_ += '}';
        }
      }
    }
    append_frame(out, body_, info.keep_alive, info.request_id);
  }

  header_parser headers;

 private:
  void error(std::string_view code, std::string_view message) {
    body_ += R"({"result": "Error: )";
    body_ += message;
    body_ += R"(", "error": {"code": ")";
    body_ += code;
    body_ += R"(", "message": ")";
    body_ += message;
    body_ += "\"}}";
  }

  void append_json(const json::value& v) {
    serializer_.reset(&v);
    char chunk[4096];
    while (!serializer_.done()) body_ += serializer_.read(chunk, sizeof chunk);
  }

  unsigned char temp_[4096];
  unsigned char arena_[64 * 1024];
  json::parser parser_;
  json::serializer serializer_;
  std::string body_;
};

// The protocol's floor: canonical requests answered by scanning bytes, with
// no JSON parser. "content-length", "keep-alive" and "request-id" are found
// by search in the header; the value is cut out of
// {"action": "echo", "value": X} by position. Fit only for the canonical
// loopback load comet-bench sends: it validates nothing a real server must.
std::optional<std::uint64_t> number_after(std::string_view text, std::string_view key) {
  const auto at = text.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  std::uint64_t n = 0;
  std::size_t i = at + key.size();
  if (i >= text.size() || text[i] < '0' || text[i] > '9') return std::nullopt;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i)
    n = n * 10 + static_cast<std::uint64_t>(text[i] - '0');
  return n;
}

struct scanning_headers {
  std::optional<frame_info> parse(std::string_view header) const {
    const auto length = number_after(header, "\"content-length\": ");
    if (!length) return std::nullopt;
    frame_info info;
    info.content_length = static_cast<std::size_t>(*length);
    info.keep_alive = header.find("\"keep-alive\": true") != std::string_view::npos;
    info.request_id = number_after(header, "\"request-id\": ");
    return info;
  }
};

class scanning_responder {
 public:
  void answer(std::string& out, const frame_info& info, std::string_view content) {
    static constexpr std::string_view prefix = R"({"action": "echo", "value": )";
    body_.clear();
    if (content.size() > prefix.size() && content.starts_with(prefix) && content.back() == '}') {
      body_ += R"({"result": )";
      body_ += content.substr(prefix.size(), content.size() - prefix.size() - 1);
      body_ += '}';
    } else {
      body_ += R"({"result": "Error: not a canonical echo", "error": {"code": "bad_request", )"
               R"("message": "not a canonical echo"}})";
    }
    append_frame(out, body_, info.keep_alive, info.request_id);
  }

  scanning_headers headers;

 private:
  std::string body_;
};

template <class Responder>
class session : public std::enable_shared_from_this<session<Responder>> {
 public:
  session(tcp::socket socket, Responder& responder)
      : socket_(std::move(socket)), responder_(responder), in_(initial_buffer, '\0') {}

  void start() { read(); }

 private:
  void read() {
    if (end_ == in_.size()) make_room(in_.size() * 2);
    reading_ = true;
    socket_.async_read_some(asio::buffer(in_.data() + end_, in_.size() - end_),
                            [self = this->shared_from_this()](boost::system::error_code ec,
                                                              std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(boost::system::error_code ec, std::size_t n) {
    reading_ = false;
    if (ec) return close();
    end_ += n;
    parse();
    flush();
    if (can_read()) read();
  }

  bool can_read() const { return !reading_ && !closing_ && !dead_ && out_.size() < max_unsent; }

  // Answers every complete frame in the buffer.
  void parse() {
    while (!closing_ && !dead_) {
      const std::size_t avail = end_ - begin_;
      if (avail < 2) break;
      const auto* p = reinterpret_cast<const unsigned char*>(in_.data() + begin_);
      const std::size_t header_size = (std::size_t{p[0]} << 8) | p[1];
      if (header_size == 0) return close();
      if (avail < 2 + header_size) {
        make_room(2 + header_size);
        break;
      }
      const auto info = responder_.headers.parse({in_.data() + begin_ + 2, header_size});
      if (!info || info->content_length > max_content) return close();
      const std::size_t frame = 2 + header_size + info->content_length;
      if (avail < frame) {
        make_room(frame);
        break;
      }
      responder_.answer(out_, *info,
                        {in_.data() + begin_ + 2 + header_size, info->content_length});
      begin_ += frame;
      if (!info->keep_alive) closing_ = true;  // COMET: one request, then close
    }
    if (begin_ == end_) begin_ = end_ = 0;
  }

  // Makes the buffer hold `frame` bytes from begin_.
  void make_room(std::size_t frame) {
    if (begin_ > 0) {
      std::memmove(in_.data(), in_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (in_.size() < frame) in_.resize(frame);
  }

  void flush() {
    if (writing_ || dead_) return;
    if (out_.empty()) {
      if (closing_) close();
      return;
    }
    sending_.swap(out_);
    out_.clear();
    writing_ = true;
    asio::async_write(socket_, asio::buffer(sending_),
                      [self = this->shared_from_this()](boost::system::error_code ec, std::size_t) {
                        self->on_written(ec);
                      });
  }

  void on_written(boost::system::error_code ec) {
    writing_ = false;
    sending_.clear();
    if (ec) return close();
    flush();
    if (can_read()) read();
  }

  void close() {
    if (dead_) return;
    dead_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
  }

  tcp::socket socket_;
  Responder& responder_;
  std::string in_;  // [begin_, end_) received, not yet answered
  std::size_t begin_ = 0, end_ = 0;
  std::string out_;      // answers not yet handed to the socket
  std::string sending_;  // answers being written
  bool reading_ = false, writing_ = false;
  bool closing_ = false;  // a request without keep-alive was answered: close after the write
  bool dead_ = false;
};

}  // namespace

struct baseline_server::state {
  // Outlive the io_context, whose handlers own sessions.
  echo_responder responder;
  scanning_responder scanner;
  server_style style = server_style::parsing;
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        boost::system::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        if (style == server_style::scanning)
          std::make_shared<session<scanning_responder>>(std::move(socket), scanner)->start();
        else
          std::make_shared<session<echo_responder>>(std::move(socket), responder)->start();
      }
      accept();
    });
  }
};

baseline_server::baseline_server(server_style style) : state_(std::make_unique<state>()) {
  state_->style = style;
  const tcp::endpoint ep(asio::ip::make_address_v4("127.0.0.1"), 0);
  state_->acceptor.open(ep.protocol());
  state_->acceptor.set_option(tcp::acceptor::reuse_address(true));
  state_->acceptor.bind(ep);
  state_->acceptor.listen(asio::socket_base::max_listen_connections);
  state_->accept();
  state_->thread = std::thread([s = state_.get()] {
    pthread_setname_np(pthread_self(),
                       s->style == server_style::scanning ? "bench-floor" : "bench-baseline");
    s->io.run();
  });
}

baseline_server::~baseline_server() {
  state_->io.stop();
  if (state_->thread.joinable()) state_->thread.join();
}

std::uint16_t baseline_server::port() const noexcept {
  boost::system::error_code ec;
  return state_->acceptor.local_endpoint(ec).port();
}

}  // namespace comet_bench
