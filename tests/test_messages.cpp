// Messages a user can act on (issue 14): what a client is told when its
// host closes without answering.
#include <comet/comet.hpp>

#include "support.hpp"

using namespace comet;
using namespace comet::test;

TEST_CASE("a send refused at the host's max_connections is told of the limit",
          "[integration][messages]") {
  host_options o = host_fixture::loopback();
  o.max_connections = 1;
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();
  raw_peer holder(at);  // the one connection the host keeps
  REQUIRE(wait_until([&] { return f.server.stats().connections_open == 1; }));

  client c(f.pool.get_executor(), at, {.name = "Lab", .connect_retries = 0});
  const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
  CHECK(e.code() == errc::connection_closed);
  // Closed, or reset when the request arrived before the host closed.
  CHECK_THAT(e.what(), Catch::Contains("Lab at " + at.to_string() + " closed the connection") ||
                           Catch::Contains("Lab at " + at.to_string() + " reset the connection"));
  CHECK_THAT(e.what(), Catch::Contains("max_connections"));
  // A plain client may be meeting a TLS host: that is named as a cause too.
  CHECK_THAT(e.what(), Catch::Contains("expecting TLS, which this client does not use"));
  CHECK(f.server.stats().connections_refused >= 1);
}
