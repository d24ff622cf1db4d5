// A client's metrics and the observers of hosts and clients (issue 20,
// items 1 and 3): comet_client_* counted by endpoint and code with a
// histogram that adds up, endpoints past 32 folded into one label, a
// host serving its clients' series, promtool's verdict; observers told of
// every request, stream and subscription, with sizes; metrics switched off.
#include <comet/comet.hpp>

#include "exposition.hpp"
#include "support.hpp"

#include <functional>
#include <list>
#include <mutex>

using namespace comet;
using namespace comet::test;

namespace {

std::string label(const endpoint& e) { return e.to_string(); }

// The sum of every comet_client_requests_total sample of `client`.
double requests_of(const std::map<std::string, double>& all, const std::string& client) {
  double total = 0;
  for (const auto& [key, value] : all)
    if (key.starts_with("comet_client_requests_total{client=\"" + client + "\""))
      total += value;
  return total;
}

// What an observer was told, copied out of the events (their views end
// with the call). Called on io threads: guarded.
struct recording_observer : comet::observer {
  struct request {
    std::string action;
    endpoint peer;
    std::optional<errc> error;
    std::chrono::nanoseconds duration;
    std::size_t request_bytes, answer_bytes;
    std::string traceparent;
  };
  struct stream {
    bool opened;
    stream_kind kind;
    std::string name;
    std::optional<errc> error;
  };
  void request_done(const request_event& e) override {
    std::lock_guard lock(mutex);
    requests.push_back({std::string(e.action), e.peer, e.error, e.duration, e.request_bytes,
                        e.answer_bytes, std::string(e.traceparent)});
  }
  void stream_opened(const stream_event& e) override {
    std::lock_guard lock(mutex);
    streams.push_back({true, e.kind, std::string(e.name), e.error});
  }
  void stream_ended(const stream_event& e) override {
    std::lock_guard lock(mutex);
    streams.push_back({false, e.kind, std::string(e.name), e.error});
  }
  std::size_t request_count() {
    std::lock_guard lock(mutex);
    return requests.size();
  }
  std::size_t stream_count() {
    std::lock_guard lock(mutex);
    return streams.size();
  }
  std::mutex mutex;
  std::vector<request> requests;
  std::vector<stream> streams;
};

// Echo hosts on one pool, each on its own port of 127.0.0.1.
struct echo_fleet {
  explicit echo_fleet(std::size_t n, const std::function<void(host&)>& setup = {}) : pool(2) {
    for (std::size_t i = 0; i < n; ++i) {
      auto& h = hosts.emplace_back(pool.get_executor(), host_fixture::loopback());
      add_echo(h);
      if (setup) setup(h);
      at.push_back(h.start());
    }
  }
  io_pool pool;
  std::list<host> hosts;
  std::vector<endpoint> at;
};

}  // namespace

