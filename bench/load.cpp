#include "load.hpp"

#include "alloc_counter.hpp"
#include "wire.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstring>
#include <exception>

namespace comet_bench {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

using clock_type = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr auto reconnect_pause = std::chrono::milliseconds(10);

// Received bytes of one connection and the frames in them.
class inbox {
 public:
  inbox() : buf_(64 * 1024, '\0') {}

  // The next frame; a complete one is consumed (its content stays valid
  // until the next read_more).
  frame_view next() {
    frame_view f = split_.next({buf_.data() + begin_, end_ - begin_});
    if (f.state == frame_view::status::complete) begin_ += f.size;
    return f;
  }

  // Reads at least one more byte, making room for a frame of `needed` bytes.
  asio::awaitable<boost::system::error_code> read_more(tcp::socket& s, std::size_t needed) {
    if (begin_ == end_) begin_ = end_ = 0;
    if (begin_ > 0 && (buf_.size() - end_ < 4096 || buf_.size() - begin_ < needed)) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() - begin_ < needed) buf_.resize(begin_ + needed);
    if (end_ == buf_.size()) buf_.resize(2 * buf_.size());
    auto [ec, n] =
        co_await s.async_read_some(asio::buffer(buf_.data() + end_, buf_.size() - end_), use_tuple);
    end_ += n;
    co_return ec;
  }

  void clear() noexcept { begin_ = end_ = 0; }

 private:
  std::string buf_;
  std::size_t begin_ = 0, end_ = 0;
  response_splitter split_;
};

class raw_load {
 public:
  raw_load(const scenario& s, const tcp::endpoint& target, const run_timing& timing)
      : scenario_(s),
        target_(target),
        timing_(timing),
        payload_(make_payload(s.payload)),
        content_(echo_request_content(payload_)),
        canonical_(echo_response_content(payload_)),
        hard_stop_(io_),
        last_resort_(io_) {
    result_.what = s;
    sockets_.reserve(s.connections);
    for (std::size_t i = 0; i < s.connections; ++i) sockets_.emplace_back(io_);
    if (s.mode == load_mode::one_shot)
      append_frame(batch_, content_, false, std::nullopt);
    else if (s.mode != load_mode::multiplexed)
      for (std::size_t i = 0; i < s.depth; ++i) append_frame(batch_, content_, true, std::nullopt);
  }

