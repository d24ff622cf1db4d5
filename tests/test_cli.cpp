// The executables end to end: start comet-host on a free port, query it with
// comet-send, stop it with SIGTERM.
#include <comet/comet.hpp>

#include "support.hpp"
#include "private_hosts.hpp"
#include "processes.hpp"
#include "tls_pki.hpp"

using namespace comet;
using namespace comet::test;

namespace {

std::size_t line_count(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

fs::path write_file(const std::string& name, const std::string& text) {
  const auto path = scratch_dir() / name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

}  // namespace

TEST_CASE("comet-send queries a comet-host started on a free port", "[cli]") {
  running_host h;
  CHECK_THAT(h.address, Catch::StartsWith("127.0.0.1:"));

  auto echo = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--value",
                                     R"({"a": [1, "ü"], "b": 2.5})"});
  CHECK(echo.status == 0);
  CHECK(echo.out == "{\"a\": [1, \"ü\"], \"b\": 2.5}\n");

  auto status = run_cli("comet-send", {"--to", h.address, "--action", "status"});
  REQUIRE(status.status == 0);
  auto s = json::parse(status.out);
  CHECK(s.at("requests_served").to_number<std::int64_t>() >= 1);
  CHECK(s.at("connections_open").to_number<std::int64_t>() >= 1);
  CHECK(s.at("uptime_seconds").to_number<double>() > 0);
  CHECK(s.at("error_responses").to_number<std::int64_t>() == 0);
  CHECK(s.at("errors_by_code").as_object().empty());
  CHECK(s.at("version").as_string() == comet::version);

  auto unknown = run_cli("comet-send", {"--to", h.address, "--action", "nope"});
  CHECK(unknown.status == 5);
  CHECK(line_count(unknown.err) == 1);
  CHECK_THAT(unknown.err, Catch::Contains("no_handler") && Catch::Contains("'nope'"));

  // Five answers that take measurable time (256 KiB parsed and written back):
  // most of the answers so far, so the host's median latency is not zero.
  const auto big = write_file("big.json", "\"" + std::string(256 << 10, 'b') + "\"");
  auto slow = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--value",
                                     "@" + big.string(), "--repeat", "5", "--quiet"});
  CHECK(slow.status == 0);

  // Everything in host_stats, the no_handler answer counted by its code.
  auto after = run_cli("comet-send", {"--to", h.address, "--action", "status"});
  REQUIRE(after.status == 0);
  const auto t = json::parse(after.out).as_object();
  const auto count = [&t](std::string_view key) { return t.at(key).to_number<std::int64_t>(); };
  CHECK(count("requests_served") >= 8);  // echo, status, nope, 5 echoes
  CHECK(count("error_responses") == 1);
  const auto& by_code = t.at("errors_by_code").as_object();
  CHECK(by_code.size() == 1);
  REQUIRE(by_code.contains("no_handler"));
  CHECK(by_code.at("no_handler").to_number<std::int64_t>() == 1);
  CHECK(count("bytes_received") > 5 * (256 << 10));
  CHECK(count("bytes_sent") > 0);
  CHECK(count("connections_open") >= 1);
  CHECK(count("connections_accepted") >= 9);  // echo, status, nope, 5 echoes, status
  CHECK(count("connections_refused") == 0);
  const auto& latency = t.at("latency_us").as_object();
  CHECK(latency.size() == 3);
  const auto p50 = latency.at("p50").to_number<std::int64_t>();
  const auto p99 = latency.at("p99").to_number<std::int64_t>();
  const auto p999 = latency.at("p999").to_number<std::int64_t>();
  CHECK(p50 > 0);
  CHECK(p50 <= p99);
  CHECK(p99 <= p999);
  CHECK(t.at("version").as_string() == comet::version);
  CHECK(t.at("uptime_seconds").to_number<double>() >= s.at("uptime_seconds").to_number<double>());

  // A named client from a config file.
  const auto port = h.address.substr(h.address.rfind(':') + 1);
  const auto cfg = scratch_dir() / "lab.toml";
  {
    std::ofstream out(cfg);
    out << "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 0\n\n"
        << "[Socket_connection.Client.Lab]\nIP = \"127.0.0.1\"\nPort = " << port << "\n";
  }
  auto named = run_cli("comet-send", {"--config", cfg.string(), "--client", "Lab", "--action",
                                      "echo", "--value", "\"named\""});
  CHECK(named.status == 0);
  CHECK(named.out == "\"named\"\n");
  auto misspelt = run_cli("comet-send", {"--config", cfg.string(), "--client", "Lob", "--action",
                                         "echo"});
  CHECK(misspelt.status == 2);
  CHECK_THAT(misspelt.err, Catch::Contains("'Lob'") && Catch::Contains("Lab"));

  CHECK(h.stop() == 0);
  CHECK_THAT(h.p.stderr_text(), Catch::Contains("stopped"));
}