TEST_CASE("client metrics count sends by endpoint and code, with a histogram that adds up",
          "[integration][metrics][observability]") {
  host_fixture f;
  add_echo(f.server);
  f.server.on("fail", [](const std::string&, const json::value&) -> json::value {
    throw error(errc::bad_request, "no");
  });
  f.start();
  for (const bool keep_alive : {false, true}) {
    INFO("keep_alive " << keep_alive);
    client_options o;
    o.name = keep_alive ? "pooled" : "one-shot";
    o.keep_alive = keep_alive;
    client c = f.make_client(o);
    for (int i = 0; i < 5; ++i) CHECK(c.send_sync("echo", i) == i);
    for (int i = 0; i < 2; ++i)
      CHECK(error_thrown_by([&] { (void)c.send_sync("fail", i); }).code() == errc::bad_request);
    const auto all = samples(c.metrics());
    const std::string series = "comet_client_requests_total{client=\"" + o.name + "\",endpoint=\"" +
                               label(f.at) + "\",code=";
    CHECK(sample(all, series + "\"ok\"}") == 5);
    CHECK(sample(all, series + "\"bad_request\"}") == 2);
    CHECK(requests_of(all, o.name) == 7);
    const std::string h = "comet_client_request_duration_seconds";
    CHECK(sample(all, h + "_count{client=\"" + o.name + "\"}") == 7);
    CHECK(sample(all, h + "_bucket{client=\"" + o.name + "\",le=\"+Inf\"}") == 7);
    CHECK(sample(all, h + "_sum{client=\"" + o.name + "\"}") > 0);
    CHECK(sample(all, "comet_client_in_flight{client=\"" + o.name + "\"}") == 0);
    CHECK(sample(all, "comet_client_connections_opened_total{client=\"" + o.name + "\"}") ==
          (keep_alive ? 1 : 0));
  }
  // A client's own failures count under its codes; its name defaults to the peer's address.
  const endpoint nobody{"127.0.0.1", unused_port()};
  client_options quick;
  quick.connect_retries = 0;
  client offline(f.pool.get_executor(), nobody, quick);
  CHECK(error_thrown_by([&] { (void)offline.send_sync("echo", 1); }).code() == errc::peer_offline);
  const auto all = samples(offline.metrics());
  CHECK(sample(all, "comet_client_requests_total{client=\"" + label(nobody) + "\",endpoint=\"" +
                        label(nobody) + "\",code=\"peer_offline\"}") == 1);
}

TEST_CASE("counts add up exactly under 2,000 concurrent sends from two threads",
          "[integration][metrics][observability]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  client_options o;
  o.name = "busy";
  o.keep_alive = true;
  client c = f.make_client(o);
  constexpr int sends = 2000;
  std::atomic<int> answered{0};
  for (int i = 0; i < sends; ++i)
    asio::co_spawn(f.pool.get_executor(), c.send("echo", i),
                   [&answered](std::exception_ptr failure, json::value) {
                     if (!failure) ++answered;
                   });
  REQUIRE(wait_until([&] { return answered.load() == sends; }, 30s));
  const auto client_side = samples(c.metrics());
  CHECK(sample(client_side, "comet_client_requests_total{client=\"busy\",endpoint=\"" + label(f.at) +
                                "\",code=\"ok\"}") == sends);
  CHECK(sample(client_side, "comet_client_request_duration_seconds_count{client=\"busy\"}") == sends);
  const auto host_side = samples(f.server.metrics());
  CHECK(sample(host_side, R"(comet_host_requests_total{action="echo",code="ok"})") == sends);
  CHECK(sample(host_side, R"(comet_host_request_duration_seconds_count{action="echo"})") == sends);
}

TEST_CASE("a client of an endpoint list counts by endpoint and shows each one up or not",
          "[integration][metrics][observability]") {
  echo_fleet fleet(2);
  client_options o;
  o.name = "fleet";
  client c(fleet.pool.get_executor(), fleet.at, o);
  for (int i = 0; i < 10; ++i) CHECK(c.send_sync("echo", i) == i);
  auto all = samples(c.metrics());
  for (const auto& at : fleet.at) {
    const std::string labels = "{client=\"fleet\",endpoint=\"" + label(at) + "\"";
    CHECK(sample(all, "comet_client_requests_total" + labels + ",code=\"ok\"}") == 5);
    CHECK(sample(all, "comet_client_endpoint_up" + labels + "}") == 1);
    CHECK(sample(all, "comet_client_endpoint_ejections_total" + labels + "}") == 0);
  }
  CHECK(sample(all, "comet_client_retries_total{client=\"fleet\"}") == 0);
  // The second host goes: its refused connect marks it down, and the send
  // goes to the first (a retry).
  fleet.hosts.back().stop();
  for (int i = 0; i < 4; ++i) CHECK(c.send_sync("echo", i) == i);
  all = samples(c.metrics());
  CHECK(sample(all, "comet_client_endpoint_up{client=\"fleet\",endpoint=\"" + label(fleet.at[1]) +
                        "\"}") == 0);
  CHECK(sample(all, "comet_client_endpoint_up{client=\"fleet\",endpoint=\"" + label(fleet.at[0]) +
                        "\"}") == 1);
  CHECK(sample(all, "comet_client_retries_total{client=\"fleet\"}") >= 1);
  CHECK(requests_of(all, "fleet") == 14);
}

