// Wire compatibility with COMET's Python peers, checked byte for byte
// against the captures in vectors/ (recorded between COMET's own client and
// server).
#include <comet/comet.hpp>

#include "support.hpp"

#include <thread>

using namespace comet;
using namespace comet::test;

namespace {

// The handlers the Python host ran when the vectors were captured.
void add_capture_handlers(host& h) {
  auto echo = [](const std::string&, const json::value& v) { return v; };
  h.on("echo", echo);
  h.on("TelegramBot", echo);
  // Python's str() of the dict, as the capture's handler produced it.
  h.on("unicode", [](const std::string&, const json::value& v) {
    return "Grüße ✓ {'name': '" + std::string(v.at("name").as_string()) + "', 'unit': '" +
           std::string(v.at("unit").as_string()) + "'}";
  });
  h.on("number", [](const std::string&, const json::value&) { return 42; });
  h.on("none", [](const std::string&, const json::value&) { return nullptr; });
}

}  // namespace

TEST_CASE("a COMET client's requests get COMET's exact response bytes from our host",
          "[integration][interop]") {
  host_fixture f;
  add_capture_handlers(f.server);
  const auto at = f.start();
  for (const auto& c : vector_index().as_array()) {
    const std::string name(c.at("name").as_string());
    INFO("vector " << name);
    raw_peer comet_client(at);
    comet_client.write(vector_file(std::string(c.at("request_file").as_string())));
    const std::string reply = comet_client.read_to_eof();  // the host closes, as COMET's does
    if (name == "empty_value") {
      // COMET's falsy-value quirk is deliberately not copied: "" is a value.
      CHECK(decode_response(split(reply).content).result == "");
      continue;
    }
    CHECK(reply == vector_file(std::string(c.at("response_file").as_string())));
  }
}

TEST_CASE("our client talks to a COMET host that closes after one response",
          "[integration][interop]") {
  for (const auto& c : vector_index().as_array()) {
    INFO("vector " << c.at("name").as_string());
    const std::string expected_request = vector_file(std::string(c.at("request_file").as_string()));
    const std::string canned_response = vector_file(std::string(c.at("response_file").as_string()));

    // A stand-in for COMET's host: read one message, answer the captured
    // bytes, close.
    asio::io_context io;
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const endpoint at{"127.0.0.1", acceptor.local_endpoint().port()};
    std::string received;
    std::thread comet_host([&] {
      tcp::socket s(io);
      acceptor.accept(s);
      raw_peer peer(std::move(s));
      received = peer.read_frame();
      peer.write(canned_response);
    });

    io_pool pool(1);
    client ours(pool.get_executor(), at);
    const auto result = ours.send_sync(std::string(c.at("action").as_string()), c.at("value"));
    comet_host.join();
    CHECK(received == expected_request);
    CHECK(result == c.at("client_returned").at("result"));
  }
}
