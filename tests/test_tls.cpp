// TLS and mutual TLS over real sockets, with certificates made at test time.
#include <comet/client.hpp>
#include <comet/host.hpp>

#include "support.hpp"
#include "temp_file.hpp"
#include "tls_pki.hpp"
#include "tls_settings.hpp"

#include <thread>
#include <vector>

using namespace comet;
using namespace comet::test;

namespace {

host_options tls_host_options(tls_settings tls) {
  host_options o = host_fixture::loopback();
  o.tls = std::move(tls);
  return o;
}

// A host counts a failed handshake when its own side of it ends, which may
// come just after the client has seen the failure: wait for the count to
// reach `expected`, and return what it is then.
std::uint64_t failed_handshakes(const host& h, std::uint64_t expected) {
  wait_until([&] { return h.stats().tls_handshakes_failed >= expected; });
  return h.stats().tls_handshakes_failed;
}

comet::error send_failure(const client& c) {
  try {
    c.send_sync("echo", 1);
  } catch (const comet::error& e) {
    return e;
  }
  FAIL("the send was expected to fail");
  throw std::logic_error("unreachable");
}

// A send through `c` fails in TLS, for the reason `why` names.
void check_tls_refused(const client& c, const std::string& why) {
  const auto e = send_failure(c);
  CHECK(e.code() == errc::tls_error);
  CHECK_THAT(e.what(), Catch::Contains(why));
}

}  // namespace

TEST_CASE("a TLS host answers a TLS client, one-shot and keep-alive", "[tls]") {
  test_pki pki;
  host_fixture f(2, tls_host_options(host_tls(pki)));
  add_echo(f.server);
  f.start();

  client_options one_shot;
  one_shot.tls = client_tls(pki);
  CHECK(f.make_client(one_shot).send_sync("echo", "over TLS") == "over TLS");

  // Large enough to span many TLS records both ways.
  const json::value big(json::string(1 << 20, 'x'));
  CHECK(f.make_client(one_shot).send_sync("echo", big) == big);

  client_options pooled = one_shot;
  pooled.keep_alive = true;
  pooled.max_connections = 2;
  const client c = f.make_client(pooled);
  std::vector<std::thread> senders;
  std::atomic<int> right{0};
  for (int t = 0; t < 4; ++t)
    senders.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i)
        if (c.send_sync("echo", t * 1000 + i) == t * 1000 + i) ++right;
    });
  for (auto& s : senders) s.join();
  CHECK(right == 200);
  const auto stats = f.server.stats();
  CHECK(stats.tls_handshakes_failed == 0);
  CHECK(stats.connections_accepted <= 2 + 2);  // two one-shots, at most two pooled
}

TEST_CASE("TLS clients resume their session on the next connection", "[tls]") {
  test_pki pki;
  tls_settings server_side = host_tls(pki);
  server_side.ca = pki.file("ca.pem");
  server_side.require_client_certificate = true;  // resumption keeps the client's identity
  host_fixture f(1, tls_host_options(server_side));
  add_echo(f.server);
  f.start();
  client_options o;
  o.tls = client_tls(pki);
  o.tls.certificate = pki.file("client.pem");
  o.tls.private_key = pki.file("client.key");
  const client one_shot = f.make_client(o);
  for (int i = 0; i < 4; ++i) CHECK(one_shot.send_sync("echo", i) == i);
  CHECK(f.server.stats().tls_sessions_resumed == 3);  // every connection after the first

  o.keep_alive = true;
  o.max_connections = 1;
  const client pooled = f.make_client(o);
  CHECK(pooled.send_sync("echo", "pooled") == "pooled");
  CHECK(f.server.stats().tls_sessions_resumed == 3);  // a new client starts afresh

  // Another client, another cache: a client never offers a session it did
  // not get itself.
  client_options anonymous;
  anonymous.tls = client_tls(pki);
  CHECK_THROWS_AS(f.make_client(anonymous).send_sync("echo", 1), comet::error);
  CHECK(failed_handshakes(f.server, 1) == 1);
}

