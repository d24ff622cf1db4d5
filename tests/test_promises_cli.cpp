// Promises of README.md's Services section that no other test kept (issue
// 14, item 3): comet-host stops on SIGINT and says where an address it
// cannot listen on came from; comet-send --repeat exits with the first
// failure's status.
#include "processes.hpp"
#include "temp_file.hpp"

#include <atomic>

using namespace comet;
using namespace comet::test;
using Catch::Contains;

namespace {

endpoint address_of(const running_host& h) {
  return {"127.0.0.1",
          static_cast<std::uint16_t>(std::stoi(h.address.substr(h.address.rfind(':') + 1)))};
}

int line_count(const std::string& text) {
  return static_cast<int>(std::count(text.begin(), text.end(), '\n'));
}

}  // namespace

// README: "SIGINT/SIGTERM stop it gracefully." (SIGTERM: test_lifecycle.cpp.)
TEST_CASE("comet-host stops gracefully on SIGINT", "[promises][cli]") {
  running_host h;
  io_pool pool(1);
  const client c(pool.get_executor(), address_of(h));
  CHECK(c.send_sync("echo", "before") == "before");
  h.stopped = true;
  REQUIRE(::kill(h.p.pid, SIGINT) == 0);
  CHECK(h.p.wait() == 0);
  const auto log = h.p.stderr_text();
  CHECK_THAT(log, Contains("received SIGINT, stopping"));
  CHECK_THAT(log, Contains("stopped"));
  CHECK(error_thrown_by([&] { c.send_sync("echo", "after"); }).code() == errc::peer_offline);
}

// README: comet-send's exit status "(with --repeat, the first failure's)".
// The host fails the sends in turn with an error response (5) and a
// request timeout (4), in either order.
TEST_CASE("comet-send --repeat exits with the status of its first failure", "[promises][cli]") {
  std::atomic<int> calls{0}, slow_call{0};
  host_fixture f;
  f.server.on("flaky", [&](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    const int n = ++calls;
    if (n != slow_call) throw std::runtime_error("failure number " + std::to_string(n));
    // Past comet-send's --timeout; cancelled when it gives up and closes.
    asio::steady_timer t(co_await asio::this_coro::executor, 60s);
    co_await t.async_wait(asio::use_awaitable);
    co_return v;
  });
  f.start();
  struct order {
    int slow, expected;
  };
  for (const auto o : {order{2, 5}, order{1, 4}}) {
    INFO("the call that times out: " << o.slow << ", expected status " << o.expected);
    calls = 0;
    slow_call = o.slow;
    const auto r = run_cli("comet-send", {"--to", f.at.to_string(), "--action", "flaky",
                                          "--repeat", "2", "--timeout", "2", "--quiet"});
    INFO(r.err);
    CHECK(r.status == o.expected);
    CHECK(calls == 2);
    CHECK(line_count(r.err) == 3);  // two failures and the summary
    CHECK_THAT(r.err, Contains("handler_failed") || Contains("failure number"));
    CHECK_THAT(r.err, Contains("2 sent, 0 answered, 2 failed"));
  }
}

// services/comet_host.cpp listen_origin: a bind failure names where the
// address came from, flag or config file.
TEST_CASE("comet-host's bind failure says whether --port or the config set the address",
          "[promises][cli]") {
  asio::io_context io;
  tcp::acceptor holder(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));  // listening
  const std::string port = std::to_string(holder.local_endpoint().port());
  const std::string cannot = "cannot listen on 127.0.0.1:" + port;

  const auto by_flag = run_cli("comet-host", {"--port", port});
  CHECK(by_flag.status == 1);
  CHECK_THAT(by_flag.err, Contains(cannot) && Contains("another program holds the port") &&
                              Contains("(the port set by --port, the address by "
                                       "Socket_connection.Host.IP in <embedded default config>)"));

  const auto both = run_cli("comet-host", {"--host", "127.0.0.1", "--port", port});
  CHECK(both.status == 1);
  CHECK_THAT(both.err, Contains(cannot) && Contains("(set by --host and --port)"));

  const temp_file file("[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = " + port + "\n");
  const auto by_file = run_cli("comet-host", {"--config", file.path().string()});
  CHECK(by_file.status == 1);
  CHECK_THAT(by_file.err, Contains(cannot) && Contains("(set by Socket_connection.Host in ") &&
                              Contains(file.path().string()) &&
                              Contains("; --host and --port override it)"));
}
