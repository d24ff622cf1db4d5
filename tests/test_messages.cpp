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
