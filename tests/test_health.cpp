// The built-in `health` action (issue 19, item 5): serving, what the
// program set, draining once a stop began (answered during the drain, not
// refused), a program's own route kept; comet-send's readiness exit status.
#include <comet/comet.hpp>

#include "processes.hpp"
#include "support.hpp"

using namespace comet;
using namespace comet::test;

namespace {

json::value status_of(const std::string& content) {
  const response_message r = decode_response(content);
  REQUIRE_FALSE(r.error);
  return r.result.at("status");
}

}  // namespace

TEST_CASE("a host answers health: serving, or what the program set", "[integration][health]") {
  host_fixture f;
  add_echo(f.server);
  f.start();
  client c = f.make_client();
  const json::value none(nullptr);
  CHECK(c.send_sync("health", none) == json::object{{"status", "serving"}});
  CHECK(f.server.health() == health_status::serving);
  f.server.set_health(health_status::not_serving);
  CHECK(c.send_sync("health", none) == json::object{{"status", "not_serving"}});
  CHECK(f.server.health() == health_status::not_serving);
  f.server.set_health(health_status::serving);
  CHECK(c.send_sync("health", none) == json::object{{"status", "serving"}});
}

TEST_CASE("a stopping host answers health draining, during the drain", "[integration][health]") {
  host_options o = host_fixture::loopback();
  o.shutdown_timeout = 20s;
  host_fixture f(2, o);
  held_requests held;
  held.add_to(f.server);
  f.start();
  raw_peer p(f.at);
  // A request in flight keeps the connection, and the stop, going.
  p.write(tagged(1, "hold", 1, feature::all));
  REQUIRE(wait_until([&] { return held.runs == 1; }));
  std::future<void> stopped = f.server.async_stop(asio::use_future);
  const auto notice = split(p.read_frame());  // going-away: the host reads on until it is done
  CHECK(notice.header.at("control") == "going-away");
  CHECK(f.server.health() == health_status::draining);  // the stop has begun: the notice says so
  p.write(tagged(2, "health", nullptr));
  const auto answer = split(p.read_frame());
  CHECK(answer.header.at("request-id") == 2);
  CHECK(status_of(answer.content) == "draining");
  held.release = true;
  CHECK(stopped.wait_for(10s) == std::future_status::ready);
}

TEST_CASE("a program that routes its own health keeps it", "[integration][health]") {
  host_fixture f;
  f.server.on("health", [](const std::string&, const json::value&) {
    return json::object{{"status", "serving"}, {"instrument", "warm"}};
  });
  f.start();
  f.server.set_health(health_status::not_serving);  // the program answers for itself
  client c = f.make_client();
  const json::value answer = c.send_sync("health", nullptr);
  CHECK(answer.at("instrument") == "warm");
}

TEST_CASE("comet-send --action health exits 0 only when the host is serving", "[cli][health]") {
  host_fixture f;
  f.start();
  const std::string at = f.at.to_string();
  const auto serving = run_cli("comet-send", {"--to", at, "--action", "health"});
  CHECK(serving.status == 0);
  CHECK(serving.out.find("serving") != std::string::npos);
  f.server.set_health(health_status::not_serving);
  const auto not_serving = run_cli("comet-send", {"--to", at, "--action", "health"});
  CHECK(not_serving.status == 9);
  CHECK(not_serving.err.find("is not serving") != std::string::npos);
  // A host that answers something else entirely is not serving either.
  f.server.set_health(health_status::serving);
  const auto echo = run_cli("comet-send", {"--to", at, "--action", "health", "--value", "1"});
  CHECK(echo.status == 0);
}
