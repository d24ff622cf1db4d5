// A client that dials a name with several addresses races them (RFC 8305,
// framework/src/happy_eyeballs.hpp): the next attempt starts 250 ms after
// the previous one began, or at once when it failed; the first to connect
// wins. The [names-multi] cases dial names of tests/hosts/multi
// (private_hosts.hpp), two loopback addresses each; the [happy-eyeballs]
// ones race literal addresses. A "silent" address is a listener whose
// accept queue is full, so that its SYNs go unanswered.
#include "happy_eyeballs.hpp"

#include <comet/comet.hpp>

#include "private_hosts.hpp"
#include "support.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <deque>

using namespace comet;
using namespace comet::test;

namespace {

using clock_type = std::chrono::steady_clock;

std::chrono::milliseconds since(clock_type::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t);
}

tcp::endpoint v4(const char* ip, std::uint16_t port) { return {asio::ip::make_address(ip), port}; }

// A listener that never completes a handshake: its accept queue (backlog
// 0) is filled by connections nobody accepts, and Linux (gVisor too) drops
// a SYN that finds it full. Checked: the last filling connect is still
// pending after 300 ms, where a loopback handshake takes microseconds.
class silent_listener {
 public:
  explicit silent_listener(tcp::endpoint at) : acceptor_(io_) {
    acceptor_.open(at.protocol());
    acceptor_.bind(at);
    acceptor_.listen(0);
    at_ = acceptor_.local_endpoint();
    for (int i = 0; i < 8; ++i) {
      auto& s = filling_.emplace_back(io_);
      s.open(at_.protocol());
      s.non_blocking(true);
      (void)::connect(s.native_handle(), at_.data(), static_cast<socklen_t>(at_.size()));
      pollfd p{s.native_handle(), POLLOUT, 0};
      if (::poll(&p, 1, i == 0 ? 2000 : 300) == 0) return;  // unanswered: the queue is full
    }
    FAIL("cannot make a silent listener on " << at_ << ": every connect to it completes");
  }
  std::uint16_t port() const { return at_.port(); }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  tcp::endpoint at_;
  std::deque<tcp::socket> filling_;
};

// The two addresses of `name`, in the resolver's order (the order they are tried).
std::pair<std::string, std::string> two_addresses_of(const std::string& name) {
  private_hosts_file();
  const auto addresses = resolved(name, 0);
  REQUIRE(addresses.size() == 2);
  return {addresses[0].address().to_string(), addresses[1].address().to_string()};
}

// A port that nothing listens on at `ip` (nor, very likely, at its neighbours).
std::uint16_t free_port(const std::string& ip) {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address(ip), 0));
  return a.local_endpoint().port();
}

}  // namespace

TEST_CASE("a name's addresses are tried with their families interleaved", "[unit][names]") {
  const tcp::endpoint a6{asio::ip::make_address("::1"), 1}, b6{asio::ip::make_address("::2"), 1};
  const auto a4 = v4("127.0.0.1", 1), b4 = v4("127.0.0.2", 1), c4 = v4("127.0.0.3", 1);
  using list = std::vector<tcp::endpoint>;
  CHECK(interleave_families({a6, b6, a4, b4, c4}) == list{a6, a4, b6, b4, c4});
  CHECK(interleave_families({a4, b4, a6}) == list{a4, a6, b4});
  CHECK(interleave_families({a4, b4}) == list{a4, b4});
  CHECK(interleave_families({}).empty());
}

TEST_CASE("a client dialling a name whose first address is silent connects through the next",
          "[integration][.names-multi]") {
  const auto [silent_ip, host_ip] = two_addresses_of("lab-silent-first");
  silent_listener silent(v4(silent_ip.c_str(), 0));
  host_options o;
  o.listen = {host_ip, silent.port()};
  host_fixture f(2, o);
  add_echo(f.server);
  f.start();
  const std::string second = endpoint{host_ip, silent.port()}.to_string();
  log_capture log(log_level::debug);
  for (bool keep_alive : {false, true}) {
    CAPTURE(keep_alive);
    const auto accepted = f.server.stats().connections_accepted;
    client c(f.pool.get_executor(), {"lab-silent-first", silent.port()},
             {.connect_timeout = 10s, .request_timeout = 10s, .keep_alive = keep_alive});
    const auto began = clock_type::now();
    CHECK(c.send_sync("echo", "past a silent address") == "past a silent address");
    const auto took = since(began);
    std::printf("past a silent first address (keep_alive %d): answered in %lld ms\n", keep_alive,
                static_cast<long long>(took.count()));
    CHECK(took < 5s);  // the silent address alone would have used all 10 s
    CHECK(f.server.stats().connections_accepted == accepted + 1);
    CHECK(log.contains("trying " + second + " (address 2 of 2)"));
    CHECK(log.contains("via " + second));
  }
}

