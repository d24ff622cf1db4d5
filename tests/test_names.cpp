// Host names wherever an address is taken (issue 11): clients resolve a
// name for each new connection, a host resolves the name it listens on,
// configs and COMET's settings.yml may name hosts. Names on a standard
// Debian machine (issue 15): a host listens on every address of its name,
// a client races a name's addresses (Happy Eyeballs, RFC 8305).
//
// The cases that resolve a name see a private /etc/hosts (private_hosts.hpp):
// [.names] ones need only "localhost" (tests/hosts/debian gives it ::1 and
// 127.0.0.1, tests/hosts/ipv4-only 127.0.0.1 alone); [.names-multi] ones the
// lab-* names of tests/hosts/multi.
#include <comet/comet.hpp>

#include "private_hosts.hpp"
#include "support.hpp"
#include "tls_pki.hpp"
#include "tls_settings.hpp"

#include <boost/asio/ssl.hpp>

#include <algorithm>
#include <thread>

using namespace comet;
using namespace comet::test;

TEST_CASE("host names are recognised, and addresses are not names", "[unit][names]") {
  CHECK(is_host_name("localhost"));
  CHECK(is_host_name("lab-pc.example.org"));
  CHECK(is_host_name("lab-pc.example.org."));
  CHECK_FALSE(is_host_name(""));
  CHECK_FALSE(is_host_name("lab pc"));
  CHECK_FALSE(is_host_name("-lab"));
  CHECK_FALSE(is_host_name("lab-.org"));
  CHECK_FALSE(is_host_name("a..b"));
  CHECK_FALSE(is_host_name("256.1.1.1"));
  CHECK_FALSE(is_host_name(std::string(64, 'a')));
  CHECK(endpoint{"127.0.0.1", 1}.is_address());
  CHECK(endpoint{"::1", 1}.is_address());
  CHECK_FALSE(endpoint{"localhost", 1}.is_address());
}

TEST_CASE("a client reaches a host by name, one-shot and keep-alive", "[integration][.names]") {
  // A host on each address of localhost alone: a client dialling the name
  // reaches it whichever address the resolver gives first (with Debian's
  // /etc/hosts ::1 comes first, and refuses when the host is on 127.0.0.1).
  for (const auto& address : private_addresses_of("localhost")) {
    CAPTURE(address);
    host_options o;
    o.listen = {address, 0};
    host_fixture f(2, o);
    add_echo(f.server);
    const auto at = f.start();
    for (bool keep_alive : {false, true}) {
      CAPTURE(keep_alive);
      client c(f.pool.get_executor(), {"localhost", at.port}, {.keep_alive = keep_alive});
      CHECK(c.peer().ip == "localhost");
      CHECK(c.send_sync("echo", 1) == 1);
      CHECK(c.send_sync("echo", 2) == 2);
    }
  }
}

namespace {
std::vector<std::string> ips_of(const std::vector<endpoint>& endpoints) {
  std::vector<std::string> ips;
  for (const auto& e : endpoints) ips.push_back(e.ip);
  std::sort(ips.begin(), ips.end());
  return ips;
}
}  // namespace

TEST_CASE("a host listens on every address of its name", "[integration][.names]") {
  const auto expected = private_addresses_of("localhost");
  log_capture log;
  io_pool pool(1);
  host_options o;
  o.listen = {"localhost", 0};
  host h(pool.get_executor(), o);
  add_echo(h);
  const auto at = h.start();
  CHECK(at.ip == "127.0.0.1");  // the IPv4 one, for COMET's IPv4 peers
  CHECK(h.local_endpoint() == at);
  CHECK(ips_of(h.local_endpoints()) == expected);
  CHECK(ips_of(h.stats().listening) == expected);
  std::string listed = at.to_string();  // logged first, the others after it
  for (const auto& e : h.local_endpoints()) {
    CHECK(e.port == at.port);  // port 0: the first address picked it for all
    if (e != at) listed += " and " + e.to_string();
    client c(pool.get_executor(), e);
    CHECK(c.send_sync("echo", e.ip).as_string() == e.ip);
  }
  CHECK(log.contains("host listening on " + listed + " (localhost)"));
  h.stop();
}

TEST_CASE("a name that does not resolve fails with errc::unresolved", "[integration][names]") {
  io_pool pool(1);
  for (bool keep_alive : {false, true}) {
    CAPTURE(keep_alive);
    client c(pool.get_executor(), {"no-such-host.invalid", 65432},
             {.name = "Telegram", .connect_timeout = 3s, .keep_alive = keep_alive});
    const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
    CHECK(e.code() == errc::unresolved);
    CHECK_THAT(e.what(), Catch::Contains("cannot resolve the host name 'no-such-host.invalid' of "
                                         "Telegram at no-such-host.invalid:65432"));
  }
}

