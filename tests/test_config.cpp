#include <comet/config.hpp>

#include <comet/client.hpp>
#include <comet/errors.hpp>
#include <comet/host.hpp>

#include <catch2/catch.hpp>

#include "support.hpp"
#include "temp_file.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using Catch::Contains;
using comet::config_error;
using comet::endpoint;
using comet::parse_config;
using comet::test::temp_file;

namespace {

comet::config parse(std::string_view text) { return parse_config(text, "app.toml"); }

const std::string host_block = "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 1\n";

// The keys [comet] takes, as the reader lists them for an unknown key.
std::set<std::string> accepted_comet_keys() {
  std::string message;
  try {
    parse(host_block + "[comet]\nno_such_key = 1\n");
  } catch (const config_error& e) {
    message = e.what();
  }
  const std::string intro = "comet takes only ";
  const auto start = message.find(intro);
  REQUIRE(start != std::string::npos);
  std::string list = message.substr(start + intro.size());
  std::set<std::string> keys;
  // "a, b, c and d"
  for (std::string::size_type at = 0; at < list.size();) {
    const auto comma = list.find(", ", at);
    const auto last = list.find(" and ", at);
    const auto end = std::min(comma, last);
    keys.insert(list.substr(at, end == std::string::npos ? std::string::npos : end - at));
    if (end == std::string::npos) break;
    at = end + (end == comma ? 2 : 5);
  }
  REQUIRE(keys.size() >= 5);
  return keys;
}

}  // namespace

TEST_CASE("endpoint::to_string brackets IPv6 addresses", "[unit]") {
  CHECK(endpoint{"127.0.0.1", 65432}.to_string() == "127.0.0.1:65432");
  CHECK(endpoint{"::1", 80}.to_string() == "[::1]:80");
  CHECK(endpoint{"fe80::1:2", 0}.to_string() == "[fe80::1:2]:0");
}

TEST_CASE("the embedded default config parses", "[unit]") {
  const comet::config config = comet::default_config();
  CHECK(config.source == "<embedded default config>");
  CHECK(config.host == endpoint{"127.0.0.1", 65432});
  REQUIRE(config.clients.size() == 1);
  CHECK(config.clients.at("local") == endpoint{"127.0.0.1", 65432});
  CHECK(config.framework == comet::settings{});
  CHECK_THAT(std::string(comet::default_config_text()), Contains("[Socket_connection.Host]"));
}

TEST_CASE("the [comet] defaults documented in default.toml match settings{}", "[unit]") {
  // Uncommenting the documented table must change nothing.
  const std::string text(comet::default_config_text());
  const auto start = text.find("# [comet]");
  REQUIRE(start != std::string::npos);
  std::istringstream commented(text.substr(start));
  std::string uncommented = text.substr(0, start);
  std::set<std::string> documented;
  for (std::string line; std::getline(commented, line);) {
    REQUIRE(line.rfind("# ", 0) == 0);
    uncommented += line.substr(2) + '\n';
    if (const auto equals = line.find(" = "); equals != std::string::npos)
      documented.insert(line.substr(2, equals - 2));
  }
  CHECK(parse_config(uncommented, "uncommented").framework == comet::settings{});
  // ... and it shows every key the reader takes, so none keeps its default unseen.
  CHECK(documented == accepted_comet_keys());
}

TEST_CASE("the [comet] defaults in docs/configuration.md match settings{}", "[unit]") {
  // Rows of the form | `comet.key` | type | default | limits |
  std::istringstream docs(comet::test::read_file(COMET_VECTORS_DIR "/../../docs/configuration.md"));
  std::string table = host_block + "[comet]\n";
  std::set<std::string> documented;
  const std::string row = "| `comet.";
  for (std::string line; std::getline(docs, line);) {
    if (line.rfind(row, 0) != 0) continue;
    const auto key_end = line.find('`', row.size());
    REQUIRE(key_end != std::string::npos);
    const std::string key = line.substr(row.size(), key_end - row.size());
    // The third cell: the default.
    std::size_t cell = key_end;
    for (int bar = 0; bar < 2; ++bar) cell = line.find('|', cell + 1);
    const auto cell_end = line.find('|', cell + 1);
    REQUIRE(cell_end != std::string::npos);
    std::string value = line.substr(cell + 1, cell_end - cell - 1);
    value.erase(0, value.find_first_not_of(' '));
    value.erase(value.find_last_not_of(' ') + 1);
    documented.insert(key);
    table += key + " = " + value + '\n';
  }
  CAPTURE(table);
  CHECK(parse(table).framework == comet::settings{});
  CHECK(documented == accepted_comet_keys());
}

TEST_CASE("a full config with several clients and every setting", "[unit]") {
  const comet::config config = parse(R"([Socket_connection.Host]
IP = "0.0.0.0"
Port = 0

[Socket_connection.Client.Telegram]
IP = "127.0.0.4"
Port = 65432

[Socket_connection.Client.Camera]
IP = "::1"
Port = 1

[Socket_connection.Client."Lab PC"]
IP = "192.168.1.20"
Port = 65535

[comet]
io_threads = 8
connect_timeout = 1.5
request_timeout = 60
shutdown_timeout = 0.25
max_content_length = 1024
max_in_flight = 8
write_buffer_limit = 65536
max_connections = 500
idle_timeout = 0
handler_timeout = 2.5
keep_alive = true
max_connections_per_peer = 16
)");
  CHECK(config.source == "app.toml");
  CHECK(config.host == endpoint{"0.0.0.0", 0});
  REQUIRE(config.clients.size() == 3);
  CHECK(config.clients.at("Telegram") == endpoint{"127.0.0.4", 65432});
  CHECK(config.clients.at("Camera") == endpoint{"::1", 1});
  CHECK(config.clients.at("Lab PC") == endpoint{"192.168.1.20", 65535});
  CHECK(config.framework.io_threads == 8);
  CHECK(config.framework.connect_timeout == 1500ms);
  CHECK(config.framework.request_timeout == 60s);
  CHECK(config.framework.shutdown_timeout == 250ms);
  CHECK(config.framework.max_content_length == 1024);
  CHECK(config.framework.max_in_flight == 8);
  CHECK(config.framework.write_buffer_limit == 65536);
  CHECK(config.framework.max_connections == 500);
  CHECK(config.framework.idle_timeout == 0ms);
  CHECK(config.framework.handler_timeout == 2500ms);
  CHECK(config.framework.keep_alive);
  CHECK(config.framework.max_connections_per_peer == 16);
}