TEST_CASE("a client dialling a name whose first address refuses connects through the next",
          "[integration][.names-multi]") {
  const auto [refusing_ip, host_ip] = two_addresses_of("lab-refused-first");
  host_options o;
  o.listen = {host_ip, free_port(refusing_ip)};
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();
  log_capture log(log_level::debug);
  for (bool keep_alive : {false, true}) {
    CAPTURE(keep_alive);
    client c(f.pool.get_executor(), {"lab-refused-first", at.port},
             {.connect_timeout = 10s, .keep_alive = keep_alive, .connect_retries = 0});
    const auto began = clock_type::now();
    CHECK(c.send_sync("echo", 3) == 3);
    CHECK(since(began) < 5s);
    CHECK(log.contains("via " + at.to_string()));
  }
}

TEST_CASE("a name whose every address refuses is offline, after retrying the whole race",
          "[integration][.names-multi]") {
  const auto [first_ip, second_ip] = two_addresses_of("lab-refused-first");
  const std::uint16_t port = free_port(first_ip);
  log_capture log(log_level::debug);
  io_pool pool(1);
  client c(pool.get_executor(), {"lab-refused-first", port},
           {.name = "Lab", .connect_timeout = 10s, .connect_retries = 2});
  const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
  CHECK(e.code() == errc::peer_offline);
  CHECK_THAT(e.what(), Catch::Contains("cannot connect to Lab at lab-refused-first:" +
                                       std::to_string(port)) &&
                           Catch::Contains("refused"));
  std::size_t rounds = 0, seconds = 0, retries = 0;
  for (const auto& l : log.lines()) {
    rounds += l.text.find("(address 1 of 2)") != std::string::npos;
    seconds += l.text.find("(address 2 of 2)") != std::string::npos;
    retries += l.text.find("; retrying in") != std::string::npos;
  }
  CHECK(rounds == 3);  // the first round and two retries, each trying both addresses
  CHECK(seconds == 3);
  CHECK(retries == 2);
}

TEST_CASE("a name whose every address is silent times out at connect_timeout",
          "[integration][.names-multi]") {
  const auto [first_ip, second_ip] = two_addresses_of("lab-silent-first");
  silent_listener first(v4(first_ip.c_str(), 0));
  silent_listener second(v4(second_ip.c_str(), first.port()));
  io_pool pool(1);
  for (bool keep_alive : {false, true}) {
    CAPTURE(keep_alive);
    client c(pool.get_executor(), {"lab-silent-first", first.port()},
             {.name = "Lab", .connect_timeout = 1s, .keep_alive = keep_alive});
    const auto began = clock_type::now();
    const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
    CHECK(e.code() == errc::connect_timeout);
    CHECK_THAT(e.what(), Catch::Contains("no answer within 1000 ms"));
    CHECK(since(began) < 5s);
  }
}