  result run() {
    begin_ = clock_type::now() + timing_.warmup;
    end_ = begin_ + timing_.duration;
    // Answers that have not arrived `drain` after the end never will: close
    // everything (their reads fail and count as errors), and stop the
    // context outright if something still does not return.
    hard_stop_.expires_at(end_ + timing_.drain);
    hard_stop_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      for (auto& s : sockets_) {
        boost::system::error_code ignored;
        s.close(ignored);
      }
      last_resort_.expires_after(std::chrono::milliseconds(500));
      last_resort_.async_wait([this](boost::system::error_code e) {
        if (!e) io_.stop();
      });
    });
    comet_alloc::window counted(begin_, end_);
    live_ = scenario_.connections;
    for (std::size_t i = 0; i < scenario_.connections; ++i)
      asio::co_spawn(io_, connection(i), [this](std::exception_ptr failure) {
        if (failure) {
          try {
            std::rethrow_exception(failure);
          } catch (const std::exception& e) {
            fail(std::string("load generator bug: ") + e.what());
          }
        }
        if (--live_ == 0) {
          hard_stop_.cancel();
          last_resort_.cancel();
        }
      });
    io_.run();
    result_.window_allocations = counted.count();
    result_.seconds = std::chrono::duration<double>(end_ - begin_).count();
    return std::move(result_);
  }

 private:
  enum class verdict { ok, wrong, fatal };

  void fail(std::string what, std::size_t count = 1) {
    result_.errors += count;
    if (result_.first_error.empty()) result_.first_error = std::move(what);
  }

  void record(clock_type::time_point sent, clock_type::time_point now) {
    if (now < begin_ || now >= end_) return;
    ++result_.messages;
    result_.latency.record(
        static_cast<std::uint64_t>(std::chrono::nanoseconds(now - sent).count()));
  }

  verdict check(const frame_view& f, bool keep_alive) {
    if (keep_alive && !f.info.keep_alive) {
      fail("the server answered without \"keep-alive\": true (it closes after each answer)");
      return verdict::fatal;
    }
    if (!keep_alive && f.info.keep_alive) {
      fail("the server kept a one-shot connection open");
      return verdict::fatal;
    }
    if (!f.info.json || !echo_answer_matches(f.content, canonical_, payload_)) {
      fail("wrong answer: " + std::string(f.content.substr(0, 120)));
      return verdict::wrong;
    }
    return verdict::ok;
  }

  asio::awaitable<bool> connect(tcp::socket& sock) {
    boost::system::error_code ignored;
    sock.close(ignored);
    auto [ec] = co_await sock.async_connect(target_, use_tuple);
    if (ec) {
      fail("cannot connect to " + target_.address().to_string() + ":" +
           std::to_string(target_.port()) + ": " + ec.message());
      co_return false;
    }
    sock.set_option(tcp::no_delay(true), ignored);
    co_return true;
  }

  asio::awaitable<void> pause() {
    asio::steady_timer t(io_, reconnect_pause);
    co_await t.async_wait(use_tuple);
  }

  // One connection slot: connects (again after a failure) until the end.
  asio::awaitable<void> connection(std::size_t index) {
    tcp::socket& sock = sockets_[index];
    inbox in;
    while (clock_type::now() < end_) {
      const auto connecting = clock_type::now();
      if (!co_await connect(sock)) {
        co_await pause();
        continue;
      }
      in.clear();
      bool done = false;
      switch (scenario_.mode) {
        case load_mode::one_shot: done = co_await one_shot(sock, in, connecting); break;
        case load_mode::keep_alive:
        case load_mode::pipelined: done = co_await in_order(sock, in); break;
        case load_mode::multiplexed: done = co_await multiplexed(sock, in); break;
      }
      boost::system::error_code ignored;
      sock.shutdown(tcp::socket::shutdown_both, ignored);
      sock.close(ignored);
      if (!done && clock_type::now() < end_) co_await pause();
    }
  }

  // COMET's exchange: the connect is part of each request's latency, and
  // the client waits for the server to close first, as COMET's client does,
  // which also leaves TIME_WAIT on the server's side instead of using up
  // the client's ephemeral ports.
  asio::awaitable<bool> one_shot(tcp::socket& sock, inbox& in, clock_type::time_point sent) {
    if (auto [ec, n] = co_await asio::async_write(sock, asio::buffer(batch_), use_tuple); ec) {
      fail("write failed: " + ec.message());
      co_return false;
    }
    for (;;) {
      const frame_view f = in.next();
      if (f.state == frame_view::status::complete) {
        const auto now = clock_type::now();
        if (check(f, false) == verdict::ok) record(sent, now);
        break;
      }
      if (f.state == frame_view::status::malformed) {
        fail("malformed answer frame");
        co_return false;
      }
      if (auto ec = co_await in.read_more(sock, f.needed); ec) {
        fail("no answer: " + ec.message());
        co_return false;
      }
    }
    auto ec = co_await in.read_more(sock, 1);
    if (ec != asio::error::eof) {
      fail(ec ? "waiting for the server to close: " + ec.message()
              : std::string("bytes after a one-shot answer"));
      co_return false;
    }
    co_return true;
  }

  // keep-alive (depth 1) and pipelined: write `depth` requests at once,
  // read as many answers in order, repeat.
  asio::awaitable<bool> in_order(tcp::socket& sock, inbox& in) {
    const std::size_t depth = scenario_.depth;
    while (clock_type::now() < end_) {
      const auto sent = clock_type::now();
      if (auto [ec, n] = co_await asio::async_write(sock, asio::buffer(batch_), use_tuple); ec) {
        fail("write failed: " + ec.message(), depth);
        co_return false;
      }
      auto now = clock_type::now();
      for (std::size_t answered = 0; answered < depth;) {
        const frame_view f = in.next();
        if (f.state == frame_view::status::complete) {
          if (f.info.request_id) fail("an untagged request was answered with a request-id");
          const verdict v = check(f, true);
          if (v == verdict::ok) record(sent, now);
          if (v == verdict::fatal) {
            fail("", depth - answered - 1);
            co_return false;
          }
          ++answered;
          continue;
        }
        if (f.state == frame_view::status::malformed) {
          fail("malformed answer frame", depth - answered);
          co_return false;
        }
        auto ec = co_await in.read_more(sock, f.needed);
        now = clock_type::now();
        if (ec) {
          fail("connection lost with answers pending: " + ec.message(), depth - answered);
          co_return false;
        }
      }
    }
    co_return true;
  }

  // `depth` tagged requests in flight; each answer, in whatever order it
  // comes, is replaced by a new request, written in one batch per read.
  asio::awaitable<bool> multiplexed(tcp::socket& sock, inbox& in) {
    const std::size_t depth = scenario_.depth;
    std::vector<clock_type::time_point> sent(depth);
    std::vector<std::uint64_t> ids(depth);
    std::vector<char> busy(depth, 0);
    std::vector<std::size_t> fresh;
    std::string out;
    std::size_t in_flight = 0;
    auto issue = [&](std::size_t slot) {
      append_frame(out, content_, true, ids[slot]);
      busy[slot] = 1;
      ++in_flight;
      fresh.push_back(slot);
    };
    for (std::size_t slot = 0; slot < depth; ++slot) {
      ids[slot] = slot;
      issue(slot);
    }
    std::size_t needed = 2;
    for (;;) {
      if (!out.empty()) {
        const auto now = clock_type::now();
        for (auto slot : fresh) sent[slot] = now;
        fresh.clear();
        auto [ec, n] = co_await asio::async_write(sock, asio::buffer(out), use_tuple);
        out.clear();
        if (ec) {
          fail("write failed: " + ec.message(), in_flight);
          co_return false;
        }
      }
      if (in_flight == 0) co_return true;
      if (auto ec = co_await in.read_more(sock, needed); ec) {
        fail("connection lost with answers pending: " + ec.message(), in_flight);
        co_return false;
      }
      const auto now = clock_type::now();
      for (;;) {
        const frame_view f = in.next();
        if (f.state == frame_view::status::need_more) {
          needed = f.needed;
          break;
        }
        if (f.state == frame_view::status::malformed) {
          fail("malformed answer frame", in_flight);
          co_return false;
        }
        const auto id = f.info.request_id;
        const std::size_t slot = id ? static_cast<std::size_t>(*id % depth) : 0;
        if (!id || !busy[slot] || ids[slot] != *id) {
          fail(id ? "an answer with an unknown request-id " + std::to_string(*id)
                  : std::string("a tagged request was answered without its request-id"),
               in_flight);
          co_return false;
        }
        busy[slot] = 0;
        --in_flight;
        const verdict v = check(f, true);
        if (v == verdict::ok) record(sent[slot], now);
        if (v == verdict::fatal) {
          fail("", in_flight);
          co_return false;
        }
        if (now < end_) {
          ids[slot] += depth;
          issue(slot);
        }
      }
    }
  }

  const scenario& scenario_;
  tcp::endpoint target_;
  run_timing timing_;
  std::string payload_, content_, canonical_;
  std::string batch_;  // the pre-encoded requests of one round (not multiplexed)

  asio::io_context io_{1};
  std::vector<tcp::socket> sockets_;
  asio::steady_timer hard_stop_, last_resort_;
  std::size_t live_ = 0;
  clock_type::time_point begin_, end_;  // the measured window
  result result_;
};

}  // namespace

result run_raw_load(const scenario& s, const tcp::endpoint& target, const run_timing& timing) {
  raw_load load(s, target, timing);
  return load.run();
}

}  // namespace comet_bench