TEST_CASE("endpoints past the first 32 of a client count under one label",
          "[integration][metrics][observability]") {
  echo_fleet fleet(34);
  client_options o;
  o.name = "wide";
  client c(fleet.pool.get_executor(), fleet.at, o);
  // Sequential sends go to each endpoint in turn: two each.
  for (int i = 0; i < 68; ++i) CHECK(c.send_sync("echo", i) == i);
  const auto all = samples(c.metrics());
  std::size_t series = 0;
  for (const auto& [key, value] : all)
    if (key.starts_with("comet_client_requests_total{")) ++series;
  CHECK(series == 33);
  for (std::size_t i = 0; i < 32; ++i)
    CHECK(sample(all, "comet_client_requests_total{client=\"wide\",endpoint=\"" + label(fleet.at[i]) +
                          "\",code=\"ok\"}") == 2);
  CHECK(sample(all, R"(comet_client_requests_total{client="wide",endpoint="<other>",code="ok"})") == 4);
  CHECK(sample(all, R"(comet_client_endpoint_up{client="wide",endpoint="<other>"})") == 2);
  CHECK(all.count("comet_client_endpoint_up{client=\"wide\",endpoint=\"" + label(fleet.at[33]) +
                  "\"}") == 0);
  check_with_promtool(c.metrics());
}

TEST_CASE("a host serves the series of the clients added to it, while they live",
          "[integration][metrics][observability]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  client_options a;
  a.name = "upstream \"a\"";
  client one = f.make_client(a);
  std::optional<client> list;
  client_options b;
  b.name = "upstream-b";
  list.emplace(f.pool.get_executor(), std::vector<endpoint>{f.at}, b);
  f.server.add_metrics(one);
  f.server.add_metrics(*list);
  f.server.add_metrics(one);  // added once however often
  CHECK(one.send_sync("echo", 1) == 1);
  CHECK(list->send_sync("echo", 2) == 2);
  std::string text = f.server.metrics();
  auto all = samples(text);
  CHECK(sample(all, "comet_client_requests_total{client=\"upstream \\\"a\\\"\",endpoint=\"" +
                        label(f.at) + "\",code=\"ok\"}") == 1);
  CHECK(sample(all, "comet_client_requests_total{client=\"upstream-b\",endpoint=\"" + label(f.at) +
                        "\",code=\"ok\"}") == 1);
  CHECK(sample(all, R"(comet_host_requests_total{action="echo",code="ok"})") == 2);
  check_with_promtool(text);
  // A client destroyed drops out.
  list.reset();
  all = samples(f.server.metrics());
  CHECK(requests_of(all, "upstream-b") == 0);
  CHECK(requests_of(all, "upstream \\\"a\\\"") == 1);
}