TEST_CASE("a TLS client refuses a host its CA did not sign, and the host serves others", "[tls]") {
  test_pki pki;
  host_fixture rogue(2, tls_host_options(host_tls(pki, "rogue-host")));
  add_echo(rogue.server);
  rogue.start();

  client_options o;
  o.tls = client_tls(pki);
  for (bool keep_alive : {false, true}) {
    o.keep_alive = keep_alive;
    check_tls_refused(rogue.make_client(o), "certificate verify failed");
  }
  // The host trusted by the rogue CA is fine for a client that trusts it.
  o.tls = client_tls(pki, "rogue-ca.pem");
  CHECK(rogue.make_client(o).send_sync("echo", 7) == 7);
  CHECK(failed_handshakes(rogue.server, 2) == 2);
}

TEST_CASE("a TLS client checks that the certificate names the address", "[tls]") {
  test_pki pki;  // host certificates name 127.0.0.1 only
  host_options options = tls_host_options(host_tls(pki));
  options.listen = {"127.0.0.2", 0};
  host_fixture f(1, options);
  add_echo(f.server);
  f.start();
  client_options o;
  o.tls = client_tls(pki);
  check_tls_refused(f.make_client(o), "certificate verify failed");
}

TEST_CASE("a TLS client refuses an expired certificate", "[tls]") {
  test_pki pki;
  host_fixture f(1, tls_host_options(host_tls(pki, "expired-host")));
  add_echo(f.server);
  f.start();
  client_options o;
  o.tls = client_tls(pki);
  check_tls_refused(f.make_client(o), "expired");
}

TEST_CASE("mutual TLS admits only clients with a certificate from the host's CA", "[tls]") {
  test_pki pki;
  tls_settings server_side = host_tls(pki);
  server_side.ca = pki.file("ca.pem");
  server_side.require_client_certificate = true;
  host_fixture f(2, tls_host_options(server_side));
  add_echo(f.server);
  f.start();

  client_options anonymous;
  anonymous.tls = client_tls(pki);
  client_options stranger = anonymous;
  stranger.tls.certificate = pki.file("rogue-client.pem");
  stranger.tls.private_key = pki.file("rogue-client.key");
  client_options member = anonymous;
  member.tls.certificate = pki.file("client.pem");
  member.tls.private_key = pki.file("client.key");

  for (bool keep_alive : {false, true}) {
    anonymous.keep_alive = stranger.keep_alive = member.keep_alive = keep_alive;
    check_tls_refused(f.make_client(anonymous), "certificate");
    const auto untrusted = send_failure(f.make_client(stranger));
    CHECK(untrusted.code() == errc::tls_error);
    CHECK(f.make_client(member).send_sync("echo", "member") == "member");
  }
  CHECK(failed_handshakes(f.server, 4) == 4);
}

TEST_CASE("plain and TLS peers that meet fail fast and clearly", "[tls]") {
  test_pki pki;
  host_fixture secure(1, tls_host_options(host_tls(pki)));
  add_echo(secure.server);
  secure.start();
  host_fixture plain(1);
  add_echo(plain.server);
  plain.start();

  // A plain (COMET) request to a TLS host: refused in the handshake.
  client_options plain_client;
  plain_client.request_timeout = 10s;
  const auto to_secure = send_failure(secure.make_client(plain_client));
  CHECK(to_secure.code() == errc::connection_closed);
  CHECK(failed_handshakes(secure.server, 1) == 1);

  // A TLS client to a plain host: the host sees a frame that is not one and
  // closes, so the client learns at once, not at its timeout.
  client_options tls_client;
  tls_client.tls = client_tls(pki);
  tls_client.connect_timeout = 10s;
  const auto started = std::chrono::steady_clock::now();
  check_tls_refused(plain.make_client(tls_client), "does it use TLS");
  CHECK(std::chrono::steady_clock::now() - started < 5s);

  // Both hosts keep serving their own kind.
  CHECK(plain.make_client().send_sync("echo", 1) == 1);
  client_options good;
  good.tls = client_tls(pki);
  CHECK(secure.make_client(good).send_sync("echo", 2) == 2);
}

TEST_CASE("a peer that stalls in the TLS handshake is dropped at the idle timeout", "[tls]") {
  test_pki pki;
  host_options options = tls_host_options(host_tls(pki));
  options.idle_timeout = 300ms;
  host_fixture f(1, options);
  f.start();
  raw_peer stalled(f.at, 5s);
  stalled.write(std::string("\x16\x03\x01", 3));  // the start of a ClientHello, then nothing
  CHECK(stalled.closed_by_peer());
  // Once the host has let go of the connection, its handshake can no longer be counted.
  REQUIRE(wait_until([&] { return f.server.stats().connections_open == 0; }));
  CHECK(f.server.stats().tls_handshakes_failed == 0);  // dropped by the timeout, not refused
}