TEST_CASE("from_config takes every key of the comet table into host and client options",
          "[unit]") {
  // Every key set, each to something other than its default.
  const std::string comet_table = R"([comet]
io_threads = 3
connect_timeout = 1.25
request_timeout = 7.5
shutdown_timeout = 0.75
max_content_length = 5000
max_in_flight = 9
max_in_flight_bytes = 4096
write_buffer_limit = 8192
max_connections = 77
max_streams = 12
subscriber_queue = 100
subscriber_queue_bytes = 20000
idle_timeout = 12.5
handler_timeout = 0.5
max_connection_age = 90
reuse_port = true
metrics_listen = "127.0.0.1:9464"
keep_alive = true
max_connections_per_peer = 6
resolve_max_age = 4.5
auth_token = "s3cret"
allow = "127.0.0.0/8, ::1"
tls = true
tls_certificate = "certs/host.pem"
tls_private_key = "certs/host.key"
tls_ca = "/etc/lab/ca.pem"
tls_require_client_certificate = true
)";
  for (const auto& key : accepted_comet_keys()) {
    INFO("key " << key);
    CHECK(comet_table.find('\n' + key + " = ") != std::string::npos);
  }
  const temp_file file(R"([Socket_connection.Host]
IP = "127.0.0.3"
Port = 4567

[Socket_connection.Client.Telegram]
IP = "127.0.0.4"
Port = 65001

)" + comet_table);
  const comet::config cfg = comet::load_config(file.path());
  const auto next_to_config = [&](const std::string& name) {
    return (file.path().parent_path() / name).lexically_normal().string();
  };
  CHECK(cfg.framework.io_threads == 3);  // for the io_pool a service makes; no option takes it

  const auto h = comet::host_options::from_config(cfg);
  CHECK(h.listen == endpoint{"127.0.0.3", 4567});
  CHECK(h.max_content_length == 5000);
  CHECK(h.shutdown_timeout == 750ms);
  CHECK(h.max_in_flight == 9);
  CHECK(h.max_in_flight_bytes == 4096);
  CHECK(h.write_buffer_limit == 8192);
  CHECK(h.max_connections == 77);
  CHECK(h.max_streams == 12);
  CHECK(h.subscriber_queue == 100);
  CHECK(h.subscriber_queue_bytes == 20000);
  CHECK(h.idle_timeout == 12500ms);
  CHECK(h.handler_timeout == 500ms);
  CHECK(h.max_connection_age == 90s);
  CHECK(h.reuse_port);
  CHECK(h.metrics_listen == endpoint{"127.0.0.1", 9464});
  CHECK(h.auth_token == "s3cret");
  CHECK(h.allow == std::vector<std::string>{"127.0.0.0/8", "::1"});
  CHECK(h.tls.enabled);
  CHECK(h.tls.certificate == next_to_config("certs/host.pem"));
  CHECK(h.tls.private_key == next_to_config("certs/host.key"));
  CHECK(h.tls.ca == "/etc/lab/ca.pem");
  CHECK(h.tls.require_client_certificate);

  const auto c = comet::client_options::from_config(cfg, "Telegram");
  CHECK(c.name == "Telegram");
  CHECK(c.connect_timeout == 1250ms);
  CHECK(c.request_timeout == 7500ms);
  CHECK(c.max_content_length == 5000);
  CHECK(c.keep_alive);
  CHECK(c.max_connections == 6);  // max_connections_per_peer
  CHECK(c.resolve_max_age == 4500ms);
  CHECK(c.auth_token == "s3cret");
  CHECK(c.tls.enabled);
  CHECK(c.tls.certificate == next_to_config("certs/host.pem"));
  CHECK(c.tls.private_key == next_to_config("certs/host.key"));
  CHECK(c.tls.ca == "/etc/lab/ca.pem");
  // Not from the config: a client's own settings keep their defaults.
  CHECK(c.max_in_flight == comet::client_options{}.max_in_flight);
  CHECK(c.connect_retries == comet::client_options{}.connect_retries);
}

TEST_CASE("settings keep their defaults when [comet] is absent or partial", "[unit]") {
  const comet::settings defaults;
  SECTION("absent, and no clients") {
    const comet::config config = parse("[Socket_connection.Host]\nIP = \"::\"\nPort = 5000\n");
    CHECK(config.host == endpoint{"::", 5000});
    CHECK(config.clients.empty());
    CHECK(config.framework == defaults);
  }
  SECTION("partial") {
    const comet::config config = parse(host_block + "[comet]\nio_threads = 1\n");
    CHECK(config.framework.io_threads == 1);
    CHECK(config.framework.request_timeout == defaults.request_timeout);
    CHECK(config.framework.max_content_length == defaults.max_content_length);
    CHECK(config.framework.idle_timeout == 60s);
    CHECK(config.framework.handler_timeout == 60s);
    CHECK(config.framework.keep_alive == false);
  }
  SECTION("inline tables work like headers") {
    const comet::config config = parse(
        "Socket_connection = { Host = { IP = \"127.0.0.1\", Port = 7 }, Client = { a = { IP = "
        "\"127.0.0.2\", Port = 8 } } }\n");
    CHECK(config.host == endpoint{"127.0.0.1", 7});
    CHECK(config.clients.at("a") == endpoint{"127.0.0.2", 8});
  }
}