TEST_CASE("host and client observers are told of every answer, refusal, stream and subscription",
          "[integration][observability]") {
  auto seen = std::make_shared<recording_observer>();
  auto client_seen = std::make_shared<recording_observer>();
  host_options options = host_fixture::loopback();
  options.observer = seen;
  host_fixture f(2, options);
  add_echo(f.server);
  f.server.on_stream("three", [](const json::value&, stream_writer& out) -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) co_await out.write(json::value(i));
  });
  f.start();
  client_options o;
  o.keep_alive = true;
  o.observer = client_seen;
  client c = f.make_client(o);
  const json::value hello("hello");
  CHECK(c.send_sync("echo", hello) == hello);
  CHECK(error_thrown_by([&] { (void)c.send_sync("nobody", 1); }).code() == errc::no_handler);
  const int items = run(f.pool.get_executor(), [&]() -> asio::awaitable<int> {
    auto s = co_await c.open_stream("three", json::value(nullptr));
    int n = 0;
    while (co_await s.next()) ++n;
    co_return n;
  });
  CHECK(items == 3);
  run(f.pool.get_executor(), [&]() -> asio::awaitable<void> {
    auto sub = co_await c.subscribe("news");
    sub.close();
  });
  REQUIRE(wait_until([&] { return seen->stream_count() == 4 && seen->request_count() >= 2; }));
  std::lock_guard lock(seen->mutex);
  REQUIRE(seen->requests.size() == 2);
  const auto& echo = seen->requests[0];
  CHECK(echo.action == "echo");
  CHECK(echo.peer.ip == "127.0.0.1");
  CHECK(!echo.error);
  CHECK(echo.duration.count() > 0);
  CHECK(echo.request_bytes == encode_request("echo", hello).size());
  CHECK(echo.answer_bytes == std::string(R"({"result": "hello"})").size());
  CHECK(seen->requests[1].action == "nobody");
  CHECK(seen->requests[1].error == errc::no_handler);
  const auto& s = seen->streams;
  CHECK((s[0].opened && s[0].kind == stream_kind::stream && s[0].name == "three"));
  CHECK((!s[1].opened && s[1].name == "three" && !s[1].error));
  CHECK((s[2].opened && s[2].kind == stream_kind::subscription && s[2].name == "news"));
  CHECK((!s[3].opened && s[3].name == "news"));
  // The client's side: the same streams, the closed subscription as cancelled.
  REQUIRE(wait_until([&] { return client_seen->stream_count() == 4; }));
  std::lock_guard client_lock(client_seen->mutex);
  const auto& cs = client_seen->streams;
  CHECK((cs[0].opened && cs[0].kind == stream_kind::stream && cs[0].name == "three"));
  CHECK((!cs[1].opened && cs[1].name == "three" && !cs[1].error));
  CHECK((cs[2].opened && cs[2].kind == stream_kind::subscription && cs[2].name == "news"));
  CHECK((!cs[3].opened && cs[3].name == "news" && cs[3].error == errc::cancelled));
  CHECK(client_seen->requests.size() == 2);
}

TEST_CASE("a client observer is told of every send, with the endpoint that answered",
          "[integration][observability]") {
  echo_fleet fleet(2, [](host& h) {
    h.on("fail", [](const std::string&, const json::value&) -> json::value {
      throw error(errc::bad_request, "no");
    });
  });
  auto seen = std::make_shared<recording_observer>();
  client_options o;
  o.observer = seen;
  client single(fleet.pool.get_executor(), fleet.at[0], o);
  const json::value v(42);
  CHECK(single.send_sync("echo", v) == v);
  CHECK(error_thrown_by([&] { (void)single.send_sync("fail", v); }).code() == errc::bad_request);
  client list(fleet.pool.get_executor(), fleet.at, o);
  CHECK(list.send_sync("echo", v) == v);
  CHECK(list.send_sync("echo", v) == v);
  REQUIRE(seen->request_count() == 4);
  std::lock_guard lock(seen->mutex);
  const auto& r = seen->requests;
  CHECK(r[0].action == "echo");
  CHECK(r[0].peer == fleet.at[0]);
  CHECK(!r[0].error);
  CHECK(r[0].request_bytes == encode_request("echo", v).size());
  CHECK(r[0].answer_bytes == std::string(R"({"result": 42})").size());
  CHECK(r[0].duration.count() > 0);
  CHECK(r[1].error == errc::bad_request);
  // The list's two sends went to each endpoint in turn.
  CHECK(r[2].peer != r[3].peer);
  CHECK(((r[2].peer == fleet.at[0] || r[2].peer == fleet.at[1]) &&
         (r[3].peer == fleet.at[0] || r[3].peer == fleet.at[1])));
}

