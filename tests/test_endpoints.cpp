// Clients of several hosts (issue 19): an endpoint list, balancing by the
// fewest sends outstanding, down endpoints skipped, outlier detection,
// failover only for requests that provably never reached a host (or
// idempotent ones), the retry budget, names that stand for all their
// addresses, streams and close over a list. Hosts run on 127.0.0.2-.4,
// all loopback on Linux.
#include <comet/comet.hpp>

#include <cstdlib>
#include <fstream>

#include "private_hosts.hpp"
#include "processes.hpp"
#include "retry_window.hpp"
#include "support.hpp"


using namespace comet;
using namespace comet::test;

namespace {

host_options on_address(const std::string& ip, std::uint16_t port = 0) {
  host_options o;
  o.listen = {ip, port};
  return o;
}

// Hosts on 127.0.0.2, .3, ... on one io_pool, each answering "echo".
struct fleet {
  explicit fleet(std::size_t n, std::uint16_t port = 0) : pool(2) {
    for (std::size_t i = 0; i < n; ++i) {
      auto& h = hosts.emplace_back(
          std::make_unique<host>(pool.get_executor(), on_address("127.0.0." + std::to_string(2 + i), port)));
      add_echo(*h);
    }
  }
  void start() {
    for (auto& h : hosts) at.push_back(h->start());
  }
  std::uint64_t served(std::size_t i) const { return hosts[i]->stats().requests_served; }

  io_pool pool;
  std::vector<std::unique_ptr<host>> hosts;
  std::vector<endpoint> at;
};

// 127.0.0.x:port where nothing listens.
endpoint refused_endpoint(const std::string& ip) {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address(ip), 0));
  return {ip, a.local_endpoint().port()};
}