TEST_CASE("comet-send fails with one clear line and a distinct status", "[cli]") {
  asio::io_context io;
  std::uint16_t free_port;
  {
    tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    free_port = a.local_endpoint().port();
  }
  auto offline = run_cli("comet-send", {"--to", "127.0.0.1:" + std::to_string(free_port),
                                        "--action", "echo"});
  CHECK(offline.status == 3);
  CHECK(line_count(offline.err) == 1);
  CHECK_THAT(offline.err, Catch::Contains("cannot connect"));
  CHECK(offline.out.empty());

  // A listener that never answers: the timeout fires.
  tcp::acceptor silent(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto silent_at = "127.0.0.1:" + std::to_string(silent.local_endpoint().port());
  auto slow = run_cli("comet-send", {"--to", silent_at, "--action", "echo", "--timeout", "0.3"});
  CHECK(slow.status == 4);
  CHECK_THAT(slow.err, Catch::Contains("did not answer"));

  auto bad_json = run_cli("comet-send", {"--to", silent_at, "--action", "echo", "--value", "{oops"});
  CHECK(bad_json.status == 2);
  CHECK_THAT(bad_json.err, Catch::Contains("--value is not valid JSON"));

  auto no_target = run_cli("comet-send", {"--action", "echo"});
  CHECK(no_target.status == 2);
  auto bad_target = run_cli("comet-send", {"--to", "localhost", "--action", "echo"});
  CHECK(bad_target.status == 2);

  auto unknown = run_cli("comet-send", {"--to", "no-such-host.invalid:1", "--action", "echo"});
  CHECK(unknown.status == 3);
  CHECK(line_count(unknown.err) == 1);
  CHECK_THAT(unknown.err, Catch::Contains("cannot resolve the host name 'no-such-host.invalid'"));
}

TEST_CASE("comet-send exits 6 when the peer answers something that is not a frame", "[cli]") {
  scripted_peer garbage(std::string("\x00\x05hello", 7));  // a header that is not JSON
  auto confused = run_cli("comet-send", {"--to", garbage.at().to_string(), "--action", "echo"});
  CHECK(confused.status == 6);
  CHECK(confused.out.empty());
  CHECK(line_count(confused.err) == 1);
  CHECK_THAT(confused.err, Catch::Contains("sent a bad frame"));
  CHECK(wait_until([&] { return garbage.answered() == 1; }));  // counted just after its write
}

TEST_CASE("the executables explain themselves and reject bad configs", "[cli]") {
  for (const std::string program : {"comet-host", "comet-send"}) {
    auto help = run_cli(program, {"--help"});
    CHECK(help.status == 0);
    CHECK_THAT(help.out, Catch::Contains("Usage: " + program));
    auto version = run_cli(program, {"--version"});
    CHECK(version.status == 0);
    CHECK(version.out == program + " " + comet::version + "\n");
    auto unknown = run_cli(program, {"--frobnicate"});
    CHECK(unknown.status == 2);
  }
  const auto bad = scratch_dir() / "bad.toml";
  {
    std::ofstream out(bad);
    out << "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 70000\n";
  }
  auto rejected = run_cli("comet-host", {"--config", bad.string()});
  CHECK(rejected.status == 2);
  CHECK_THAT(rejected.err, Catch::Contains("bad.toml") && Catch::Contains("Port"));
  auto missing = run_cli("comet-host", {"--config", (scratch_dir() / "none.toml").string()});
  CHECK(missing.status == 2);
}

TEST_CASE("comet-send reads --value from a file or stdin", "[cli]") {
  running_host h;
  const auto value_file = write_file("value.json", "{\"scan\": [1, 2], \"done\": true}\n");
  auto from_file = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--value",
                                          "@" + value_file.string()});
  CHECK(from_file.status == 0);
  CHECK(from_file.out == "{\"scan\": [1, 2], \"done\": true}\n");

  const auto input = write_file("stdin.json", "\"from stdin\"");
  auto from_stdin = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--value", "-"},
                            input);
  CHECK(from_stdin.status == 0);
  CHECK(from_stdin.out == "\"from stdin\"\n");

  auto missing = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--value",
                                        "@" + (scratch_dir() / "none.json").string()});
  CHECK(missing.status == 2);
  CHECK_THAT(missing.err, Catch::Contains("cannot open the --value file"));
  const auto broken = write_file("broken.json", "{oops");
  auto not_json = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--value",
                                         "@" + broken.string()});
  CHECK(not_json.status == 2);
  CHECK_THAT(not_json.err, Catch::Contains("--value @") && Catch::Contains("is not valid JSON"));
  CHECK(h.stop() == 0);
}