TEST_CASE("other top-level tables and keys are ignored", "[unit]") {
  const comet::config config = parse(R"(title = "lab"
[Telegram]
token = "secret"
Port = "not ours"

[Socket_connection.Host]
IP = "127.0.0.1"
Port = 65432

[Database.nested]
anything = [1, 2, 3]
)");
  CHECK(config.host == endpoint{"127.0.0.1", 65432});
  CHECK(config.clients.empty());
}

TEST_CASE("load_config reads a file and names it in errors", "[unit]") {
  SECTION("a good file") {
    const temp_file file(
        "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 4000\n"
        "[Socket_connection.Client.Telegram]\nIP = \"127.0.0.4\"\nPort = 4001\n");
    const comet::config config = comet::load_config(file.path());
    CHECK(config.source == file.path().string());
    CHECK(config.host == endpoint{"127.0.0.1", 4000});
    CHECK(config.clients.at("Telegram") == endpoint{"127.0.0.4", 4001});
  }
  SECTION("a bad file") {
    const temp_file file("[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 70000\n");
    REQUIRE_THROWS_WITH(comet::load_config(file.path()),
                        Contains(file.path().string() + ":3: Socket_connection.Host.Port: 70000"));
  }
  SECTION("a missing file") {
    const auto missing = std::filesystem::temp_directory_path() / "comet_no_such_config_file.toml";
    REQUIRE_THROWS_AS(comet::load_config(missing), config_error);
    REQUIRE_THROWS_WITH(
        comet::load_config(missing),
        Contains(missing.string() + ": config file not found") && Contains("check the path"));
  }
  SECTION("a directory") {
    const auto directory = std::filesystem::temp_directory_path();
    REQUIRE_THROWS_WITH(comet::load_config(directory), Contains("is a directory"));
  }
}

TEST_CASE("config errors: syntax and missing blocks", "[unit]") {
  SECTION("TOML syntax error gives line and column") {
    REQUIRE_THROWS_AS(parse("[Socket_connection.Host]\nPort = \n"), config_error);
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nPort = \n"),
        Contains("app.toml:2:8: TOML syntax error: ") && Contains("expected value"));
  }
  SECTION("no Socket_connection block") {
    REQUIRE_THROWS_WITH(
        parse("[other]\nx = 1\n"),
        Contains("app.toml: no [Socket_connection] block: add [Socket_connection.Host]"));
    REQUIRE_THROWS_WITH(parse(""), Contains("app.toml: no [Socket_connection] block"));
  }
  SECTION("a misspelt Socket_connection block is pointed out") {
    REQUIRE_THROWS_WITH(
        parse("\n[Socket_conection.Host]\nIP = \"127.0.0.1\"\nPort = 1\n"),
        Contains("found \"Socket_conection\" at line 2; did you mean Socket_connection?"));
  }
  SECTION("Socket_connection is not a table") {
    REQUIRE_THROWS_WITH(
        parse("x = 1\nSocket_connection = 5\n"),
        Contains("app.toml:2: Socket_connection: 5 is an integer; make it a table"));
  }
  SECTION("missing Host") {
    REQUIRE_THROWS_WITH(
        parse("a = 1\n[Socket_connection.Client.A]\nIP = \"127.0.0.1\"\nPort = 1\n"),
        Contains("app.toml:2: Socket_connection.Host: missing; add a [Socket_connection.Host]"));
  }
  SECTION("Host is not a table") {
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection]\nHost = \"127.0.0.1:65432\"\n"),
        Contains("app.toml:2: Socket_connection.Host: \"127.0.0.1:65432\" is a string; "
                 "make it a table"));
  }
  SECTION("comet is not a table") {
    REQUIRE_THROWS_WITH(parse("comet = true\n" + host_block),
                        Contains("app.toml:1: comet: true is a boolean; make it a table"));
  }
}

TEST_CASE("config errors: host IP and Port", "[unit]") {
  SECTION("missing Port names the table's line") {
    REQUIRE_THROWS_WITH(
        parse("# app\n[Socket_connection.Host]\nIP = \"127.0.0.1\"\n"),
        Contains("app.toml:2: Socket_connection.Host.Port: missing; add Port = 65432"));
  }
  SECTION("missing IP") {
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nPort = 1\n"),
        Contains("app.toml:1: Socket_connection.Host.IP: missing; add IP = \"127.0.0.1\""));
  }
  SECTION("Port out of range") {
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 70000\n"),
        Contains("app.toml:3: Socket_connection.Host.Port: 70000 is out of range; use a "
                 "port between 0 and 65535"));
    REQUIRE_THROWS_WITH(parse("[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = -1\n"),
                        Contains("app.toml:3: Socket_connection.Host.Port: -1 is out of range"));
  }
  SECTION("Port of the wrong type") {
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = \"abc\"\n"),
        Contains("app.toml:3: Socket_connection.Host.Port: \"abc\" is a string; use an "
                 "integer between 0 and 65535"));
    REQUIRE_THROWS_WITH(parse("[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 80.5\n"),
                        Contains("app.toml:3: Socket_connection.Host.Port: 80.5 is a float"));
  }
  SECTION("IP of the wrong type") {
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nIP = 5\nPort = 1\n"),
        Contains("app.toml:2: Socket_connection.Host.IP: 5 is an integer; write the "
                 "address as a string"));
  }
  SECTION("IP that is neither an address nor a host name") {
    CHECK(parse("[Socket_connection.Host]\nIP = \"localhost\"\nPort = 1\n").host.ip == "localhost");
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nIP = \"lab pc\"\nPort = 1\n"),
        Contains("app.toml:2: Socket_connection.Host.IP: \"lab pc\" is a string but neither "
                 "an IPv4 or IPv6 address nor a host name"));
    REQUIRE_THROWS_WITH(parse("[Socket_connection.Host]\nIP = \"256.1.1.1\"\nPort = 1\n"),
                        Contains("app.toml:2: Socket_connection.Host.IP: \"256.1.1.1\"") &&
                            Contains("four numbers from 0 to 255"));
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nIP = \"[::1]\"\nPort = 1\n"),
        Contains("app.toml:2: Socket_connection.Host.IP: ") && Contains("without brackets"));
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nIP = \"\"\nPort = 1\n"),
        Contains("app.toml:2: Socket_connection.Host.IP: \"\" is a string but neither"));
    // A NUL would cut both inet_pton's view and the message; both must see it.
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nIP = \"127.0.0.1\\u0000x\"\nPort = 1\n"),
        Contains("app.toml:2: Socket_connection.Host.IP: \"127.0.0.1\\u0000x\" is a "
                 "string but neither"));
  }
}

