// Messages a user can act on (issue 14): what a client is told when its
// host closes without answering.
#include <comet/comet.hpp>

#include "support.hpp"

using namespace comet;
using namespace comet::test;

TEST_CASE("a send refused at the host's max_connections is told of the limit",
          "[integration][messages]") {
  full_host f;
  const auto at = f.at;

  for (const bool keep_alive : {false, true}) {
    CAPTURE(keep_alive);
    client c(f.pool.get_executor(), at, {.name = "Lab", .keep_alive = keep_alive, .connect_retries = 0});
    const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
    // Answered, not closed bare: the host did not run it, and says so.
    CHECK(e.code() == errc::host_full);
    CHECK(e.safe_to_retry());
    CHECK_THAT(e.what(), Catch::Contains("max_connections") &&
                             Catch::Contains("did not read this request") &&
                             Catch::Contains("safe to send it again"));
  }
  CHECK(f.server.stats().connections_refused >= 2);
}

TEST_CASE("a refused connection's tagged request is answered host_full with its request-id, then closed",
          "[integration][messages]") {
  full_host f;
  raw_peer p(f.at);
  frame_header h;
  h.keep_alive = true;
  h.request_id = 41;
  const json::value v = 1;
  p.write(encode_frame(h, encode_request("echo", v)));
  const auto answer = split(p.read_frame());
  CHECK(answer.header.at("request-id") == 41);
  CHECK_FALSE(answer.header.contains("keep-alive"));
  const auto response = decode_response(answer.content);
  REQUIRE(response.error);
  CHECK(*response.error == errc::host_full);
  CHECK(p.closed_by_peer());
  // A COMET peer reads it as an error result.
  CHECK_THAT(std::string(response.result.as_string()), Catch::StartsWith("Error: the host has 1 connections open"));
}
