#include "streams.hpp"

#include "platform.hpp"

#include <comet/client.hpp>
#include <comet/errors.hpp>
#include <comet/host.hpp>
#include <comet/io_pool.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <future>
#include <thread>

extern char** environ;

namespace comet_bench {
namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

namespace {

const std::string payload(32, 'x');
constexpr int multiplexed_depth = 64;
constexpr int fan_out = 100;
constexpr std::size_t publish_batch = 1000;

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void note_failure(stream_row& row, const std::string& what) {
  ++row.errors;
  if (row.first_error.empty()) row.first_error = what;
}

// A comet host on its own one-thread pool: "echo", a "firehose" stream of
// 32-byte strings that runs until its reader closes it, and publish().
class stream_host {
 public:
  stream_host() : pool_(1), host_(pool_, options()) {
    host_.on("echo", [](const std::string&, const json::value& v) { return v; });
    host_.on_stream("firehose", [](const json::value&, comet::stream_writer& out) -> asio::awaitable<void> {
      const json::value item(payload);
      for (;;) co_await out.write(item);
    });
    port_ = host_.start().port;
  }
  ~stream_host() {
    auto stopped = host_.async_stop(asio::use_future);
    stopped.wait_for(std::chrono::seconds(2));
  }
  std::uint16_t port() const { return port_; }
  comet::host& host() { return host_; }

 private:
  static comet::host_options options() {
    comet::host_options o;
    o.listen = {"127.0.0.1", 0};
    o.shutdown_timeout = std::chrono::milliseconds(500);
    o.idle_timeout = std::chrono::milliseconds(0);
    return o;
  }
  comet::io_pool pool_;
  comet::host host_;
  std::uint16_t port_ = 0;
};

// Runs `body(pool, end)` (a coroutine returning the count it made) on a
// one-thread client pool; the rate is the count over `seconds`.
template <class Body>
double run_on_client_pool(stream_row& row, double seconds, Body body) {
  comet::io_pool pool(1);
  const auto end = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
                                           std::chrono::duration<double>(seconds));
  std::promise<std::uint64_t> counted;
  asio::co_spawn(pool.get_executor(), body(pool, end),
                 [&](std::exception_ptr e, std::uint64_t n) {
                   if (e) try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& x) {
                       note_failure(row, x.what());
                     }
                   counted.set_value(n);
                 });
  auto f = counted.get_future();
  if (f.wait_for(std::chrono::duration<double>(seconds + 20)) != std::future_status::ready) {
    std::fprintf(stderr, "comet-bench: the %s row did not finish; aborting\n", row.name.c_str());
    std::exit(3);
  }
  return static_cast<double>(f.get()) / seconds;
}

// `depth` sends in flight on one keep-alive connection until `end`.
asio::awaitable<std::uint64_t> multiplexed_body(comet::io_pool& pool, std::uint16_t port,
                                                clock_type::time_point end) {
  comet::client c(pool, {"127.0.0.1", port},
                  {.keep_alive = true, .max_connections = 1, .max_in_flight = multiplexed_depth});
  std::uint64_t answers = 0;
  int live = multiplexed_depth;
  asio::steady_timer all_done(co_await asio::this_coro::executor, clock_type::time_point::max());
  for (int i = 0; i < multiplexed_depth; ++i)
    asio::co_spawn(
        pool.get_executor(),
        [&]() -> asio::awaitable<void> {
          const json::value value(payload);
          while (clock_type::now() < end) {
            json::value answer = co_await c.send("echo", value);
            ++answers;
          }
        },
        [&](std::exception_ptr) {
          if (--live == 0) all_done.cancel();
        });
  co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return answers;
}

