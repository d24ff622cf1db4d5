// A blocking client, COMET's send_TCP_message(..., no_thread=True): send one
// message, wait for the answer, print it.
//
//   sync_client IP:PORT [ACTION [JSON]]      (defaults: echo, "hello")
#include <comet/comet.hpp>

#include <boost/json/parse.hpp>

#include <iostream>
#include <string>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: sync_client IP:PORT [ACTION [JSON]]\n";
    return 2;
  }
  const std::string address = argv[1];
  const auto colon = address.rfind(':');
  const comet::endpoint peer{address.substr(0, colon),
                             static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
  const std::string action = argc > 2 ? argv[2] : "echo";
  const std::string value = argc > 3 ? argv[3] : "\"hello\"";

  // The client needs an executor to run on; send_sync blocks this thread,
  // which is not one of the pool's, until the answer is back.
  comet::io_pool pool(1);
  comet::client host(pool.get_executor(), peer, {.name = "example host", .request_timeout = 10s});
  try {
    const boost::json::value answer = host.send_sync(action, boost::json::parse(value));
    std::cout << comet::to_json_text(answer) << '\n';
    return 0;
  } catch (const comet::error& e) {
    // e.code() says what kind of failure: offline, timeout, an error answer...
    std::cerr << e.what() << '\n';
    return e.code() == comet::errc::peer_offline ? 3 : 1;
  } catch (const std::exception& e) {
    std::cerr << "bad JSON value: " << e.what() << '\n';
    return 2;
  }
}
