// The smallest useful host: answers `echo` on 127.0.0.1.
//
//   minimal_host [PORT] [--once]
//
// PORT 0 (the default) lets the system pick a free port; the address is
// printed on stdout. With --once the host stops after its first answer (the
// examples' smoke test uses that); otherwise Ctrl-C stops it.
#include <comet/comet.hpp>

#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string_view>

namespace json = boost::json;

int main(int argc, char** argv) {
  const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 0);
  const bool once = argc > 2 && std::string_view(argv[2]) == "--once";

  comet::io_pool pool(1);
  comet::host host(pool.get_executor(), comet::host_options{.listen = {"127.0.0.1", port}});

  boost::asio::signal_set signals(pool.context(), SIGINT, SIGTERM);
  const auto stop = [&] {
    host.stop();  // graceful: the answer in flight is still written
    signals.cancel();
    pool.release();  // join() returns once nothing is left to run
  };
  host.on("echo", [&](const std::string&, const json::value& value) {
    if (once) stop();
    return value;
  });

  signals.async_wait([&](boost::system::error_code ec, int) {
    if (!ec) stop();
  });

  std::cout << "listening on " << host.start().to_string() << std::endl;
  pool.join();
}
