// An installed comet-net, used as an application would: a COMET-shaped YAML
// config (addresses, not names: a bare machine may have no /etc/hosts to
// name localhost), a typed handler, a typed send, async_send with
// use_future and with a callback, and a translation unit (legacy.cpp) that
// still uses Asio's deprecated names. The project sets no C++ standard: the
// package carries C++20. Exit status 0 when every answer comes back right
// and the headers' version matches the package's.
#include <comet/comet.hpp>  // alone: it gives BOOST_DESCRIBE_STRUCT too

#include <cstdio>
#include <future>
#include <string>
#include <string_view>

namespace lab {
struct point {
  double x = 0;
  double y = 0;
};
BOOST_DESCRIBE_STRUCT(point, (), (x, y))
}  // namespace lab

namespace {
int fail(const std::string& what) {
  std::fprintf(stderr, "consumer: %s\n", what.c_str());
  return 1;
}
}  // namespace

int legacy_ticks();  // legacy.cpp

int main() {
  if (legacy_ticks() != 3) return fail("the io_service translation unit did not run its handlers");
  if (std::string_view(comet::version) != COMET_PACKAGE_VERSION)
    return fail(std::string("headers say ") + comet::version + ", package says " +
                COMET_PACKAGE_VERSION);

  comet::io_pool pool(1);
  comet::host host(pool.get_executor(),
                   comet::parse_config("Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 0}\n",
                                       "consumer.yaml", comet::config_format::yaml));
  host.on("add", [](const lab::point& p) { return p.x + p.y; });
  host.on("echo", [](const std::string&, const boost::json::value& value) { return value; });
  const comet::endpoint at = host.start();

  const comet::config cfg = comet::parse_config(
      "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 0}\n  Client:\n    Lab: {IP: 127.0.0.1, Port: " +
          std::to_string(at.port) + "}\n",
      "settings.yml", comet::config_format::yaml);
  const comet::client_set clients(pool.get_executor(), cfg);
  const comet::client& lab_client = clients["Lab"];

  try {
    const double sum = lab_client.send_sync<double>("add", lab::point{1, 2});
    if (sum != 3) return fail("add answered " + std::to_string(sum));

    std::future<double> later = lab_client.async_send<double>("add", lab::point{2, 3}, boost::asio::use_future);
    if (later.get() != 5) return fail("async_send with use_future answered wrong");

    std::promise<boost::json::value> called;
    lab_client.async_send("echo", boost::json::value("callback"),
                          [&](std::exception_ptr e, boost::json::value v) {
                            if (e) called.set_exception(e);
                            else called.set_value(std::move(v));
                          });
    if (called.get_future().get() != "callback") return fail("async_send with a callback answered wrong");

    try {
      lab_client.send_sync("add", boost::json::value{{"x", "one"}, {"y", 2}});
      return fail("a mismatched value was accepted");
    } catch (const comet::error& e) {
      if (e.code() != comet::errc::bad_request) return fail(std::string("mismatch: ") + e.what());
    }
  } catch (const comet::error& e) {
    return fail(e.what());
  }
  host.stop();
  pool.release();
  pool.join();
  std::printf("comet %s typed round trips ok via %s\n", comet::version, at.to_string().c_str());
  return 0;
}