TEST_CASE("comet-send --repeat sends N times and sums up on stderr", "[cli]") {
  running_host h;
  auto repeated = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--value", "7",
                                         "--repeat", "3"});
  CHECK(repeated.status == 0);
  CHECK(repeated.out == "7\n7\n7\n");
  CHECK_THAT(repeated.err, Catch::Matches("comet-send: 3 sent, 3 answered, 0 failed in "
                                          "[0-9.]+ s \\([0-9.]+ msgs/s\\)\n"));

  auto failing = run_cli("comet-send", {"--to", h.address, "--action", "nope", "--repeat", "2",
                                        "--quiet"});
  CHECK(failing.status == 5);
  CHECK(failing.out.empty());
  CHECK(line_count(failing.err) == 3);  // two failures and the summary
  CHECK_THAT(failing.err, Catch::Contains("2 sent, 0 answered, 2 failed"));

  auto keep_alive = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--value",
                                           "\"kept\"", "--keep-alive", "-n", "2", "-q"});
  CHECK(keep_alive.status == 0);
  CHECK_THAT(keep_alive.err, Catch::Contains("2 sent, 2 answered, 0 failed"));

  auto zero = run_cli("comet-send", {"--to", h.address, "--action", "echo", "--repeat", "0"});
  CHECK(zero.status == 2);
  CHECK_THAT(zero.err, Catch::Contains("--repeat must be from 1"));

  // The server counted every request.
  auto status = run_cli("comet-send", {"--to", h.address, "--action", "status"});
  REQUIRE(status.status == 0);
  CHECK(json::parse(status.out).at("requests_served").to_number<std::int64_t>() >= 7);
  CHECK(h.stop() == 0);
}

TEST_CASE("the executables read COMET's YAML settings", "[cli]") {
  running_host h;
  const auto port = h.address.substr(h.address.rfind(':') + 1);
  const auto settings = write_file(
      "settings.yml", "Settings_version: 2\nTelegram:\n  token: abc\nSocket_connection:\n"
                      "  Host:\n    IP: 127.0.0.1\n    Port: 0\n  Client:\n    Lab:\n"
                      "      IP: 127.0.0.1\n      Port: " + port + "\n");
  auto named = run_cli("comet-send", {"--config", settings.string(), "--client", "Lab",
                                      "--action", "echo", "--value", "[1]"});
  CHECK(named.status == 0);
  CHECK(named.out == "[1]\n");
  CHECK(h.stop() == 0);

  auto checked = run_cli("comet-host", {"--config", settings.string(), "--check-config"});
  CHECK(checked.status == 0);
  CHECK(checked.out == settings.string() + ": ok; host 127.0.0.1:0, 1 client: Lab at 127.0.0.1:" +
                           port + "\n");
}

