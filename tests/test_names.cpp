// Host names wherever an address is taken (issue 11): clients resolve a
// name for each new connection, a host resolves the name it listens on,
// configs and COMET's settings.yml may name hosts. "localhost" resolves to
// 127.0.0.1 on every machine these tests run on.
#include <comet/comet.hpp>

#include "support.hpp"
#include "tls_pki.hpp"
#include "tls_settings.hpp"

#include <boost/asio/ssl.hpp>

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

TEST_CASE("a client reaches a host by name, one-shot and keep-alive", "[integration][names]") {
  host_fixture f;
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

TEST_CASE("a host listens on a name", "[integration][names]") {
  io_pool pool(1);
  host_options o;
  o.listen = {"localhost", 0};
  host h(pool.get_executor(), o);
  add_echo(h);
  const auto at = h.start();
  CHECK(at.ip == "127.0.0.1");
  client c(pool.get_executor(), at);
  CHECK(c.send_sync("echo", "named") == "named");
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

TEST_CASE("a COMET settings.yml whose hosts are names", "[integration][names]") {
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
  CHECK(named.start().ip == "127.0.0.1");
}

TEST_CASE("a TLS client that dials a name checks the certificate against it",
          "[integration][names][tls]") {
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
          "[integration][names][tls]") {
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