// `streams` firehose streams on one connection, read until `end`.
asio::awaitable<std::uint64_t> stream_body(comet::io_pool& pool, std::uint16_t port, int streams,
                                           clock_type::time_point end) {
  comet::client c(pool, {"127.0.0.1", port}, {.keep_alive = true, .max_connections = 1});
  std::uint64_t items = 0;
  int live = streams;
  asio::steady_timer all_done(co_await asio::this_coro::executor, clock_type::time_point::max());
  for (int i = 0; i < streams; ++i)
    asio::co_spawn(
        pool.get_executor(),
        [&]() -> asio::awaitable<void> {
          const json::value none(nullptr);
          comet::stream_reader<json::value> s = co_await c.open_stream("firehose", none);
          // One clock read per 256 items.
          for (std::uint64_t n = 1;; ++n) {
            std::optional<json::value> item = co_await s.next();
            if (!item) throw std::runtime_error("the firehose ended");
            ++items;
            if ((n & 255) == 0 && clock_type::now() >= end) break;
          }
        },
        [&](std::exception_ptr) {
          if (--live == 0) all_done.cancel();
        });
  co_await all_done.async_wait(asio::as_tuple(asio::use_awaitable));
  co_return items;
}

double multiplexed_rate(stream_host& h, stream_row& row, double seconds) {
  return run_on_client_pool(row, seconds, [&h](comet::io_pool& pool, clock_type::time_point end) {
    return multiplexed_body(pool, h.port(), end);
  });
}

double stream_rate(stream_host& h, stream_row& row, double seconds, int streams) {
  return run_on_client_pool(row, seconds, [&h, streams](comet::io_pool& pool, clock_type::time_point end) {
    return stream_body(pool, h.port(), streams, end);
  });
}

// Publishes batches from this thread and waits for every subscriber to
// have each batch before the next: deliveries/s at the slowest
// subscriber's pace, with no subscriber queue overflowing.
double fan_out_rate(stream_host& h, stream_row& row, double seconds) {
  comet::io_pool pool(1);
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<int> subscribed{0};
  std::vector<comet::client> clients;
  for (int i = 0; i < 4; ++i) clients.emplace_back(pool, comet::endpoint{"127.0.0.1", h.port()});
  std::atomic<bool> stop{false};
  std::promise<void> all_ended;
  std::atomic<int> live{fan_out};
  for (int i = 0; i < fan_out; ++i)
    asio::co_spawn(
        pool.get_executor(),
        [&, i]() -> asio::awaitable<void> {
          comet::subscription<json::value> sub = co_await clients[i % 4].subscribe("bench");
          ++subscribed;
          while (!stop) {
            std::optional<comet::published<json::value>> p = co_await sub.next();
            if (!p) break;
            delivered.fetch_add(1, std::memory_order_relaxed);
          }
        },
        [&](std::exception_ptr e) {
          if (e && !stop) try {
              std::rethrow_exception(e);
            } catch (const std::exception& x) {
              note_failure(row, x.what());
            }
          if (--live == 0) all_ended.set_value();
        });
  const auto ready_by = clock_type::now() + std::chrono::seconds(20);
  while (subscribed < fan_out && row.errors == 0 && clock_type::now() < ready_by)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (subscribed < fan_out) {
    note_failure(row, "the subscribers did not all subscribe");
    stop = true;
    return 0;
  }
  const json::value item(payload);
  const auto began = clock_type::now();
  const auto end = began + std::chrono::duration<double>(seconds);
  std::uint64_t published = 0;
  while (clock_type::now() < end && row.errors == 0) {
    for (std::size_t i = 0; i < publish_batch; ++i) h.host().publish("bench", item);
    published += publish_batch;
    const auto batch_by = clock_type::now() + std::chrono::seconds(20);
    while (delivered.load(std::memory_order_relaxed) < published * fan_out && clock_type::now() < batch_by)
      std::this_thread::yield();
    if (delivered.load() < published * fan_out) {
      note_failure(row, "a batch was not delivered to every subscriber within 20 s");
      break;
    }
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - began).count();
  stop = true;
  for (auto& c : clients) c.close();
  all_ended.get_future().wait_for(std::chrono::seconds(5));
  return static_cast<double>(delivered.load()) / elapsed;
}

// --- NATS, for comparison --------------------------------------------------

std::string find_nats_server() {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/usr/local/bin"}) {
    std::string path = std::string(dir) + "/nats-server";
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return {};
}

std::uint16_t free_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