TEST_CASE("a caller's cancellation, and a client's close, end a race at once",
          "[integration][.names-multi]") {
  const auto [first_ip, second_ip] = two_addresses_of("lab-silent-first");
  silent_listener first(v4(first_ip.c_str(), 0));
  silent_listener second(v4(second_ip.c_str(), first.port()));
  const std::string second_tried =
      "trying " + endpoint{second_ip, first.port()}.to_string() + " (address 2 of 2)";
  for (bool keep_alive : {false, true}) {
    CAPTURE(keep_alive);
    log_capture log(log_level::debug);
    io_pool pool(1);
    std::optional<client> c(std::in_place, pool.get_executor(),
                            endpoint{"lab-silent-first", first.port()},
                            client_options{.connect_timeout = 10s, .request_timeout = 10s,
                                           .keep_alive = keep_alive});
    asio::cancellation_signal cancel;
    auto answer = asio::co_spawn(pool.get_executor(), c->send("echo", 1),
                                 asio::bind_cancellation_slot(cancel.slot(), asio::use_future));
    REQUIRE(log.wait_for(second_tried));  // both attempts are pending
    const auto cancelled_at = clock_type::now();
    asio::post(pool.get_executor(), [&] { cancel.emit(asio::cancellation_type::terminal); });
    REQUIRE(answer.wait_for(10s) == std::future_status::ready);
    const auto e = error_thrown_by([&] { answer.get(); });
    CHECK(e.code() == errc::cancelled);
    CHECK(since(cancelled_at) < 1000ms);
    // A pooled connection goes on connecting for the next send until the
    // client closes it: the race ends then, and with it the pool's last work.
    c.reset();
    const auto closed_at = clock_type::now();
    pool.release();
    pool.join();
    CHECK(since(closed_at) < 5s);  // not connect_timeout (10 s)
  }
}

// The race itself, over literal loopback addresses (no name, so no
// /etc/hosts; apart from the names' addresses): visible in the plain run.
namespace {
struct race_run {
  asio::io_context io;
  transport t{tcp::socket(io), nullptr};
  std::optional<race_outcome> outcome;
  std::chrono::milliseconds took{};

  // Runs the race to its end: io.run() returns once nothing is left,
  // every attempt's socket and timer included.
  void run(std::vector<tcp::endpoint> addresses) {
    const auto began = clock_type::now();
    asio::co_spawn(io, [this, addresses]() -> asio::awaitable<void> {
      outcome = co_await happy_eyeballs_connect(t, addresses, "the test peer");
    }, asio::detached);
    io.run();
    took = since(began);
  }
};
}  // namespace

TEST_CASE("a race passes a silent address, and ends with nothing left pending",
          "[integration][happy-eyeballs]") {
  silent_listener silent(v4("127.0.0.31", 0));
  const auto answering_at = v4("127.0.0.32", silent.port());
  asio::io_context io;
  tcp::acceptor answering(io, answering_at);
  race_run r;
  r.run({v4("127.0.0.31", silent.port()), answering_at});
  REQUIRE(r.outcome);
  CHECK_FALSE(r.outcome->ec);
  CHECK(r.outcome->reached == answering_at);
  CHECK(r.t.socket().is_open());
  CHECK(r.t.socket().remote_endpoint() == answering_at);
  CHECK(r.took < 5s);  // 250 ms after the silent attempt began
  tcp::socket accepted = answering.accept();
  CHECK(accepted.remote_endpoint() == r.t.socket().local_endpoint());
}

TEST_CASE("a race ends when its transport closes or expires", "[integration][happy-eyeballs]") {
  silent_listener first(v4("127.0.0.31", 0));
  silent_listener second(v4("127.0.0.32", first.port()));
  const std::vector<tcp::endpoint> both{v4("127.0.0.31", first.port()),
                                        v4("127.0.0.32", first.port())};
  SECTION("closed") {
    race_run r;
    asio::steady_timer closer(r.io, 400ms);  // after both attempts began
    closer.async_wait([&](boost::system::error_code) { r.t.close(); });
    r.run(both);
    REQUIRE(r.outcome);
    CHECK(r.outcome->ec == asio::error::operation_aborted);
    CHECK_FALSE(r.t.expired());
    CHECK(r.took < 5s);
  }
  SECTION("expired") {
    race_run r;
    r.t.expires_at(clock_type::now() + 400ms);
    r.run(both);
    REQUIRE(r.outcome);
    CHECK(r.outcome->ec == asio::error::operation_aborted);
    CHECK(r.t.expired());
    CHECK(r.took < 5s);
  }
}

TEST_CASE("a race whose every address refuses says connection_refused at once",
          "[integration][happy-eyeballs]") {
  const std::uint16_t port = free_port("127.0.0.33");
  race_run r;
  r.run({v4("127.0.0.33", port), v4("127.0.0.34", port)});
  REQUIRE(r.outcome);
  CHECK(r.outcome->ec == asio::error::connection_refused);
  CHECK(r.took < 5s);  // no stagger: the next attempt starts when one fails
}