TEST_CASE("an observer that throws is logged and changes no answer", "[integration][observability]") {
  struct throwing : comet::observer {
    void request_done(const request_event&) override { throw std::runtime_error("telemetry is down"); }
  };
  log_capture logs(log_level::warn);
  host_options options = host_fixture::loopback();
  options.observer = std::make_shared<throwing>();
  host_fixture f(2, options);
  add_echo(f.server);
  f.start();
  client_options o;
  o.observer = std::make_shared<throwing>();
  client c = f.make_client(o);
  CHECK(c.send_sync("echo", 7) == 7);
  CHECK(c.send_sync("echo", 8) == 8);
  REQUIRE(wait_until([&] { return logs.contains("telemetry is down"); }));
}

TEST_CASE("metrics switched off keep no per-request counts on either side",
          "[integration][metrics][observability]") {
  host_options options = host_fixture::loopback();
  options.metrics = false;
  host_fixture f(2, options);
  add_echo(f.server);
  f.start();
  client_options o;
  o.name = "quiet";
  o.metrics = false;
  client c = f.make_client(o);
  for (int i = 0; i < 3; ++i) CHECK(c.send_sync("echo", i) == i);
  const auto host_side = samples(f.server.metrics());
  CHECK(sample(host_side, R"(comet_host_requests_total{action="echo",code="ok"})") == 0);
  CHECK(f.server.stats().requests_served == 0);
  // What is not per request is kept.
  CHECK(f.server.stats().connections_accepted == 3);
  const auto client_side = samples(c.metrics());
  CHECK(requests_of(client_side, "quiet") == 0);
  CHECK(sample(client_side, R"(comet_client_request_duration_seconds_count{client="quiet"})") == 0);
}

TEST_CASE("a counted send hands back a heap-held answer intact, inline on a one-thread pool",
          "[integration][observability]") {
  // The send that counts itself must not destroy its answer twice (GCC 12
  // coroutines), whichever path it takes: inline on a one-thread pool's
  // keep-alive client, or hopping to a strand.
  for (const std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
    host_fixture f(threads);
    add_echo(f.server);
    f.start();
    client_options o;
    o.keep_alive = true;
    client c(f.pool, f.at, o);
    const json::value text(std::string(200, 'x'));
    const int same = run(f.pool.get_executor(), [&]() -> asio::awaitable<int> {
      int n = 0;
      for (int i = 0; i < 100; ++i) {
        const json::value answer = co_await c.send("echo", text);
        n += answer == text;
      }
      co_return n;
    });
    CHECK(same == 100);
  }
}

TEST_CASE("observers see a request's traceparent on both sides", "[integration][observability][trace]") {
  auto host_seen = std::make_shared<recording_observer>();
  auto client_seen = std::make_shared<recording_observer>();
  host_options options = host_fixture::loopback();
  options.observer = host_seen;
  host_fixture f(2, options);
  add_echo(f.server);
  f.start();
  client_options o;
  o.keep_alive = true;
  o.observer = client_seen;
  client c = f.make_client(o);
  // The first request learns whether the host takes a traceparent.
  CHECK(c.send_sync("echo", 0) == 0);
  const std::string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  send_options traced;
  traced.traceparent = traceparent;
  CHECK(c.send_sync("echo", 1, traced) == 1);
  REQUIRE(wait_until([&] { return host_seen->request_count() == 2 && client_seen->request_count() == 2; }));
  std::lock_guard host_lock(host_seen->mutex);
  std::lock_guard client_lock(client_seen->mutex);
  CHECK(host_seen->requests[0].traceparent.empty());
  CHECK(host_seen->requests[1].traceparent == traceparent);
  CHECK(client_seen->requests[0].traceparent.empty());
  CHECK(client_seen->requests[1].traceparent == traceparent);
}