TEST_CASE("config errors: unknown keys", "[unit]") {
  SECTION("in Socket_connection") {
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Hosts]\nIP = \"127.0.0.1\"\nPort = 1\n"),
        Contains("app.toml:1: Socket_connection.Hosts: unknown key; Socket_connection "
                 "takes only Host and Client (did you mean Host?)"));
  }
  SECTION("in Host, before reporting the key it replaces as missing") {
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nIP = \"127.0.0.1\"\nport = 1\n"),
        Contains("app.toml:3: Socket_connection.Host.port: unknown key; "
                 "Socket_connection.Host takes only IP and Port (did you mean Port?)"));
  }
  SECTION("in a client, with no close match") {
    REQUIRE_THROWS_WITH(
        parse(host_block + "[Socket_connection.Client.Telegram]\nIP = \"127.0.0.4\"\nPort = 2\n"
                           "timeout = 3\n"),
        Contains("app.toml:7: Socket_connection.Client.Telegram.timeout: unknown key; "
                 "Socket_connection.Client.Telegram takes only IP, Port and endpoints") &&
            !Contains("did you mean"));
  }
  SECTION("in [comet]") {
    REQUIRE_THROWS_WITH(
        parse(host_block + "[comet]\nconnect_timout = 3\n"),
        Contains("app.toml:5: comet.connect_timout: unknown key; comet takes only "
                 "io_threads, connect_timeout, request_timeout, shutdown_timeout, "
                 "max_content_length, max_in_flight, max_in_flight_bytes, write_buffer_limit, max_connections, "
                 "max_streams, subscriber_queue, subscriber_queue_bytes, idle_timeout, handler_timeout, "
                 "max_connection_age, reuse_port, metrics_listen, keep_alive, max_connections_per_peer, resolve_max_age, auth_token, "
                 "allow, tls, tls_certificate, tls_private_key, tls_ca and "
                 "tls_require_client_certificate "
                 "(did you mean connect_timeout?)"));
    REQUIRE_THROWS_WITH(parse(host_block + "[comet]\nmax_connection = 3\n"),
                        Contains("(did you mean max_connections?)"));
    REQUIRE_THROWS_WITH(parse(host_block + "[comet]\nkeepalive = true\n"),
                        Contains("(did you mean keep_alive?)"));
  }
}

TEST_CASE("config errors: clients", "[unit]") {
  SECTION("IP and Port directly under Client") {
    REQUIRE_THROWS_WITH(
        parse(host_block + "[Socket_connection.Client]\nIP = \"127.0.0.4\"\nPort = 65432\n"),
        Contains("app.toml:5: Socket_connection.Client: give each client a name, e.g. "
                 "[Socket_connection.Client.Telegram] with IP and Port, not IP/Port "
                 "directly under Client"));
  }
  SECTION("a client entry that is not a table") {
    REQUIRE_THROWS_WITH(
        parse(host_block + "[Socket_connection.Client]\nTelegram = \"127.0.0.4:65432\"\n"),
        Contains(
            "app.toml:5: Socket_connection.Client.Telegram: \"127.0.0.4:65432\" is "
            "a string; make it a table: [Socket_connection.Client.Telegram] with IP and Port"));
  }
  SECTION("Client that is not a table") {
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection]\nClient = [1, 2]\n" + host_block),
        Contains("app.toml:2: Socket_connection.Client: the value is an array; make it a "
                 "table: [Socket_connection.Client.<Name>] with IP and Port per client"));
  }
  SECTION("client Port 0") {
    REQUIRE_THROWS_WITH(
        parse(host_block + "[Socket_connection.Client.Telegram]\nIP = \"127.0.0.4\"\nPort = 0\n"),
        Contains("app.toml:6: Socket_connection.Client.Telegram.Port: 0 is not a usable "
                 "client port") &&
            Contains("between 1 and 65535"));
  }
  SECTION("client missing Port names the client table's line") {
    REQUIRE_THROWS_WITH(
        parse(host_block + "\n[Socket_connection.Client.Telegram]\nIP = \"127.0.0.4\"\n"),
        Contains("app.toml:5: Socket_connection.Client.Telegram.Port: missing"));
  }
  SECTION("a client with an empty name") {
    REQUIRE_THROWS_WITH(
        parse(host_block + "[Socket_connection.Client.\"\"]\nIP = \"127.0.0.4\"\nPort = 2\n"),
        Contains("app.toml:4: Socket_connection.Client.\"\": a client needs a non-empty name"));
  }
  SECTION("client names that are not bare keys are quoted in the path") {
    REQUIRE_THROWS_WITH(
        parse(host_block + "[Socket_connection.Client.\"Lab PC\"]\nIP = 1\nPort = 2\n"),
        Contains("app.toml:5: Socket_connection.Client.\"Lab PC\".IP: 1 is an integer"));
  }
}