TEST_CASE("comet-send --client sends over a config's endpoints list, and --check-config lists it",
          "[cli]") {
  running_host a, b;
  const auto port_of = [](const running_host& h) { return h.address.substr(h.address.rfind(':') + 1); };
  const auto fleet = write_file(
      "fleet.toml", "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 0\n"
                    "[Socket_connection.Client.Fleet]\nendpoints = [\"127.0.0.1:" + port_of(a) +
                        "\", \"127.0.0.1:" + port_of(b) + "\"]\n"
                    "[Socket_connection.Client.Lab]\nIP = \"127.0.0.1\"\nPort = " + port_of(a) + "\n");
  auto checked = run_cli("comet-host", {"--config", fleet.string(), "--check-config"});
  CHECK(checked.status == 0);
  CHECK(checked.out == fleet.string() + ": ok; host 127.0.0.1:0, 2 clients: Fleet over 127.0.0.1:" +
                           port_of(a) + " 127.0.0.1:" + port_of(b) + ", Lab at 127.0.0.1:" +
                           port_of(a) + "\n");

  // Sequential sends go to each endpoint in turn (client.hpp: ties in turn).
  auto sent = run_cli("comet-send", {"--config", fleet.string(), "--client", "Fleet", "--action",
                                     "echo", "--value", "1", "--repeat", "4"});
  CHECK(sent.status == 0);
  CHECK(sent.out == "1\n1\n1\n1\n");
  const auto served = [](const running_host& h) {
    auto status = run_cli("comet-send", {"--to", h.address, "--action", "status"});
    REQUIRE(status.status == 0);
    return json::parse(status.out).at("requests_served").to_number<std::int64_t>();
  };
  const auto at_a = served(a), at_b = served(b);
  CHECK(at_a >= 1);
  CHECK(at_b >= 1);
  CHECK(at_a + at_b == 4);
  CHECK(a.stop() == 0);
  CHECK(b.stop() == 0);
}

TEST_CASE("comet-host --check-config reports a bad config and exits 2", "[cli]") {
  const auto unnamed = write_file(
      "unnamed.yaml", "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 65432}\n  Client:\n"
                      "    IP: 127.0.0.4\n    Port: 65432\n");
  auto rejected = run_cli("comet-host", {"--config", unnamed.string(), "--check-config"});
  CHECK(rejected.status == 2);
  CHECK(rejected.out.empty());
  CHECK(line_count(rejected.err) == 1);
  CHECK_THAT(rejected.err, Catch::Contains("unnamed.yaml:4: Socket_connection.Client: give each "
                                           "client a name, e.g. Client: {Telegram:"));

  auto defaults = run_cli("comet-host", {"--check-config"});
  CHECK(defaults.status == 0);
  CHECK_THAT(defaults.out, Catch::StartsWith("<embedded default config>: ok; host "
                                             "127.0.0.1:65432"));
  auto bad_host = run_cli("comet-host", {"--check-config", "--host", "lab pc"});
  CHECK(bad_host.status == 2);
  CHECK_THAT(bad_host.err, Catch::Contains("--host 'lab pc' is neither an IPv4 or IPv6 address nor a host name"));
  auto unknown_host = run_cli("comet-host", {"--check-config", "--host", "no-such-host.invalid"});
  CHECK(unknown_host.status == 2);
  CHECK_THAT(unknown_host.err, Catch::Contains("the host name 'no-such-host.invalid' does not resolve"));
}

