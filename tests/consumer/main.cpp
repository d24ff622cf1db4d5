// An installed comet-net's round trip: a host on 127.0.0.1 (a free port) and a
// client that sends it one message. Exit status 0 when the answer comes back
// and the headers' version matches the package's.
#include <comet/comet.hpp>

#include <cstdio>
#include <string_view>

int main() {
  if (std::string_view(comet::version) != COMET_PACKAGE_VERSION) {
    std::fprintf(stderr, "headers say %s, package says %s\n", comet::version,
                 COMET_PACKAGE_VERSION);
    return 1;
  }
  comet::config cfg = comet::parse_config(
      "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 0}\n", "consumer.yaml",
      comet::config_format::yaml);
  comet::io_pool pool(1);
  comet::host host(pool.get_executor(), cfg);
  host.on("echo", [](const std::string&, const boost::json::value& value) { return value; });
  const comet::endpoint at = host.start();

  comet::client client(pool.get_executor(), at, {.request_timeout = std::chrono::seconds(10)});
  const boost::json::value answer = client.send_sync("echo", {{"from", "consumer"}});
  host.stop();
  pool.release();
  pool.join();
  if (answer != boost::json::value{{"from", "consumer"}}) {
    std::fprintf(stderr, "unexpected answer: %s\n", comet::to_json_text(answer).c_str());
    return 1;
  }
  std::printf("comet %s round trip ok via %s\n", comet::version, at.to_string().c_str());
  return 0;
}