TEST_CASE("config errors: [comet] settings", "[unit]") {
  const std::string comet_block = host_block + "[comet]\n";
  const auto at_line_5 = [](std::string_view key) {
    return "app.toml:5: comet." + std::string(key) + ": ";
  };
  SECTION("io_threads") {
    REQUIRE_THROWS_WITH(
        parse(comet_block + "io_threads = 0\n"),
        Contains(at_line_5("io_threads") + "0 is out of range; use a whole number of "
                                           "threads from 1 to 256"));
    REQUIRE_THROWS_WITH(parse(comet_block + "io_threads = 300\n"),
                        Contains(at_line_5("io_threads") + "300"));
    REQUIRE_THROWS_WITH(parse(comet_block + "io_threads = \"2\"\n"),
                        Contains(at_line_5("io_threads") + "\"2\" is a string"));
    REQUIRE_THROWS_WITH(parse(comet_block + "io_threads = 2.0\n"),
                        Contains(at_line_5("io_threads") + "2.0 is a float"));
  }
  SECTION("timeouts") {
    REQUIRE_THROWS_WITH(
        parse(comet_block + "connect_timeout = 0\n"),
        Contains(at_line_5("connect_timeout") + "0 is out of range; use a number of "
                                                "seconds from 0.001 to 86400"));
    REQUIRE_THROWS_WITH(parse(comet_block + "request_timeout = -1.5\n"),
                        Contains(at_line_5("request_timeout") + "-1.5 is out of range"));
    REQUIRE_THROWS_WITH(parse(comet_block + "shutdown_timeout = 100000\n"),
                        Contains(at_line_5("shutdown_timeout") + "100000 is out of range"));
    REQUIRE_THROWS_WITH(parse(comet_block + "shutdown_timeout = nan\n"),
                        Contains(at_line_5("shutdown_timeout") + "nan is out of range"));
    REQUIRE_THROWS_WITH(parse(comet_block + "connect_timeout = 0.0001\n"),
                        Contains(at_line_5("connect_timeout") + "0.0001 is out of range"));
    REQUIRE_THROWS_WITH(
        parse(comet_block + "connect_timeout = \"5s\"\n"),
        Contains(at_line_5("connect_timeout") + "\"5s\" is a string; use a number of "
                                                "seconds") &&
            Contains("connect_timeout = 5.0"));
  }
  SECTION("max_content_length") {
    REQUIRE_THROWS_WITH(
        parse(comet_block + "max_content_length = 0\n"),
        Contains(at_line_5("max_content_length") + "0 is out of range; use a whole "
                                                   "number of bytes from 1 to 4294967296"));
    REQUIRE_THROWS_WITH(parse(comet_block + "max_content_length = 4294967297\n"),
                        Contains(at_line_5("max_content_length") + "4294967297 is out of range"));
    CHECK(parse(comet_block + "max_content_length = 4294967296\n").framework.max_content_length ==
          4294967296u);
  }
  SECTION("max_in_flight") {
    REQUIRE_THROWS_WITH(
        parse(comet_block + "max_in_flight = 0\n"),
        Contains(at_line_5("max_in_flight") + "0 is out of range; use a whole number of "
                                              "requests from 1 to 65536"));
    REQUIRE_THROWS_WITH(parse(comet_block + "max_in_flight = 65537\n"),
                        Contains(at_line_5("max_in_flight") + "65537 is out of range"));
    REQUIRE_THROWS_WITH(
        parse(comet_block + "max_in_flight = 1.5\n"),
        Contains(at_line_5("max_in_flight") + "1.5 is a float; use a whole number of requests "
                                              "from 1 to 65536, e.g. max_in_flight = 64"));
    CHECK(parse(comet_block + "max_in_flight = 65536\n").framework.max_in_flight == 65536);
    CHECK(parse(comet_block + "max_in_flight = 1\n").framework.max_in_flight == 1);
  }
  SECTION("write_buffer_limit") {
    REQUIRE_THROWS_WITH(
        parse(comet_block + "write_buffer_limit = 4095\n"),
        Contains(at_line_5("write_buffer_limit") + "4095 is out of range; use a whole number of "
                                                   "bytes from 4096 to 4294967296"));
    REQUIRE_THROWS_WITH(parse(comet_block + "write_buffer_limit = 4294967297\n"),
                        Contains(at_line_5("write_buffer_limit") + "4294967297 is out of range"));
    REQUIRE_THROWS_WITH(
        parse(comet_block + "write_buffer_limit = \"4 MiB\"\n"),
        Contains(at_line_5("write_buffer_limit") + "\"4 MiB\" is a string") &&
            Contains("e.g. write_buffer_limit = 4194304"));
    CHECK(parse(comet_block + "write_buffer_limit = 4096\n").framework.write_buffer_limit == 4096);
    CHECK(parse(comet_block + "write_buffer_limit = 4294967296\n").framework.write_buffer_limit ==
          4294967296u);
  }
  SECTION("max_connections") {
    REQUIRE_THROWS_WITH(
        parse(comet_block + "max_connections = 0\n"),
        Contains(at_line_5("max_connections") + "0 is out of range; use a whole number of "
                                                "connections from 1 to 1000000"));
    REQUIRE_THROWS_WITH(parse(comet_block + "max_connections = 1000001\n"),
                        Contains(at_line_5("max_connections") + "1000001 is out of range"));
    REQUIRE_THROWS_WITH(parse(comet_block + "max_connections = -5\n"),
                        Contains(at_line_5("max_connections") + "-5 is out of range"));
    CHECK(parse(comet_block + "max_connections = 1000000\n").framework.max_connections ==
          1000000);
  }
  SECTION("idle_timeout and handler_timeout: 0 switches them off") {
    CHECK(parse(comet_block + "idle_timeout = 0\n").framework.idle_timeout == 0ms);
    CHECK(parse(comet_block + "idle_timeout = 0.0\n").framework.idle_timeout == 0ms);
    CHECK(parse(comet_block + "handler_timeout = 0\n").framework.handler_timeout == 0ms);
    CHECK(parse(comet_block + "idle_timeout = 0.001\n").framework.idle_timeout == 1ms);
    CHECK(parse(comet_block + "handler_timeout = 86400\n").framework.handler_timeout ==
          86400s);
    CHECK(parse(comet_block + "idle_timeout = 1.5\n").framework.idle_timeout == 1500ms);
    REQUIRE_THROWS_WITH(
        parse(comet_block + "idle_timeout = -1\n"),
        Contains(at_line_5("idle_timeout") + "-1 is out of range; use a number of seconds "
                                             "from 0.001 to 86400, or 0 for never"));
    REQUIRE_THROWS_WITH(
        parse(comet_block + "handler_timeout = 86401\n"),
        Contains(at_line_5("handler_timeout") + "86401 is out of range; use a number of "
                                                "seconds from 0.001 to 86400, or 0 for no "
                                                "deadline"));
    // Between 0 and a millisecond would round to 0, which means "never": refused.
    REQUIRE_THROWS_WITH(parse(comet_block + "idle_timeout = 0.0004\n"),
                        Contains(at_line_5("idle_timeout") + "0.0004 is out of range"));
    REQUIRE_THROWS_WITH(parse(comet_block + "handler_timeout = nan\n"),
                        Contains(at_line_5("handler_timeout") + "nan is out of range"));
    REQUIRE_THROWS_WITH(parse(comet_block + "idle_timeout = inf\n"),
                        Contains(at_line_5("idle_timeout") + "inf is out of range"));
    REQUIRE_THROWS_WITH(
        parse(comet_block + "idle_timeout = false\n"),
        Contains(at_line_5("idle_timeout") + "false is a boolean; use a number of seconds") &&
            Contains("e.g. idle_timeout = 60.0"));
    // The other timeouts still refuse 0.
    REQUIRE_THROWS_WITH(parse(comet_block + "request_timeout = 0\n"),
                        Contains(at_line_5("request_timeout") + "0 is out of range") &&
                            !Contains("or 0 for"));
  }
  SECTION("keep_alive") {
    CHECK(parse(comet_block + "keep_alive = true\n").framework.keep_alive);
    CHECK_FALSE(parse(comet_block + "keep_alive = false\n").framework.keep_alive);
    REQUIRE_THROWS_WITH(
        parse(comet_block + "keep_alive = 1\n"),
        Contains(at_line_5("keep_alive") + "1 is an integer; use true or false, e.g. "
                                           "keep_alive = true"));
    REQUIRE_THROWS_WITH(parse(comet_block + "keep_alive = \"true\"\n"),
                        Contains(at_line_5("keep_alive") + "\"true\" is a string; use true or "
                                                           "false"));
  }
  SECTION("max_connections_per_peer") {
    REQUIRE_THROWS_WITH(
        parse(comet_block + "max_connections_per_peer = 0\n"),
        Contains(at_line_5("max_connections_per_peer") + "0 is out of range; use a whole number "
                                                         "of connections from 1 to 1024"));
    REQUIRE_THROWS_WITH(
        parse(comet_block + "max_connections_per_peer = 1025\n"),
        Contains(at_line_5("max_connections_per_peer") + "1025 is out of range"));
    REQUIRE_THROWS_WITH(
        parse(comet_block + "max_connections_per_peer = true\n"),
        Contains(at_line_5("max_connections_per_peer") + "true is a boolean") &&
            Contains("e.g. max_connections_per_peer = 4"));
    CHECK(parse(comet_block + "max_connections_per_peer = 1024\n")
              .framework.max_connections_per_peer == 1024);
  }
}