TEST_CASE("a COMET settings.yml whose hosts are names", "[integration][.names]") {
  host_fixture f;
  add_echo(f.server);
  const auto at = f.start();
  const std::string settings = "Socket_connection:\n"
                               "  Host:\n"
                               "    IP: localhost\n"
                               "    Port: 0\n"
                               "  Client:\n"
                               "    Lab:\n"
                               "      IP: localhost\n"
                               "      Port: " +
                               std::to_string(at.port) + "\n";
  const auto cfg = parse_config(settings, "settings.yml", config_format::yaml);
  CHECK(cfg.host.ip == "localhost");
  client_set clients(f.pool.get_executor(), cfg);
  CHECK(clients["Lab"].send_sync("echo", 5) == 5);
  host named(f.pool.get_executor(), cfg);
  add_echo(named);
  const auto named_at = named.start();
  CHECK(named_at.ip == "127.0.0.1");
  // A COMET client's config says 127.0.0.1 (its sockets are IPv4), and a
  // peer that resolves the name may get ::1: both reach the host.
  for (const auto& address : private_addresses_of("localhost")) {
    CAPTURE(address);
    client comet_peer(f.pool.get_executor(), {address, named_at.port});
    CHECK(comet_peer.send_sync("echo", 6) == 6);
  }
}

TEST_CASE("a TLS client that dials a name checks the certificate against it",
          "[integration][.names][tls]") {
  private_hosts_file();
  test_pki pki;
  host_options o = host_fixture::loopback();
  o.tls = host_tls(pki);
  host_fixture f(2, o);
  add_echo(f.server);
  const auto at = f.start();
  const tls_settings trusted = client_tls(pki);
  for (bool keep_alive : {false, true}) {
    CAPTURE(keep_alive);
    client c(f.pool.get_executor(), {"localhost", at.port}, {.keep_alive = keep_alive, .tls = trusted});
    CHECK(c.send_sync("echo", "over TLS") == "over TLS");
  }
}

namespace {
// Records the server name a TLS client sent (SNI).
int record_server_name(SSL* ssl, int*, void* seen) {
  if (const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name))
    *static_cast<std::string*>(seen) = name;
  return SSL_TLSEXT_ERR_OK;
}
}  // namespace