TEST_CASE("TLS files that cannot be used are named when the host or client is made", "[tls]") {
  test_pki pki;
  asio::io_context io;
  auto host_error = [&](tls_settings tls) {
    try {
      host h(io.get_executor(), tls_host_options(std::move(tls)));
    } catch (const comet::error& e) {
      CHECK(e.code() == errc::tls_error);
      return std::string(e.what());
    }
    FAIL("the host was expected to refuse its TLS settings");
    return std::string();
  };
  tls_settings missing = host_tls(pki);
  missing.certificate = pki.file("nowhere.pem");
  CHECK_THAT(host_error(missing), Catch::Contains("nowhere.pem") && Catch::Contains("tls_certificate"));
  tls_settings mismatched = host_tls(pki);
  mismatched.private_key = pki.file("client.key");
  CHECK_THAT(host_error(mismatched), Catch::Contains("does not belong"));
  tls_settings no_key = host_tls(pki);
  no_key.private_key.clear();
  CHECK_THAT(host_error(no_key), Catch::Contains("tls_private_key"));
  tls_settings not_pem = host_tls(pki);
  not_pem.ca = pki.file("host.key");  // a key where a CA certificate belongs
  not_pem.require_client_certificate = true;
  CHECK_THAT(host_error(not_pem), Catch::Contains("tls_ca"));

  client_options o;
  o.tls = client_tls(pki, "absent-ca.pem");
  try {
    client c(io.get_executor(), {"127.0.0.1", 1}, o);
    FAIL("the client was expected to refuse its TLS settings");
  } catch (const comet::error& e) {
    CHECK(e.code() == errc::tls_error);
    CHECK_THAT(e.what(), Catch::Contains("absent-ca.pem"));
  }
}

TEST_CASE("TLS settings load from a config, files relative to it", "[tls][config]") {
  test_pki pki;
  const std::string text = R"(
[Socket_connection.Host]
IP = "127.0.0.1"
Port = 0

[comet]
tls = true
tls_certificate = "host.pem"
tls_private_key = "host.key"
tls_ca = ")" + pki.file("ca.pem") + R"("
tls_require_client_certificate = true
)";
  const auto file = pki.dir() / "app.toml";
  std::ofstream(file) << text;
  const config cfg = load_config(file);
  CHECK(cfg.framework.tls.enabled);
  CHECK(cfg.framework.tls.certificate == (pki.dir() / "host.pem").string());
  CHECK(cfg.framework.tls.private_key == (pki.dir() / "host.key").string());
  CHECK(cfg.framework.tls.ca == pki.file("ca.pem"));
  CHECK(cfg.framework.tls.require_client_certificate);

  // The host and client a config makes use TLS, and mutual TLS with it.
  io_pool pool(1);
  host h(pool.get_executor(), cfg);
  add_echo(h);
  const endpoint at = h.start();
  config client_cfg = cfg;
  client_cfg.framework.tls.certificate = pki.file("client.pem");
  client_cfg.framework.tls.private_key = pki.file("client.key");
  client c(pool.get_executor(), at, client_options::from_config(client_cfg));
  CHECK(c.send_sync("echo", "configured") == "configured");
  h.stop();
}

TEST_CASE("TLS config mistakes name the key", "[tls][config]") {
  auto message_of = [](const std::string& settings) {
    try {
      parse_config("[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 1\n[comet]\n" + settings,
                   "app.toml");
    } catch (const config_error& e) {
      return std::string(e.what());
    }
    FAIL("expected a config_error");
    return std::string();
  };
  CHECK_THAT(message_of("tls = true\ntls_certificate = \"a.pem\"\n"),
             Catch::Contains("comet.tls_certificate") && Catch::Contains("tls_private_key"));
  CHECK_THAT(message_of("tls = true\ntls_require_client_certificate = true\n"),
             Catch::Contains("needs tls_ca"));
  CHECK_THAT(message_of("tls = \"yes\"\n"), Catch::Contains("true or false"));
  CHECK_THAT(message_of("tls_certificate = 5\n"), Catch::Contains("use a string"));
}