TEST_CASE("access-control settings are read and checked", "[unit]") {
  const auto cfg = parse(host_block + "[comet]\nauth_token = \"k3y\"\nallow = \"127.0.0.0/8, ::1\"\n");
  CHECK(cfg.framework.auth_token == "k3y");
  CHECK(cfg.framework.allow == "127.0.0.0/8, ::1");
  REQUIRE_THROWS_WITH(parse(host_block + "[comet]\nallow = \"127.0.0.0/8, nonsense\"\n"),
                      Contains("app.toml:5: comet.allow: allow-list entry 'nonsense'"));
  REQUIRE_THROWS_WITH(parse(host_block + "[comet]\nauth_token = 12\n"),
                      Contains("app.toml:5: comet.auth_token:") && Contains("use a string"));
}

TEST_CASE("config endpoints: a client lists its hosts instead of IP and Port", "[unit][config]") {
  const comet::config config = parse(host_block + R"([Socket_connection.Client.Fleet]
endpoints = ["lab-a:65432", "127.0.0.3:65432", "[::1]:65433"]

[Socket_connection.Client.Telegram]
IP = "127.0.0.4"
Port = 65432

[Socket_connection.Client.Solo]
endpoints = [
  "lab-b.example.org:1",
]
)");
  REQUIRE(config.client_endpoints.size() == 2);
  CHECK(config.client_endpoints.at("Fleet") ==
        std::vector<endpoint>{{"lab-a", 65432}, {"127.0.0.3", 65432}, {"::1", 65433}});
  CHECK(config.client_endpoints.at("Solo") == std::vector<endpoint>{{"lab-b.example.org", 1}});
  // A name is in exactly one of the two maps.
  REQUIRE(config.clients.size() == 1);
  CHECK(config.clients.at("Telegram") == endpoint{"127.0.0.4", 65432});
  CHECK_FALSE(config.clients.contains("Fleet"));
  CHECK_FALSE(config.client_endpoints.contains("Telegram"));

  // An inline table works as a header does; no endpoints, no client_endpoints.
  CHECK(parse("Socket_connection = { Host = { IP = \"::\", Port = 0 }, Client = { F = { "
              "endpoints = [\"127.0.0.2:7\"] } } }\n")
            .client_endpoints.at("F") == std::vector<endpoint>{{"127.0.0.2", 7}});
  CHECK(parse(host_block).client_endpoints.empty());
  CHECK(comet::default_config().client_endpoints.empty());
}