TEST_CASE("comet-host listens on a name and comet-send dials one", "[cli][.names]") {
  private_hosts_file();  // localhost: 127.0.0.1, and ::1 with Debian's /etc/hosts
  auto named_host = run_cli("comet-host", {"--check-config", "--host", "localhost"});
  CHECK(named_host.status == 0);
  CHECK_THAT(named_host.out, Catch::Contains("host localhost:65432"));

  running_host h({"--host", "localhost"});
  CHECK_THAT(h.address, Catch::StartsWith("127.0.0.1:"));  // what start() returns: the IPv4 one
  const std::string port = h.address.substr(h.address.rfind(':') + 1);
  auto status = run_cli("comet-send", {"--to", h.address, "--action", "status"});
  REQUIRE(status.status == 0);
  const json::value answer = json::parse(status.out);
  std::vector<std::string> listening;
  for (const auto& at : answer.at("listening").as_array())
    listening.emplace_back(at.as_string());
  std::vector<std::string> expected;
  for (const auto& ip : private_addresses_of("localhost"))
    expected.push_back(endpoint{ip, static_cast<std::uint16_t>(std::stoi(port))}.to_string());
  std::sort(listening.begin(), listening.end());
  std::sort(expected.begin(), expected.end());
  CHECK(listening == expected);

  // A host name works wherever an address does.
  for (const auto& to : expected) {
    auto by_address = run_cli("comet-send", {"--to", to, "--action", "echo", "--value", "6"});
    CHECK(by_address.status == 0);
  }
  auto by_name = run_cli("comet-send", {"--to", "localhost:" + port, "--action", "echo", "--value", "7"});
  CHECK(by_name.status == 0);
  CHECK(by_name.out == "7\n");
  CHECK(h.stop() == 0);
}

TEST_CASE("comet-host and comet-send speak TLS from a config", "[cli][tls]") {
  test_pki pki;
  const auto config_with = [&](const std::string& name, const std::string& ca,
                               const std::string& certificate = "host.pem") {
    const auto file = pki.dir() / name;
    std::ofstream(file) << "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 0\n"
                           "[comet]\ntls = true\ntls_certificate = \"" + certificate + "\"\n"
                           "tls_private_key = \"host.key\"\ntls_ca = \"" + ca + "\"\n";
    return file.string();
  };
  const std::string app = config_with("app.toml", "ca.pem");
  const std::string wrong_ca = config_with("wrong.toml", "rogue-ca.pem");
  const std::string no_ca = config_with("no-ca.toml", "absent.pem");
  const std::string no_certificate = config_with("no-cert.toml", "ca.pem", "absent.pem");

  // --check-config reads the TLS files too, and so does a host that starts.
  CHECK(run_cli("comet-host", {"--config", app, "--check-config"}).status == 0);
  for (const auto& args :
       {std::vector<std::string>{"--config", no_certificate, "--check-config"},
        std::vector<std::string>{"--config", no_certificate, "--port", "0"}}) {
    auto unusable = run_cli("comet-host", args);
    CHECK(unusable.status == 2);
    CHECK_THAT(unusable.err, Catch::Contains("absent.pem"));
  }
  auto sender = run_cli("comet-send", {"--config", no_ca, "--to", "127.0.0.1:9", "-a", "echo"});
  CHECK(sender.status == 7);
  CHECK_THAT(sender.err, Catch::Contains("absent.pem"));
  running_host h({"--config", app});

  auto echo = run_cli("comet-send", {"--config", app, "--to", h.address, "-a", "echo", "-v", "[1]"});
  CHECK(echo.status == 0);
  CHECK(echo.out == "[1]\n");

  auto plain = run_cli("comet-send", {"--to", h.address, "-a", "echo"});
  CHECK(plain.status == 3);
  CHECK_THAT(plain.err, Catch::Contains("TLS"));

  auto untrusted = run_cli("comet-send", {"--config", wrong_ca, "--to", h.address, "-a", "echo"});
  CHECK(untrusted.status == 7);
  CHECK(line_count(untrusted.err) == 1);
  CHECK_THAT(untrusted.err, Catch::Contains("certificate verify failed"));

  auto status = run_cli("comet-send", {"--config", app, "--to", h.address, "-a", "status"});
  REQUIRE(status.status == 0);
  CHECK(json::parse(status.out).at("tls_handshakes_failed").to_number<std::int64_t>() == 2);
  CHECK(h.stop() == 0);
}