const endpoint_stats& stats_of(const std::vector<endpoint_stats>& all, const endpoint& e) {
  for (const auto& s : all)
    if (s.address == e) return s;
  FAIL("no endpoint " + e.to_string() + " in the client's endpoint_stats()");
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("a client of three endpoints spreads sequential sends evenly", "[integration][endpoints]") {
  const bool keep_alive = GENERATE(false, true);
  CAPTURE(keep_alive);
  fleet f(3);
  f.start();
  client_options o;
  o.keep_alive = keep_alive;
  client c(f.pool.get_executor(), f.at, o);
  CHECK(c.endpoints() == f.at);
  for (int i = 0; i < 300; ++i) REQUIRE(c.send_sync("echo", json::value(i)) == json::value(i));
  // Nothing outstanding between sequential sends: ties go in turn.
  CHECK(f.served(0) == 100);
  CHECK(f.served(1) == 100);
  CHECK(f.served(2) == 100);
  const auto endpoints = c.endpoint_stats();
  REQUIRE(endpoints.size() == 3);
  for (const auto& e : endpoints) {
    CHECK(e.sends == 100);
    CHECK(e.outstanding == 0);
    CHECK(e.state == endpoint_stats::health::healthy);
  }
  CHECK(c.stats().retries == 0);
}

TEST_CASE("a send goes to the endpoint with the fewest sends outstanding", "[integration][endpoints]") {
  // The first host answers "work" 30 ms late, the others at once: it holds
  // sends outstanding, so it is picked far less often than in turn.
  fleet f(3);
  f.hosts[0]->on("work", sleep_then_echo);
  for (std::size_t i = 1; i < 3; ++i)
    f.hosts[i]->on("work", [](const std::string&, const json::value& v) { return v; });
  f.start();
  client_options o;
  o.keep_alive = true;
  client c(f.pool.get_executor(), f.at, o);
  std::atomic<int> failed{0}, done{0};
  for (int w = 0; w < 16; ++w)
    asio::co_spawn(f.pool.get_executor(), [&]() -> asio::awaitable<void> {
      for (int i = 0; i < 20; ++i) {
        const json::value delay(30);
        try {
          co_await c.send("work", delay);
        } catch (const error&) {
          ++failed;
        }
      }
    }, [&](std::exception_ptr) { ++done; });
  REQUIRE(wait_until([&] { return done == 16; }, std::chrono::seconds(60)));
  CHECK(failed == 0);
  const auto slow = f.served(0), fast1 = f.served(1), fast2 = f.served(2);
  CAPTURE(slow, fast1, fast2);
  CHECK(slow + fast1 + fast2 == 320);
  CHECK(slow * 4 < fast1);
  CHECK(slow * 4 < fast2);
}

TEST_CASE("an endpoint that refuses connections is skipped and its sends go to the others",
          "[integration][endpoints]") {
  fleet f(2);
  f.start();
  const endpoint dead = refused_endpoint("127.0.0.4");
  std::vector<endpoint> list{dead, f.at[0], f.at[1]};
  client c(f.pool.get_executor(), list);
  for (int i = 0; i < 100; ++i) REQUIRE(c.send_sync("echo", json::value(i)) == json::value(i));
  CHECK(f.served(0) + f.served(1) == 100);
  const auto dead_stats = stats_of(c.endpoint_stats(), dead);
  CHECK(dead_stats.failures >= 1);
  // Down after its first refusal: tried again only once its backoff passed.
  CHECK(dead_stats.failures <= 10);
  CHECK(c.stats().retries == dead_stats.failures);
}

TEST_CASE("a request that may have been read goes to another endpoint only when idempotent",
          "[integration][endpoints]") {
  // Reads each request and closes without answering.
  scripted_peer vanishing("");
  fleet f(1);
  f.start();
  std::vector<endpoint> list{vanishing.at(), f.at[0]};
  client c(f.pool.get_executor(), list);
  // The first send goes to the first endpoint, which read it: not sent again.
  const error e = error_thrown_by([&] { c.send_sync("echo", json::value(1)); });
  CHECK(e.code() == errc::connection_closed);
  CHECK(vanishing.answered() == 1);
  CHECK(f.served(0) == 0);
  CHECK(c.stats().retries == 0);
  // Idempotent sends go on to the host when the first endpoint loses them.
  send_options idempotent;
  idempotent.idempotent = true;
  for (int i = 0; i < 4; ++i)
    CHECK(c.send_sync("echo", json::value(i), idempotent) == json::value(i));
  // Each one the first endpoint lost went on to the host.
  CHECK(f.served(0) == 4);
  CHECK(vanishing.answered() >= 2);
  CHECK(c.stats().retries == static_cast<std::uint64_t>(vanishing.answered() - 1));
}

TEST_CASE("a timed-out request is never sent again", "[integration][endpoints]") {
  held_requests held;
  fleet f(2);
  held.add_to(*f.hosts[0]);
  f.start();
  client c(f.pool.get_executor(), f.at);
  send_options o;
  o.timeout = std::chrono::milliseconds(200);
  o.idempotent = true;
  const error e = error_thrown_by([&] { c.send_sync("hold", json::value(1), o); });
  CHECK(e.code() == errc::request_timeout);
  CHECK(held.runs == 1);
  CHECK(f.served(1) == 0);
  CHECK(c.stats().retries == 0);
  held.release = true;
}

TEST_CASE("outlier detection ejects an endpoint that keeps failing", "[integration][endpoints]") {
  scripted_peer vanishing("");
  fleet f(2);
  f.start();
  std::vector<endpoint> list{vanishing.at(), f.at[0], f.at[1]};
  client c(f.pool.get_executor(), list);
  send_options idempotent;
  idempotent.idempotent = true;
  for (int i = 0; i < 60; ++i)
    REQUIRE(c.send_sync("echo", json::value(i), idempotent) == json::value(i));
  // consecutive_failures (5) in a row, then left out for 30 s.
  CHECK(vanishing.answered() == 5);
  const auto s = stats_of(c.endpoint_stats(), vanishing.at());
  CHECK(s.state == endpoint_stats::health::ejected);
  CHECK(s.ejections == 1);
  CHECK(s.failures == 5);
  CHECK(f.served(0) + f.served(1) == 60);
}

TEST_CASE("the last healthy endpoint is never ejected", "[integration][endpoints]") {
  scripted_peer first(""), second("");
  io_pool pool(1);
  std::vector<endpoint> list{first.at(), second.at()};
  client_options o;
  o.outlier_detection.max_ejection_percent = 100;
  client c(pool.get_executor(), list, o);
  send_options idempotent;
  idempotent.idempotent = true;
  for (int i = 0; i < 20; ++i)
    CHECK(error_thrown_by([&] { c.send_sync("echo", json::value(i), idempotent); }).code() ==
          errc::connection_closed);
  const auto all = c.endpoint_stats();
  std::size_t ejected = 0;
  for (const auto& s : all) ejected += s.state == endpoint_stats::health::ejected ? 1 : 0;
  CHECK(ejected == 1);
  // The one left keeps taking sends.
  const int before = first.answered() + second.answered();
  CHECK_THROWS_AS(c.send_sync("echo", json::value(0), idempotent), error);
  CHECK(first.answered() + second.answered() == before + 1);
}

TEST_CASE("the retry budget bounds what failing endpoints are sent again", "[integration][endpoints]") {
  scripted_peer a(""), b(""), d("");
  io_pool pool(1);
  std::vector<endpoint> list{a.at(), b.at(), d.at()};
  client_options o;
  o.outlier_detection.consecutive_failures = 0;  // never eject: the budget alone bounds
  o.retry_budget.ratio = 0;
  o.retry_budget.per_second = 1;  // 10 retries in any 10 s, as nothing succeeds
  client c(pool.get_executor(), list, o);
  send_options idempotent;
  idempotent.idempotent = true;
  for (int i = 0; i < 20; ++i) {
    const error e = error_thrown_by([&] { c.send_sync("echo", json::value(i), idempotent); });
    CHECK(e.code() == errc::connection_closed);
  }
  CHECK(c.stats().retries == 10);
  CHECK(c.stats().retries_refused >= 10);
  CHECK(a.answered() + b.answered() + d.answered() == 30);
}

TEST_CASE("a send not sent again for want of budget says so", "[integration][endpoints]") {
  fleet f(1);
  f.start();
  const endpoint dead = refused_endpoint("127.0.0.3");
  std::vector<endpoint> list{dead, f.at[0]};
  client_options o;
  o.retry_budget.ratio = 0;
  o.retry_budget.per_second = 0;
  client c(f.pool.get_executor(), list, o);
  const error e = error_thrown_by([&] { c.send_sync("echo", json::value(1)); });
  CHECK(e.code() == errc::peer_offline);
  CHECK_THAT(e.what(), Catch::Contains("retry budget"));
  CHECK(c.stats().retries_refused == 1);
  // The dead endpoint is down now: the next sends go to the host.
  CHECK(c.send_sync("echo", json::value(2)) == json::value(2));
}

TEST_CASE("every endpoint refusing fails the send with each one's state", "[integration][endpoints]") {
  io_pool pool(1);
  std::vector<endpoint> list{refused_endpoint("127.0.0.2"), refused_endpoint("127.0.0.3")};
  client_options o;
  o.connect_retries = 1;
  client c(pool.get_executor(), list, o);
  const error first = error_thrown_by([&] { c.send_sync("echo", json::value(1)); });
  CHECK(first.code() == errc::peer_offline);
  // Both are down now: a send fails at once, naming them.
  const error then = error_thrown_by([&] { c.send_sync("echo", json::value(2)); });
  CHECK(then.code() == errc::peer_offline);
  CHECK_THAT(then.what(), Catch::Contains("127.0.0.2") && Catch::Contains("down"));
  for (const auto& s : c.endpoint_stats()) CHECK(s.state == endpoint_stats::health::down);
}

TEST_CASE("a stream over an endpoint list opens on another endpoint when one refuses",
          "[integration][endpoints]") {
  fleet f(1);
  f.hosts[0]->on_stream("count", [](const json::value& n, stream_writer& out) -> asio::awaitable<void> {
    for (std::int64_t i = 1; i <= n.as_int64(); ++i) {
      const json::value item(i);
      co_await out.write(item);
    }
  });
  f.start();
  std::vector<endpoint> list{refused_endpoint("127.0.0.3"), f.at[0]};
  client c(f.pool.get_executor(), list);
  const auto sum = run(f.pool.get_executor(), [&]() -> asio::awaitable<std::int64_t> {
    const json::value n(10);
    stream_reader<std::int64_t> s = co_await c.open_stream<std::int64_t>("count", n);
    std::int64_t total = 0;
    while (auto item = co_await s.next()) total += *item;
    co_return total;
  });
  CHECK(sum == 55);
  CHECK(c.stats().retries == 1);
}

TEST_CASE("close() ends sends in flight over an endpoint list at once", "[integration][endpoints]") {
  held_requests held;
  fleet f(2);
  for (auto& h : f.hosts) held.add_to(*h);
  f.start();
  client_options o;
  o.keep_alive = GENERATE(false, true);
  client c(f.pool.get_executor(), f.at, o);
  // Each endpoint's pool learns that its host keeps connections open (its
  // first request goes alone), so the holds that follow all go out.
  for (int i = 0; i < 2; ++i) REQUIRE(c.send_sync("echo", json::value(i)) == json::value(i));
  std::vector<std::future<json::value>> sends;
  for (int i = 0; i < 6; ++i) {
    const json::value v(i);
    sends.push_back(c.async_send("hold", v, asio::use_future));
  }
  REQUIRE(wait_until([&] { return held.runs == 6; }));
  c.close();
  for (auto& s : sends) {
    REQUIRE(s.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    CHECK(error_thrown_by([&] { s.get(); }).code() == errc::cancelled);
  }
  CHECK(error_thrown_by([&] { c.send_sync("echo", json::value(1)); }).code() == errc::client_closed);
  held.release = true;
}

TEST_CASE("a config's endpoint list makes a client of the list", "[integration][endpoints]") {
  fleet f(2);
  f.start();
  config cfg;
  cfg.client_endpoints["Fleet"] = f.at;
  client_set clients(f.pool.get_executor(), cfg);
  const client& c = clients["Fleet"];
  CHECK(c.endpoints() == f.at);
  for (int i = 0; i < 10; ++i) REQUIRE(c.send_sync("echo", json::value(i)) == json::value(i));
  CHECK(f.served(0) == 5);
  CHECK(f.served(1) == 5);
}

TEST_CASE("an empty endpoint list is a usage error", "[endpoints]") {
  io_pool pool(1);
  const error e = error_thrown_by([&] { client c(pool.get_executor(), std::vector<endpoint>{}); });
  CHECK(e.code() == errc::usage_error);
}

TEST_CASE("the retry budget: a share of successes and a floor a second, over 10 s", "[endpoints]") {
  using clock = retry_window::clock;
  const clock::time_point t0{std::chrono::hours(1000)};
  retry_window w(retry_budget{0.2, 1});
  // The floor: 10 in any 10 s.
  for (int i = 0; i < 10; ++i) CHECK(w.try_spend(t0));
  CHECK_FALSE(w.try_spend(t0));
  // 50 successes earn 10 more.
  for (int i = 0; i < 50; ++i) w.on_success(t0 + std::chrono::seconds(1));
  for (int i = 0; i < 10; ++i) CHECK(w.try_spend(t0 + std::chrono::seconds(1)));
  CHECK_FALSE(w.try_spend(t0 + std::chrono::seconds(1)));
  // The first second's retries age out after 10 s; the successes stay a second longer.
  CHECK(w.try_spend(t0 + std::chrono::seconds(10)));
  // Past 11 s the window holds nothing: the floor again.
  for (int i = 0; i < 10; ++i) CHECK(w.try_spend(t0 + std::chrono::seconds(30)));
  CHECK_FALSE(w.try_spend(t0 + std::chrono::seconds(30)));
}

// Names (tests/hosts/multi: lab-fleet is 127.0.0.31, .32 and .33).
TEST_CASE("a name in an endpoint list stands for every address it resolves to",
          "[.names-multi][endpoints]") {
  REQUIRE(private_addresses_of("lab-fleet") ==
          std::vector<std::string>{"127.0.0.31", "127.0.0.32", "127.0.0.33"});
  io_pool pool(2);
  std::vector<std::unique_ptr<host>> hosts;
  hosts.push_back(std::make_unique<host>(pool.get_executor(), on_address("127.0.0.31")));
  add_echo(*hosts[0]);
  const std::uint16_t port = hosts[0]->start().port;
  for (const char* ip : {"127.0.0.32", "127.0.0.33"}) {
    hosts.push_back(std::make_unique<host>(pool.get_executor(), on_address(ip, port)));
    add_echo(*hosts.back());
    hosts.back()->start();
  }
  client_options o;
  o.resolve_max_age = std::chrono::milliseconds(1);
  const endpoint name{"lab-fleet", port};
  client c(pool.get_executor(), std::vector<endpoint>{name}, o);
  for (int i = 0; i < 90; ++i) REQUIRE(c.send_sync("echo", json::value(i)) == json::value(i));
  const auto all = c.endpoint_stats();
  REQUIRE(all.size() == 3);
  for (const auto& s : all) {
    CHECK(s.entry == name.to_string());
    CHECK(s.sends == 30);
  }
  for (auto& h : hosts) CHECK(h->stats().requests_served == 30);
  // Resolved again whenever a send finds the last resolve older than 1 ms.
  const auto resolves = c.stats().resolves;
  CHECK(resolves >= 1);
  REQUIRE(wait_until([&] {
    c.send_sync("echo", json::value(0));
    return c.stats().resolves >= resolves + 2;
  }));
}

// A name whose addresses change: the test stacks a hosts file of its own
// over the private /etc/hosts (the mount namespace tests/with_hosts made is
// this process's alone), then edits it.
TEST_CASE("an endpoint list follows a name's addresses as they change",
          "[.names-multi][endpoints]") {
  private_hosts_file();
  const char* via = std::getenv("COMET_HOSTS_VIA");
  if (via == nullptr || std::string(via) != "mount") {
    WARN("needs the private mount namespace of tests/with_hosts (COMET_HOSTS_VIA=mount)");
    return;
  }
  const std::string file = (scratch_dir() / "moving-hosts").string();
  const std::string base = read_file("/etc/hosts");
  const auto write_hosts = [&](const std::string& lines) {
    std::ofstream out(file, std::ios::trunc);  // the same inode: the bind mount sees it
    out << base << lines;
  };
  write_hosts("127.0.0.41 lab-moving\n127.0.0.42 lab-moving\n");
  REQUIRE(std::system(("mount --bind " + file + " /etc/hosts").c_str()) == 0);
  struct unmount {
    std::string file;
    ~unmount() {
      (void)std::system("umount /etc/hosts");
      std::remove(file.c_str());
    }
  } restore{file};

  io_pool pool(2);
  host first(pool.get_executor(), on_address("127.0.0.41"));
  add_echo(first);
  const std::uint16_t port = first.start().port;
  host second(pool.get_executor(), on_address("127.0.0.42", port));
  add_echo(second);
  second.start();
  client_options o;
  o.resolve_max_age = std::chrono::milliseconds(1);
  o.keep_alive = true;
  client c(pool.get_executor(), std::vector<endpoint>{{"lab-moving", port}}, o);
  for (int i = 0; i < 20; ++i) REQUIRE(c.send_sync("echo", json::value(i)) == json::value(i));
  REQUIRE(c.endpoint_stats().size() == 2);
  CHECK(first.stats().requests_served == 10);
  CHECK(second.stats().requests_served == 10);

  // .42 leaves the name: once a resolve sees it, it takes no new sends.
  write_hosts("127.0.0.41 lab-moving\n");
  REQUIRE(wait_until([&] {
    c.send_sync("echo", json::value(0));
    return c.endpoint_stats().size() == 1;
  }));
  const auto left_at = second.stats().requests_served;
  for (int i = 0; i < 20; ++i) REQUIRE(c.send_sync("echo", json::value(i)) == json::value(i));
  CHECK(second.stats().requests_served == left_at);
  CHECK(c.endpoint_stats().front().address == endpoint{"127.0.0.41", port});
}