TEST_CASE("config errors: endpoints", "[unit][config]") {
  const std::string fleet = host_block + "[Socket_connection.Client.Fleet]\n";  // line 4
  const std::string at_line_5 = "app.toml:5: Socket_connection.Client.Fleet.endpoints";
  SECTION("both IP/Port and endpoints") {
    REQUIRE_THROWS_WITH(
        parse(fleet + "endpoints = [\"127.0.0.3:65432\"]\nIP = \"127.0.0.4\"\nPort = 65432\n"),
        Contains(at_line_5 + ": given with IP (line 6); a client is one peer (IP and Port) or a "
                             "list of endpoints, not both: keep IP and Port, or endpoints"));
    REQUIRE_THROWS_WITH(parse(fleet + "Port = 65432\nendpoints = [\"127.0.0.3:65432\"]\n"),
                        Contains("app.toml:6: Socket_connection.Client.Fleet.endpoints: given "
                                 "with Port (line 5)"));
  }
  SECTION("an empty list") {
    REQUIRE_THROWS_WITH(
        parse(fleet + "endpoints = []\n"),
        Contains(at_line_5 + ": the list is empty; give at least one \"HOST:PORT\", e.g. "
                             "endpoints = [\"lab-a:65432\", \"127.0.0.3:65432\"], or IP and Port "
                             "for one peer"));
  }
  SECTION("not a list") {
    REQUIRE_THROWS_WITH(
        parse(fleet + "endpoints = \"127.0.0.3:65432\"\n"),
        Contains(at_line_5 + ": \"127.0.0.3:65432\" is a string; list the peers as an array of "
                             "\"HOST:PORT\" strings, e.g. endpoints = [\"lab-a:65432\", "
                             "\"127.0.0.3:65432\"]"));
  }
  SECTION("an entry that is not a string, on its own line") {
    REQUIRE_THROWS_WITH(
        parse(fleet + "endpoints = [\n  \"127.0.0.3:65432\",\n  65432,\n]\n"),
        Contains("app.toml:7: Socket_connection.Client.Fleet.endpoints[1]: 65432 is an integer; "
                 "write each endpoint as a string \"HOST:PORT\", e.g. endpoints = "
                 "[\"lab-a:65432\", \"127.0.0.3:65432\"]"));
    REQUIRE_THROWS_WITH(
        parse(fleet + "endpoints = [{ IP = \"127.0.0.3\", Port = 1 }]\n"),
        Contains(at_line_5 + "[0]: the value is a table; write each endpoint as a string") &&
            !Contains("YAML"));
  }
  SECTION("an entry that is not HOST:PORT says what is wrong") {
    const auto entry_error = [&](const std::string& entry) -> std::string {
      try {
        parse(fleet + "endpoints = [\"127.0.0.3:65432\", \"" + entry + "\"]\n");
      } catch (const config_error& e) {
        return e.what();
      }
      return "no error";
    };
    const std::string fix = "; write HOST:PORT, an address or a host name and the port the peer "
                            "listens on (1 to 65535), e.g. \"lab-a:65432\", \"127.0.0.3:65432\" "
                            "or \"[::1]:65432\"";
    CHECK(entry_error("127.0.0.3:0") ==
          at_line_5 + "[1]: \"127.0.0.3:0\" has port 0, which only lets a host pick a free port" +
              fix);
    CHECK(entry_error("lab-a") == at_line_5 + "[1]: \"lab-a\" has no port" + fix);
    CHECK_THAT(entry_error("lab-a:"), Contains("[1]: \"lab-a:\" has no port after the colon;"));
    CHECK_THAT(entry_error("lab-a:70000"),
               Contains("[1]: \"lab-a:70000\" has port 70000, out of range (1 to 65535);"));
    CHECK_THAT(entry_error("lab-a:http"),
               Contains("[1]: \"lab-a:http\" has \"http\" as its port, not a number;"));
    CHECK_THAT(entry_error("lab pc:1"),
               Contains("[1]: \"lab pc:1\" has \"lab pc\" before the port, neither an IPv4 "
                        "address nor a host name;"));
    CHECK_THAT(entry_error("::1:65432"),
               Contains("[1]: \"::1:65432\" has an IPv6 address and a port without brackets; "
                        "write \"[::1]:65432\";"));
    // "::1:80" is an address itself (80 a group of hex digits); a port was meant.
    CHECK_THAT(entry_error("::1:80"),
               Contains("[1]: \"::1:80\" reads as an IPv6 address with no port (with a port, "
                        "an IPv6 address goes in brackets: \"[::1]:80\");"));
    CHECK_THAT(entry_error("::1"),
               Contains("[1]: \"::1\" reads as an IPv6 address with no port (with a port, an "
                        "IPv6 address goes in brackets);"));
    CHECK_THAT(entry_error("fe80::1:2:3:4:5:6:65432"),
               Contains("[1]: \"fe80::1:2:3:4:5:6:65432\" has an IPv6 address and a port "
                        "without brackets; write \"[fe80::1:2:3:4:5:6]:65432\";"));
    CHECK_THAT(entry_error("a:b:1"), Contains("[1]: \"a:b:1\" has more than one colon outside "
                                              "brackets;"));
    CHECK_THAT(entry_error("[::1]"), Contains("[1]: \"[::1]\" has no port after the address;"));
    CHECK_THAT(entry_error("[127.0.0.1]:80"),
               Contains("has brackets around something other than an IPv6 address;"));
    CHECK_THAT(entry_error(":80"), Contains("has no address or host name before the port;"));
  }
  SECTION("the same endpoint twice") {
    REQUIRE_THROWS_WITH(
        parse(fleet + "endpoints = [\n  \"lab-a:65432\",\n  \"127.0.0.3:65432\",\n"
                      "  \"Lab-A:65432\",\n]\n"),
        Contains("app.toml:8: Socket_connection.Client.Fleet.endpoints[2]: \"Lab-A:65432\" is "
                 "given twice (first at line 6); a list names each endpoint once, keep one of "
                 "them"));
    REQUIRE_THROWS_WITH(parse(fleet + "endpoints = [\"[::1]:1\", \"[::1]:1\"]\n"),
                        Contains(at_line_5 + "[1]: \"[::1]:1\" is given twice (first as "
                                             "endpoints[0])"));
    // The same host on two ports is two endpoints.
    CHECK(parse(fleet + "endpoints = [\"lab-a:1\", \"lab-a:2\"]\n").client_endpoints.at("Fleet")
              .size() == 2);
  }
  SECTION("a misspelt key, and a client with neither IP nor endpoints") {
    REQUIRE_THROWS_WITH(
        parse(fleet + "endpoint = [\"lab-a:1\"]\n"),
        Contains("app.toml:5: Socket_connection.Client.Fleet.endpoint: unknown key; "
                 "Socket_connection.Client.Fleet takes only IP, Port and endpoints (did you mean "
                 "endpoints?)"));
    REQUIRE_THROWS_WITH(
        parse(fleet + "Port = 1\n"),
        Contains("app.toml:4: Socket_connection.Client.Fleet.IP: missing; add IP = \"127.0.0.1\" "
                 "(or the peer's address) to [Socket_connection.Client.Fleet], or list several "
                 "peers as endpoints = [\"lab-a:65432\", \"127.0.0.3:65432\"]"));
    // The host listens on one address: endpoints is not one of its keys.
    REQUIRE_THROWS_WITH(
        parse("[Socket_connection.Host]\nendpoints = [\"127.0.0.1:1\"]\n"),
        Contains("app.toml:2: Socket_connection.Host.endpoints: unknown key; "
                 "Socket_connection.Host takes only IP and Port"));
    REQUIRE_THROWS_WITH(parse("[Socket_connection.Host]\nPort = 1\n"),
                        Contains("missing; add IP = \"127.0.0.1\"") && !Contains("endpoints"));
  }
}