TEST_CASE("a TLS client sends the name it dials as SNI, and no SNI for an address",
          "[integration][.names][tls]") {
  private_hosts_file();
  test_pki pki;
  const tls_settings trusted = client_tls(pki);
  for (const std::string dialled : {"localhost", "127.0.0.1"}) {
    CAPTURE(dialled);
    asio::io_context server_io;
    asio::ssl::context server_tls(asio::ssl::context::tls_server);
    server_tls.use_certificate_chain_file(pki.file("host.pem"));
    server_tls.use_private_key_file(pki.file("host.key"), asio::ssl::context::pem);
    std::string seen = "(none)";
    SSL_CTX_set_tlsext_servername_callback(server_tls.native_handle(), record_server_name);
    SSL_CTX_set_tlsext_servername_arg(server_tls.native_handle(), &seen);
    tcp::acceptor acceptor(server_io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const std::uint16_t port = acceptor.local_endpoint().port();
    boost::system::error_code handshake_ec;
    // A TLS peer that makes the handshake and then closes without answering.
    std::thread server([&] {
      asio::ssl::stream<tcp::socket> stream(acceptor.accept(), server_tls);
      stream.handshake(asio::ssl::stream_base::server, handshake_ec);
    });
    io_pool pool(1);
    client c(pool.get_executor(), {dialled, port}, {.request_timeout = 5s, .tls = trusted});
    const auto e = error_thrown_by([&] { c.send_sync("echo", 1); });
    server.join();
    CHECK_FALSE(handshake_ec);
    CHECK(e.code() == errc::connection_closed);
    CHECK(seen == (dialled == "localhost" ? "localhost" : "(none)"));
  }
}

TEST_CASE("a host listens on each address of a name, sharing its limits and its stop",
          "[integration][.names-multi]") {
  const auto expected = private_addresses_of("lab-multi");  // two IPv4, ::1
  REQUIRE(expected.size() == 3);
  io_pool pool(2);
  host_options o;
  o.listen = {"lab-multi", 0};
  o.max_connections = 1;
  host h(pool.get_executor(), o);
  add_echo(h);
  const auto at = h.start();
  const auto order = resolved("lab-multi", at.port);
  const auto first_v4 = std::find_if(order.begin(), order.end(),
                                     [](const tcp::endpoint& e) { return e.address().is_v4(); });
  REQUIRE(first_v4 != order.end());
  CHECK(at.ip == first_v4->address().to_string());
  CHECK(ips_of(h.local_endpoints()) == expected);
  // At max_connections 1, each send waits until the host has seen the
  // previous one-shot connection close (its close reaches the host after
  // the answer reaches the client).
  for (const auto& e : h.local_endpoints()) {
    CAPTURE(e.to_string());
    CHECK(e.port == at.port);
    REQUIRE(wait_until([&] { return h.stats().connections_open == 0; }));
    client c(pool.get_executor(), e);
    CHECK(c.send_sync("echo", e.ip).as_string() == e.ip);
  }
  REQUIRE(wait_until([&] { return h.stats().connections_open == 0; }));
  client by_name(pool.get_executor(), {"lab-multi", at.port});
  CHECK(by_name.send_sync("echo", "by name") == "by name");

  // One limit for all: a connection held open on one address leaves no
  // room on another.
  REQUIRE(wait_until([&] { return h.stats().connections_open == 0; }));
  {
    raw_peer held(h.local_endpoints().front());
    REQUIRE(wait_until([&] { return h.stats().connections_open == 1; }));
    const auto refused = h.stats().connections_refused;
    raw_peer other(h.local_endpoints().back());
    other.write(request_frame("echo", "other"));
    CHECK(decode_response(split(other.read_frame()).content).error == errc::host_full);
    CHECK(other.closed_by_peer());
    CHECK(h.stats().connections_refused == refused + 1);
  }

  // One stop for all: afterwards no address accepts.
  run(pool.get_executor(), [&]() -> asio::awaitable<void> { co_await h.async_stop(); });
  for (const auto& e : h.local_endpoints()) {
    CAPTURE(e.to_string());
    asio::io_context io;
    tcp::socket s(io);
    boost::system::error_code ec;
    s.connect(tcp::endpoint(asio::ip::make_address(e.ip), e.port), ec);
    CHECK(ec == asio::error::connection_refused);
  }
}

TEST_CASE("a host whose name has an address in use elsewhere fails to start, listening nowhere",
          "[integration][.names-multi]") {
  private_hosts_file();
  asio::io_context io;
  tcp::acceptor taken(io, tcp::endpoint(asio::ip::make_address("127.0.0.22"), 0));
  const auto port = taken.local_endpoint().port();
  io_pool pool(1);
  host_options o;
  o.listen = {"lab-multi", port};
  host h(pool.get_executor(), o);
  const auto e = error_thrown_by([&] { h.start(); });
  CHECK(e.code() == errc::bind_failed);
  CHECK_THAT(e.what(), Catch::StartsWith("cannot listen on lab-multi:" + std::to_string(port) +
                                         ": 127.0.0.22:" + std::to_string(port) + ": ") &&
                           Catch::Contains("another program holds the port"));
  CHECK(h.local_endpoints().empty());
  // The addresses bound before the failure were released.
  for (const char* ip : {"127.0.0.21", "::1"}) {
    CAPTURE(ip);
    tcp::acceptor again(io);
    const tcp::endpoint ep(asio::ip::make_address(ip), port);
    again.open(ep.protocol());
    boost::system::error_code ec;
    again.bind(ep, ec);
    CHECK_FALSE(ec);
  }
}

TEST_CASE("a host skips the addresses of its name that this machine cannot have",
          "[integration][.names-multi]") {
  private_hosts_file();
  log_capture log;
  io_pool pool(1);
  host_options o;
  o.listen = {"lab-partly-here", 0};  // 198.51.100.1 (not here) and 127.0.0.27
  host h(pool.get_executor(), o);
  add_echo(h);
  const auto at = h.start();
  CHECK(at.ip == "127.0.0.27");
  CHECK(ips_of(h.local_endpoints()) == std::vector<std::string>{"127.0.0.27"});
  CHECK(log.contains("host lab-partly-here:0: not listening on 198.51.100.1:"));
  client c(pool.get_executor(), at);
  CHECK(c.send_sync("echo", 27) == 27);

  o.listen = {"lab-nowhere", 0};  // 203.0.113.1 alone
  host nowhere(pool.get_executor(), o);
  const auto e = error_thrown_by([&] { nowhere.start(); });
  CHECK(e.code() == errc::bind_failed);
  CHECK_THAT(e.what(), Catch::Contains("cannot listen on lab-nowhere:0: this machine cannot use "
                                       "any address of 'lab-nowhere': 203.0.113.1:0 ("));
}
