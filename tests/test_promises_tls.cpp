// TLS promises of docs/security.md that no other test kept (issue 14, item
// 3): TLS 1.2 at least, and mutual TLS closing before a byte of a request
// is read. (A certificate that does not name the dialled address:
// test_tls.cpp.)
#include <comet/client.hpp>
#include <comet/host.hpp>

#include "support.hpp"
#include "tls_pki.hpp"
#include "tls_settings.hpp"
#include "transport.hpp"  // make_host_tls_context

#include <boost/asio/ssl.hpp>
#include <openssl/ssl.h>

#include <atomic>

using namespace comet;
using namespace comet::test;
namespace ssl = boost::asio::ssl;

namespace {

host_options tls_host_options(tls_settings tls) {
  host_options o = host_fixture::loopback();
  o.tls = std::move(tls);
  return o;
}

// A client context that offers TLS 1.0 and 1.1 only, with every cipher
// OpenSSL still has (security level 0).
ssl::context old_tls_client() {
  ssl::context ctx(ssl::context::tls_client);
  SSL_CTX_set_security_level(ctx.native_handle(), 0);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_VERSION);
  SSL_CTX_set_max_proto_version(ctx.native_handle(), TLS1_1_VERSION);
  SSL_CTX_set_cipher_list(ctx.native_handle(), "ALL:@SECLEVEL=0");
  ctx.set_verify_mode(ssl::verify_none);
  return ctx;
}

// Connects and handshakes with `client` to `to`, on an io_context of its
// own, within 10 s. Returns the outcome, and the protocol it agreed on.
struct handshake_outcome {
  boost::system::error_code ec = asio::error::timed_out;
  int version = 0;
};
handshake_outcome handshake(ssl::context& client, asio::io_context& io,
                            const tcp::endpoint& to) {
  handshake_outcome out;
  ssl::stream<tcp::socket> stream(io, client);
  stream.next_layer().async_connect(to, [&](boost::system::error_code ec) {
    if (ec) {
      out.ec = ec;
      return;
    }
    stream.async_handshake(ssl::stream_base::client, [&](boost::system::error_code ec2) {
      out.ec = ec2;
      if (!ec2) out.version = SSL_version(stream.native_handle());
    });
  });
  io.restart();
  io.run_for(10s);
  return out;
}

// Whether OpenSSL here can still speak TLS 1.1 at all: `client` against a
// server of this test's own that allows it.
bool tls_1_1_works_here(const test_pki& pki, ssl::context& client) {
  ssl::context server_ctx(ssl::context::tls_server);
  SSL_CTX_set_security_level(server_ctx.native_handle(), 0);
  SSL_CTX_set_min_proto_version(server_ctx.native_handle(), TLS1_VERSION);
  SSL_CTX_set_cipher_list(server_ctx.native_handle(), "ALL:@SECLEVEL=0");
  server_ctx.use_certificate_chain_file(pki.file("host.pem"));
  server_ctx.use_private_key_file(pki.file("host.key"), ssl::context::pem);
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  ssl::stream<tcp::socket> server(io, server_ctx);
  acceptor.async_accept(server.next_layer(), [&](boost::system::error_code ec) {
    if (!ec) server.async_handshake(ssl::stream_base::server, [](boost::system::error_code) {});
  });
  const auto outcome = handshake(client, io, acceptor.local_endpoint());
  return !outcome.ec && outcome.version == TLS1_1_VERSION;
}

}  // namespace

// security.md: "TLS 1.2 and later"; configuration.md: tls "(1.2 or later)".
TEST_CASE("a TLS host refuses a client that offers only TLS 1.1 or older", "[promises][tls]") {
  test_pki pki;
  // The host's context forbids everything below 1.2...
  const auto context = make_host_tls_context(host_tls(pki));
  const auto options = SSL_CTX_get_options(context->native_handle());
  CHECK((options & SSL_OP_NO_TLSv1) != 0);
  CHECK((options & SSL_OP_NO_TLSv1_1) != 0);
  CHECK((options & SSL_OP_NO_TLSv1_2) == 0);
  CHECK((options & SSL_OP_NO_TLSv1_3) == 0);

  // ...and over the wire, a client that offers only 1.0 and 1.1 fails.
  host_fixture f(1, tls_host_options(host_tls(pki)));
  add_echo(f.server);
  const auto at = f.start();
  auto old = old_tls_client();
  if (!tls_1_1_works_here(pki, old)) {
    WARN("OpenSSL here cannot complete a TLS 1.1 handshake even with a server that allows it; "
         "only the host's context options are checked");
  } else {
    asio::io_context io;
    const auto outcome = handshake(old, io, tcp::endpoint(asio::ip::make_address(at.ip), at.port));
    CHECK(outcome.ec);
    CHECK(outcome.ec != asio::error::timed_out);  // refused, not left hanging
    CHECK(outcome.version == 0);
    CHECK(wait_until([&] { return f.server.stats().tls_handshakes_failed == 1; }));
  }
  // A client of this library (TLS 1.2 or 1.3) is served.
  client_options o;
  o.tls = client_tls(pki);
  CHECK(f.make_client(o).send_sync("echo", "modern") == "modern");
  CHECK(f.server.stats().requests_served == 1);
}

// security.md: tls_require_client_certificate: "the handshake fails and the
// connection is closed before a byte of a request is read".
TEST_CASE("mutual TLS closes on a client without a certificate before reading its request",
          "[promises][tls]") {
  test_pki pki;
  tls_settings server_side = host_tls(pki);
  server_side.ca = pki.file("ca.pem");
  server_side.require_client_certificate = true;
  host_fixture f(2, tls_host_options(server_side));
  std::atomic<int> handled{0};
  f.server.on("echo", [&](const std::string&, const json::value& v) {
    ++handled;
    return v;
  });
  f.start();
  client_options anonymous;
  anonymous.tls = client_tls(pki);
  for (const bool keep_alive : {false, true}) {
    INFO("keep_alive " << keep_alive);
    anonymous.keep_alive = keep_alive;
    // With TLS 1.3 the client's handshake is done before the host checks its
    // certificate, so the client writes its request: the host never reads it.
    const auto e = error_thrown_by([&] { f.make_client(anonymous).send_sync("echo", 1); });
    CHECK(e.code() == errc::tls_error);
  }
  REQUIRE(wait_until([&] { return f.server.stats().tls_handshakes_failed == 2; }));
  CHECK(wait_until([&] { return f.server.stats().connections_open == 0; }));
  auto stats = f.server.stats();
  CHECK(handled == 0);
  CHECK(stats.requests_served == 0);
  CHECK(stats.bytes_received == 0);  // not a byte of either request was read

  // A client with a certificate is read and served: the counters do count.
  client_options member = anonymous;
  member.tls.certificate = pki.file("client.pem");
  member.tls.private_key = pki.file("client.key");
  CHECK(f.make_client(member).send_sync("echo", "member") == "member");
  stats = f.server.stats();
  CHECK(handled == 1);
  CHECK(stats.bytes_received > 0);
}