// Debian's nats-server on a loopback port, stopped (SIGTERM) with this object.
class nats_process {
 public:
  explicit nats_process(const std::string& binary) : port_(free_port()) {
    const std::string port = std::to_string(port_);
    std::vector<std::string> args{binary, "-a", "127.0.0.1", "-p", port};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid_, binary.c_str(), nullptr, nullptr, argv.data(), environ) != 0) pid_ = 0;
  }
  ~nats_process() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  bool started() const { return pid_ > 0; }
  std::uint16_t port() const { return port_; }

 private:
  pid_t pid_ = 0;
  std::uint16_t port_;
};

// Connects (retrying while the server starts), says CONNECT, and, for a
// subscriber, SUB then PING, returning once the PONG shows it registered.
tcp::socket nats_connect(asio::io_context& io, std::uint16_t port, bool subscriber, asio::streambuf& in) {
  const auto until = clock_type::now() + std::chrono::seconds(10);
  for (;;) {
    tcp::socket s(io);
    boost::system::error_code ec;
    s.connect({asio::ip::make_address("127.0.0.1"), port}, ec);
    if (!ec) {
      std::string hello = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";
      if (subscriber) hello += "SUB bench 1\r\nPING\r\n";
      asio::write(s, asio::buffer(hello));
      if (subscriber)
        for (;;) {
          asio::read_until(s, in, "\r\n");
          std::string line;
          std::istream is(&in);
          std::getline(is, line);
          if (line.rfind("PONG", 0) == 0) break;
        }
      return s;
    }
    if (clock_type::now() > until) throw std::runtime_error("nats-server did not accept connections");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Counts the MSG frames a subscriber connection receives.
asio::awaitable<void> nats_count(tcp::socket& s, asio::streambuf& in, std::atomic<std::uint64_t>& delivered,
                                 std::atomic<bool>& stop) {
  std::string line;
  while (!stop) {
    const std::size_t n = co_await asio::async_read_until(s, in, "\r\n", asio::use_awaitable);
    line.assign(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + static_cast<std::ptrdiff_t>(n));
    in.consume(n);
    if (line.rfind("MSG ", 0) == 0) {
      const auto last_space = line.rfind(' ');
      const std::size_t size = std::stoul(line.substr(last_space + 1));
      if (in.size() < size + 2)
        co_await asio::async_read(s, in, asio::transfer_exactly(size + 2 - in.size()), asio::use_awaitable);
      in.consume(size + 2);
      delivered.fetch_add(1, std::memory_order_relaxed);
    } else if (line.rfind("PING", 0) == 0) {
      co_await asio::async_write(s, asio::buffer("PONG\r\n", 6), asio::use_awaitable);
    }
  }
}

double nats_rate(const std::string& binary, stream_row& row, double seconds, int subscribers) {
  nats_process server(binary);
  if (!server.started()) {
    note_failure(row, "cannot start " + binary);
    return 0;
  }
  asio::io_context io;
  std::vector<std::unique_ptr<asio::streambuf>> inputs;
  std::vector<tcp::socket> subs;
  for (int i = 0; i < subscribers; ++i) {
    inputs.push_back(std::make_unique<asio::streambuf>());
    subs.push_back(nats_connect(io, server.port(), true, *inputs.back()));
  }
  asio::streambuf ignored;
  tcp::socket publisher = nats_connect(io, server.port(), false, ignored);
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<bool> stop{false};
  for (int i = 0; i < subscribers; ++i)
    asio::co_spawn(io, nats_count(subs[i], *inputs[i], delivered, stop), asio::detached);
  std::thread reader([&] { io.run(); });
  std::string batch;
  for (std::size_t i = 0; i < publish_batch; ++i) batch += "PUB bench 32\r\n" + payload + "\r\n";
  const auto began = clock_type::now();
  const auto end = began + std::chrono::duration<double>(seconds);
  std::uint64_t published = 0;
  while (clock_type::now() < end) {
    asio::write(publisher, asio::buffer(batch));
    published += publish_batch;
    const auto batch_by = clock_type::now() + std::chrono::seconds(20);
    while (delivered.load(std::memory_order_relaxed) < published * subscribers && clock_type::now() < batch_by)
      std::this_thread::yield();
    if (delivered.load() < published * subscribers) {
      note_failure(row, "nats-server did not deliver a batch within 20 s");
      break;
    }
  }
  const double elapsed = std::chrono::duration<double>(clock_type::now() - began).count();
  stop = true;
  boost::system::error_code ec;
  for (auto& s : subs) s.close(ec);
  publisher.close(ec);
  io.stop();
  reader.join();
  return static_cast<double>(delivered.load()) / elapsed;
}

}  // namespace

std::vector<stream_row> run_stream_suite(int rounds, double seconds, const std::vector<int>& load_cpus) {
  const std::string nats = find_nats_server();
  std::vector<stream_row> rows{
      {"multiplexed 1 x 64", "msgs/s", {}, {}, 0, {}},
      {"stream x1", "items/s", {}, {}, 0, {}},
      {"stream x16", "items/s", {}, {}, 0, {}},
      {"publish fan-out x100", "deliveries/s", {}, {}, 0, {}},
  };
  if (!nats.empty()) {
    rows.push_back({"nats 1 to 1", "msgs/s", {}, {}, 0, {}});
    rows.push_back({"nats fan-out x100", "deliveries/s", {}, {}, 0, {}});
  } else {
    std::fprintf(stderr, "comet-bench: nats-server not found (apt-get install nats-server): "
                         "its rows are left out\n");
  }
  const auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(seconds + 60));
  for (int r = 0; r < rounds; ++r) {
    stream_host h;
    std::vector<double> rate(rows.size());
    rate[0] = run_bounded<double>([&] { return multiplexed_rate(h, rows[0], seconds); }, load_cpus, limit,
                                  "the multiplexed row");
    rate[1] = run_bounded<double>([&] { return stream_rate(h, rows[1], seconds, 1); }, load_cpus, limit,
                                  "the stream x1 row");
    rate[2] = run_bounded<double>([&] { return stream_rate(h, rows[2], seconds, 16); }, load_cpus, limit,
                                  "the stream x16 row");
    rate[3] = run_bounded<double>([&] { return fan_out_rate(h, rows[3], seconds); }, load_cpus, limit,
                                  "the fan-out row");
    if (!nats.empty()) {
      rate[4] = run_bounded<double>([&] { return nats_rate(nats, rows[4], seconds, 1); }, load_cpus, limit,
                                    "the nats 1 to 1 row");
      rate[5] = run_bounded<double>([&] { return nats_rate(nats, rows[5], seconds, fan_out); }, load_cpus,
                                    limit, "the nats fan-out row");
    }
    for (std::size_t i = 0; i < rows.size(); ++i) {
      rows[i].rates.push_back(rate[i]);
      if (i > 0 && rate[0] > 0) rows[i].ratios.push_back(rate[i] / rate[0]);
      std::fprintf(stderr, "[round %d] %-22s %12.0f %s\n", r + 1, rows[i].name.c_str(), rate[i],
                   rows[i].unit.c_str());
    }
  }
  return rows;
}

void print_stream_rows(std::FILE* out, const std::vector<stream_row>& rows) {
  std::fprintf(out, "%-22s %14s %-13s %16s %8s\n", "row", "rate", "", "vs multiplexed", "errors");
  for (const auto& row : rows) {
    std::fprintf(out, "%-22s %14.0f %-13s", row.name.c_str(), median(row.rates), row.unit.c_str());
    if (row.ratios.empty())
      std::fprintf(out, " %16s", "1.00x");
    else {
      auto [lo, hi] = std::minmax_element(row.ratios.begin(), row.ratios.end());
      std::fprintf(out, " %6.2fx [%.2f-%.2f]", median(row.ratios), *lo, *hi);
    }
    std::fprintf(out, " %8zu\n", row.errors);
    if (!row.first_error.empty()) std::fprintf(out, "  first error: %s\n", row.first_error.c_str());
  }
}

}  // namespace comet_bench