TEST_CASE("config endpoints: parse_endpoint accepts HOST:PORT and refuses the rest",
          "[unit][config]") {
  using comet::parse_endpoint;
  CHECK(parse_endpoint("127.0.0.1:65432") == endpoint{"127.0.0.1", 65432});
  CHECK(parse_endpoint("lab-a:65432") == endpoint{"lab-a", 65432});
  CHECK(parse_endpoint("lab-a.example.org.:1") == endpoint{"lab-a.example.org.", 1});
  CHECK(parse_endpoint("[::1]:65432") == endpoint{"::1", 65432});
  CHECK(parse_endpoint("[fe80::1:2]:65535") == endpoint{"fe80::1:2", 65535});
  CHECK(parse_endpoint("localhost:080") == endpoint{"localhost", 80});
  // What it prints, it reads back.
  for (const endpoint& e : {endpoint{"10.0.0.1", 7}, endpoint{"::", 9}, endpoint{"lab", 1}})
    CHECK(parse_endpoint(e.to_string()) == e);

  for (const std::string_view refused :
       {"", ":", "lab-a", "lab-a:", ":65432", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:99999999999999999999", "127.0.0.1:-1", "127.0.0.1:+1", "127.0.0.1: 1",
        "127.0.0.1:1 ", "127.0.0.1:1x", "lab pc:1", "-lab:1", "256.1.1.1:1", "::1:65432", "::1",
        "[::1]", "[::1]:", "[::1]65432", "[::1:65432", "[127.0.0.1]:1", "[lab-a]:1", "[]:1",
        "lab-a:65432:1", "[::1]:1:2"}) {
    CAPTURE(refused);
    CHECK_FALSE(parse_endpoint(refused).has_value());
  }
  // A NUL would cut inet_pton's view of the address.
  CHECK_FALSE(parse_endpoint(std::string_view("127.0.0.1\0x:1", 13)).has_value());
}

TEST_CASE("config resolve_max_age in [comet] is a duration", "[unit][config]") {
  const std::string comet_block = host_block + "[comet]\n";
  CHECK(comet::settings{}.resolve_max_age == 30s);
  CHECK(parse(host_block).framework.resolve_max_age == 30s);
  CHECK(parse(comet_block + "resolve_max_age = 2.5\n").framework.resolve_max_age == 2500ms);
  CHECK(parse(comet_block + "resolve_max_age = 600\n").framework.resolve_max_age == 600s);
  CHECK(parse(comet_block + "resolve_max_age = 0.001\n").framework.resolve_max_age == 1ms);
  const auto cfg = parse(comet_block + "resolve_max_age = 5\n");
  CHECK(comet::client_options::from_config(cfg, "Fleet").resolve_max_age == 5s);
  REQUIRE_THROWS_WITH(
      parse(comet_block + "resolve_max_age = 0\n"),
      Contains("app.toml:5: comet.resolve_max_age: 0 is out of range; use a number of seconds "
               "from 0.001 to 86400") &&
          !Contains("or 0 for"));
  REQUIRE_THROWS_WITH(parse(comet_block + "resolve_max_age = -3\n"),
                      Contains("app.toml:5: comet.resolve_max_age: -3 is out of range"));
  REQUIRE_THROWS_WITH(parse(comet_block + "resolve_max_age = 86401\n"),
                      Contains("app.toml:5: comet.resolve_max_age: 86401 is out of range"));
  REQUIRE_THROWS_WITH(
      parse(comet_block + "resolve_max_age = \"30s\"\n"),
      Contains("app.toml:5: comet.resolve_max_age: \"30s\" is a string; use a number of "
               "seconds") &&
          Contains("e.g. resolve_max_age = 30.0"));
  REQUIRE_THROWS_WITH(parse(comet_block + "resolve_maxage = 3\n"),
                      Contains("app.toml:5: comet.resolve_maxage: unknown key") &&
                          Contains("(did you mean resolve_max_age?)"));
}
