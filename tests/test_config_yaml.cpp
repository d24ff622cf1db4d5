// COMET's YAML configs (and JSON ones) read into the same comet::config as
// TOML, with the same checks and messages spelt in the file's own syntax.
#include <comet/config.hpp>

#include <comet/errors.hpp>

#include <catch2/catch.hpp>

#include "temp_file.hpp"

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using Catch::Contains;
using comet::config_format;
using comet::endpoint;
using comet::test::temp_file;

namespace {

comet::config yaml(std::string_view text) {
  return comet::parse_config(text, "lab.yaml", config_format::yaml);
}
comet::config json_config(std::string_view text) {
  return comet::parse_config(text, "lab.json", config_format::json);
}

// The message of the config error `text` makes, read as a file named "f".
std::string message(std::string_view text, config_format format) {
  try {
    comet::parse_config(text, "f", format);
  } catch (const comet::config_error& e) {
    return e.what();
  }
  return "no error";
}

// A settings.yml as COMET ships it: the block at the top level among the
// application's own keys.
const std::string comet_settings = R"(# COMET main settings
Settings_version: 1.0
Telegram:
  token: "123:abc"
  chat_ids: [1, 2]
Socket_connection:
  Host:
    IP: 127.0.0.1
    Port: 65432
  Client:
    Telegram:
      IP: 127.0.0.4
      Port: 65433
    "Lab PC":
      IP: "::1"
      Port: 65434
Devices:
  - name: camera
)";


}  // namespace

TEST_CASE("a COMET settings.yml reads as it is", "[unit]") {
  const comet::config config = yaml(comet_settings);
  CHECK(config.source == "lab.yaml");
  CHECK(config.host == endpoint{"127.0.0.1", 65432});
  REQUIRE(config.clients.size() == 2);
  CHECK(config.clients.at("Telegram") == endpoint{"127.0.0.4", 65433});
  CHECK(config.clients.at("Lab PC") == endpoint{"::1", 65434});
  CHECK(config.framework == comet::settings{});
}

TEST_CASE("the block may sit under settings:, and errors then name that path", "[unit]") {
  const std::string nested = "settings:\n  Socket_connection:\n    Host:\n      IP: 0.0.0.0\n"
                             "      Port: 0\n  comet:\n    io_threads: 3\n";
  const comet::config config = yaml(nested);
  CHECK(config.host == endpoint{"0.0.0.0", 0});
  CHECK(config.framework.io_threads == 3);

  REQUIRE_THROWS_WITH(
      yaml("settings:\n  Socket_connection:\n    Host:\n      IP: 127.0.0.1\n      Port: 1e9\n"),
      Contains("lab.yaml:5: settings.Socket_connection.Host.Port: 1e9 is a float; use an "
               "integer between 0 and 65535, e.g. Port: 65432"));
}

TEST_CASE("framework settings in YAML: floats, integers and their checks", "[unit]") {
  const comet::config config = yaml(
      "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 1}\n"
      "comet:\n  io_threads: 4\n  connect_timeout: 1.5\n  request_timeout: 60\n"
      "  shutdown_timeout: .25\n  max_content_length: 0x400\n");
  CHECK(config.framework.io_threads == 4);
  CHECK(config.framework.connect_timeout == 1500ms);
  CHECK(config.framework.request_timeout == 60s);
  CHECK(config.framework.shutdown_timeout == 250ms);
  CHECK(config.framework.max_content_length == 1024);

  const std::string head = "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 1}\ncomet:\n";
  REQUIRE_THROWS_WITH(yaml(head + "  io_threads: yes\n"),
                      Contains("lab.yaml:4: comet.io_threads: yes is a boolean; use a whole number "
                               "of threads from 1 to 256, e.g. io_threads: 2"));
  REQUIRE_THROWS_WITH(yaml(head + "  request_timeout: .nan\n"),
                      Contains("lab.yaml:4: comet.request_timeout: .nan is out of range"));
  REQUIRE_THROWS_WITH(yaml(head + "  connect_timeout: \"5\"\n"),
                      Contains("lab.yaml:4: comet.connect_timeout: \"5\" is a string"));
  REQUIRE_THROWS_WITH(yaml(head + "  io_thread: 2\n"),
                      Contains("lab.yaml:4: comet.io_thread: unknown key; comet takes only "
                               "io_threads") &&
                          Contains("(did you mean io_threads?)"));
  REQUIRE_THROWS_WITH(yaml(head + "  max_content_length: 99999999999999999999999\n"),
                      Contains("99999999999999999999999 is out of range"));
}

TEST_CASE("host limits and the client pool in YAML", "[unit]") {
  const std::string head = "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 1}\ncomet:\n";
  const comet::config config =
      yaml(head + "  max_in_flight: 0x10\n  write_buffer_limit: 8192\n  max_connections: 100\n"
                  "  idle_timeout: 0\n  handler_timeout: .5\n  keep_alive: yes\n"
                  "  max_connections_per_peer: 2\n");
  CHECK(config.framework.max_in_flight == 16);
  CHECK(config.framework.write_buffer_limit == 8192);
  CHECK(config.framework.max_connections == 100);
  CHECK(config.framework.idle_timeout == 0ms);
  CHECK(config.framework.handler_timeout == 500ms);
  CHECK(config.framework.keep_alive);  // YAML 1.1's yes, as PyYAML reads it
  CHECK(config.framework.max_connections_per_peer == 2);
  CHECK_FALSE(yaml(head + "  keep_alive: off\n").framework.keep_alive);
  CHECK(yaml(head + "  keep_alive: True\n").framework.keep_alive);

  REQUIRE_THROWS_WITH(
      yaml(head + "  keep_alive: \"yes\"\n"),
      Contains("lab.yaml:4: comet.keep_alive: \"yes\" is a string; use true or false, e.g. "
               "keep_alive: true"));
  REQUIRE_THROWS_WITH(
      yaml(head + "  idle_timeout: -.inf\n"),
      Contains("lab.yaml:4: comet.idle_timeout: -.inf is out of range; use a number of seconds "
               "from 0.001 to 86400, or 0 for never"));
  REQUIRE_THROWS_WITH(
      yaml(head + "  write_buffer_limit: 1024\n"),
      Contains("lab.yaml:4: comet.write_buffer_limit: 1024 is out of range; use a whole number "
               "of bytes from 4096 to 4294967296"));
  REQUIRE_THROWS_WITH(
      yaml(head + "  max_connections_per_peer: ~\n"),
      Contains("lab.yaml:4: comet.max_connections_per_peer: the value is empty (null); use a "
               "whole number of connections from 1 to 1024, e.g. max_connections_per_peer: 4"));
}

TEST_CASE("YAML errors give the line, the key path and a fix spelt in YAML", "[unit]") {
  SECTION("IP and Port directly under Client, as one of COMET's examples has it") {
    REQUIRE_THROWS_WITH(
        yaml("Socket_connection:\n  Host:\n    IP: 127.0.0.1\n    Port: 65432\n  Client:\n"
             "    IP: 127.0.0.4\n    Port: 65432\n"),
        Contains("lab.yaml:6: Socket_connection.Client: give each client a name, e.g. Client: "
                 "{Telegram: {IP: 127.0.0.4, Port: 65432}}, not IP/Port directly under Client"));
  }
  SECTION("a port out of range") {
    REQUIRE_THROWS_WITH(
        yaml("Socket_connection:\n  Host:\n    IP: 127.0.0.1\n    Port: 70000\n"),
        Contains("lab.yaml:4: Socket_connection.Host.Port: 70000 is out of range; use a port "
                 "between 0 and 65535"));
  }
  SECTION("a quoted port is a string, as in COMET") {
    REQUIRE_THROWS_WITH(
        yaml("Socket_connection:\n  Host:\n    IP: 127.0.0.1\n    Port: \"65432\"\n"),
        Contains("lab.yaml:4: Socket_connection.Host.Port: \"65432\" is a string"));
  }
  SECTION("a missing key names the mapping's line and shows the YAML to add") {
    REQUIRE_THROWS_WITH(
        yaml("Socket_connection:\n  Host:\n    IP: 127.0.0.1\n"),
        Contains("lab.yaml:2: Socket_connection.Host.Port: missing; add Port: 65432 (a port "
                 "between 0 and 65535) to Socket_connection.Host"));
  }
  SECTION("an empty Host") {
    REQUIRE_THROWS_WITH(
        yaml("Socket_connection:\n  Host:\n"),
        Contains("lab.yaml:2: Socket_connection.Host: the value is empty (null); make it a "
                 "mapping: Socket_connection.Host with IP and Port"));
  }
  SECTION("a host name, as COMET's settings.yml may have") {
    CHECK(yaml("Socket_connection:\n  Host: {IP: localhost, Port: 1}\n").host.ip == "localhost");
    REQUIRE_THROWS_WITH(yaml("Socket_connection:\n  Host: {IP: \"-lab\", Port: 1}\n"),
                        Contains("lab.yaml:2: Socket_connection.Host.IP: \"-lab\" is a "
                                 "string but neither an IPv4 or IPv6 address nor a host name"));
  }
  SECTION("a key given twice") {
    REQUIRE_THROWS_WITH(
        yaml("Socket_connection:\n  Host:\n    IP: 127.0.0.1\n    Port: 1\n    Port: 2\n"),
        Contains("lab.yaml:5: Socket_connection.Host.Port: given twice (first at line 4); keep "
                 "one of them"));
  }
  SECTION("a client given twice") {
    REQUIRE_THROWS_WITH(
        yaml("Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 1}\n  Client:\n"
             "    A: {IP: 127.0.0.1, Port: 2}\n    A: {IP: 127.0.0.1, Port: 3}\n"),
        Contains("lab.yaml:5: Socket_connection.Client.A: given twice (first at line 4)"));
  }
  SECTION("a sequence where a mapping belongs") {
    REQUIRE_THROWS_WITH(yaml("Socket_connection:\n  - Host\n"),
                        Contains("lab.yaml:1: Socket_connection: the value is a sequence; make "
                                 "it a mapping: put IP and Port under Socket_connection.Host"));
  }
  SECTION("no block, a misspelt one, an empty file, a scalar file") {
    REQUIRE_THROWS_WITH(yaml("Other: 1\n"),
                        Contains("lab.yaml: no Socket_connection block: add "
                                 "Socket_connection.Host with IP and Port") &&
                            Contains("under settings"));
    REQUIRE_THROWS_WITH(yaml("a: 1\nsocket_connections:\n  Host: {}\n"),
                        Contains("found \"socket_connections\" at line 2; did you mean "
                                 "Socket_connection?"));
    REQUIRE_THROWS_WITH(yaml(""), Contains("lab.yaml: no Socket_connection block"));
    REQUIRE_THROWS_WITH(yaml("just text\n"),
                        Contains("lab.yaml:1: \"just text\" is a string; a config is a mapping"));
  }
  SECTION("a syntax error gives line and column") {
    REQUIRE_THROWS_AS(yaml("Socket_connection:\n  Host: [1\n"), comet::config_error);
    REQUIRE_THROWS_WITH(yaml("Socket_connection:\n  Host: {IP: 1\nx: 2\n"),
                        Contains("lab.yaml:") && Contains(": YAML syntax error: ") &&
                            Contains("fix the YAML at that line and column"));
  }
}

TEST_CASE("JSON configs: the same keys and checks, errors by key path", "[unit]") {
  const comet::config config = json_config(R"({
    // the lab's peers
    "Socket_connection": {
      "Host": {"IP": "127.0.0.1", "Port": 65432},
      "Client": {"Telegram": {"IP": "127.0.0.4", "Port": 65432},},
    },
    "comet": {"request_timeout": 2.5, "io_threads": 1}
  })");
  CHECK(config.host == endpoint{"127.0.0.1", 65432});
  CHECK(config.clients.at("Telegram") == endpoint{"127.0.0.4", 65432});
  CHECK(config.framework.request_timeout == 2500ms);
  CHECK(config.framework.io_threads == 1);

  REQUIRE_THROWS_WITH(
      json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 70000}}})"),
      Contains("lab.json: Socket_connection.Host.Port: 70000 is out of range"));
  REQUIRE_THROWS_WITH(
      json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1"}}})"),
      Contains("lab.json: Socket_connection.Host.Port: missing; add \"Port\": 65432"));
  REQUIRE_THROWS_WITH(
      json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1},
                   "Client": {"IP": "127.0.0.4", "Port": 2}}})"),
      Contains("give each client a name, e.g. \"Client\": {\"Telegram\": {\"IP\": "
               "\"127.0.0.4\", \"Port\": 65432}}"));
  REQUIRE_THROWS_WITH(
      json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1}},
                   "comet": {"io_threads": 2.0}})"),
      Contains("lab.json: comet.io_threads: 2.0 is a float"));
  REQUIRE_THROWS_WITH(
      json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1}},
                   "comet": {"keep_alive": 1}})"),
      Contains("lab.json: comet.keep_alive: 1 is an integer; use true or false, e.g. "
               "\"keep_alive\": true"));
  CHECK(json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1}},
                        "comet": {"keep_alive": true, "idle_timeout": 0}})")
            .framework.keep_alive);
  REQUIRE_THROWS_WITH(json_config("{\n  \"Socket_connection\": {\n    \"Host\": ]\n}"),
                      Contains("lab.json:3:") && Contains("JSON syntax error"));
  REQUIRE_THROWS_WITH(json_config("[]"), Contains("the value is an array; a config is an object"));
  // A key given twice is refused, as in YAML and TOML (Boost.JSON's own
  // objects would keep the last one silently).
  REQUIRE_THROWS_WITH(
      json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1, "Port": 2}}})"),
      Contains("lab.json: Socket_connection.Host.Port: given twice; keep one of them"));
  REQUIRE_THROWS_WITH(
      json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1}},
                   "comet": {"io_threads": 1}, "comet": {"io_threads": 2}})"),
      Contains("lab.json: comet: given twice"));
  // Other top-level keys, arrays among them, are the application's.
  CHECK(json_config(R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1}},
                        "app": {"sensors": [1, {"a": [2]}], "x": null}})")
            .host.port == 1);
}

TEST_CASE("load_config picks the format from the extension", "[unit]") {
  const temp_file yml(comet_settings, ".yml");
  CHECK(comet::load_config(yml.path()).clients.at("Telegram").port == 65433);
  const temp_file yaml_file("Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 70000}\n",
                            ".yaml");
  REQUIRE_THROWS_WITH(comet::load_config(yaml_file.path()),
                      Contains(yaml_file.path().string() + ":2: Socket_connection.Host.Port"));
  const temp_file json_file(R"({"Socket_connection": {"Host": {"IP": "::", "Port": 9}}})",
                            ".json");
  CHECK(comet::load_config(json_file.path()).host == endpoint{"::", 9});

  CHECK(comet::config_format_of("a/settings.yml") == config_format::yaml);
  CHECK(comet::config_format_of("LAB.YAML") == config_format::yaml);
  CHECK(comet::config_format_of("lab.json") == config_format::json);
  CHECK(comet::config_format_of("lab.toml") == config_format::toml);
  CHECK(comet::config_format_of("lab") == config_format::toml);
}

TEST_CASE("the three formats word the same problem the same way", "[unit]") {
  const std::string toml = message(
      "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 1\n[comet]\nio_threads = 0\n",
      config_format::toml);
  const std::string yml = message(
      "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 1}\ncomet:\n  io_threads: 0\n",
      config_format::yaml);
  const std::string json = message(
      R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1}}, "comet": {"io_threads": 0}})",
      config_format::json);
  const std::string expected =
      "comet.io_threads: 0 is out of range; use a whole number of threads from 1 to 256";
  CHECK(toml == "f:5: " + expected);
  CHECK(yml == "f:4: " + expected);
  CHECK(json == "f: " + expected);
}

TEST_CASE("config endpoints in YAML: block and flow sequences, errors with their lines",
          "[unit][config]") {
  const std::string head = "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 1}\n  Client:\n"
                           "    Fleet:\n";  // Fleet at line 4
  const comet::config config =
      yaml(head + "      endpoints:\n        - lab-a:65432\n        - 127.0.0.3:65432\n"
                  "        - \"[::1]:65433\"\n    Flow:\n"
                  "      endpoints: [lab-b:1, 127.0.0.5:2, \"[::1]:3\"]\n"
                  "    Telegram: {IP: 127.0.0.4, Port: 65432}\n"
                  "comet:\n  resolve_max_age: .5\n");
  CHECK(config.client_endpoints.at("Fleet") ==
        std::vector<endpoint>{{"lab-a", 65432}, {"127.0.0.3", 65432}, {"::1", 65433}});
  CHECK(config.client_endpoints.at("Flow") ==
        std::vector<endpoint>{{"lab-b", 1}, {"127.0.0.5", 2}, {"::1", 3}});
  CHECK(config.clients.size() == 1);
  CHECK(config.clients.at("Telegram") == endpoint{"127.0.0.4", 65432});
  CHECK(config.framework.resolve_max_age == 500ms);

  SECTION("both IP/Port and endpoints") {
    REQUIRE_THROWS_WITH(yaml(head + "      IP: 127.0.0.4\n      endpoints: [lab-a:1]\n"),
                        Contains("lab.yaml:6: Socket_connection.Client.Fleet.endpoints: given "
                                 "with IP (line 5); a client is one peer (IP and Port) or a list "
                                 "of endpoints, not both"));
  }
  SECTION("an empty list, and an empty value") {
    REQUIRE_THROWS_WITH(yaml(head + "      endpoints: []\n"),
                        Contains("lab.yaml:5: Socket_connection.Client.Fleet.endpoints: the list "
                                 "is empty; give at least one \"HOST:PORT\", e.g. endpoints: "
                                 "[\"lab-a:65432\", \"127.0.0.3:65432\"]"));
    REQUIRE_THROWS_WITH(yaml(head + "      endpoints:\n"),
                        Contains("lab.yaml:5: Socket_connection.Client.Fleet.endpoints: the value "
                                 "is empty (null); list the peers as a sequence of \"HOST:PORT\" "
                                 "strings"));
  }
  SECTION("entries that are not strings, with what YAML made of them") {
    REQUIRE_THROWS_WITH(
        yaml(head + "      endpoints:\n        - lab-a:1\n        - 65432\n"),
        Contains("lab.yaml:7: Socket_connection.Client.Fleet.endpoints[1]: 65432 is an integer; "
                 "write each endpoint as a string \"HOST:PORT\", e.g. endpoints: "
                 "[\"lab-a:65432\", \"127.0.0.3:65432\"]"));
    REQUIRE_THROWS_WITH(
        yaml(head + "      endpoints:\n        - lab-a: 65432\n"),
        Contains("lab.yaml:6: Socket_connection.Client.Fleet.endpoints[0]: the value is a "
                 "mapping; write each endpoint as a string") &&
            Contains("write no space after the colon, or quote the entry"));
    REQUIRE_THROWS_WITH(
        yaml(head + "      endpoints:\n        - [lab-a:65432]\n"),
        Contains("lab.yaml:6: Socket_connection.Client.Fleet.endpoints[0]: the value is a "
                 "sequence") &&
            Contains("quote an IPv6 entry, \"[::1]:65432\""));
    // Unquoted, YAML cannot read an IPv6 entry at all.
    REQUIRE_THROWS_WITH(yaml(head + "      endpoints:\n        - [::1]:65432\n"),
                        Contains("lab.yaml:6:") && Contains("YAML syntax error"));
  }
  SECTION("an entry that is not HOST:PORT") {
    REQUIRE_THROWS_WITH(
        yaml(head + "      endpoints:\n        - lab-a:1\n        - lab-b:0\n"),
        Contains("lab.yaml:7: Socket_connection.Client.Fleet.endpoints[1]: \"lab-b:0\" has port "
                 "0, which only lets a host pick a free port; write HOST:PORT") &&
            Contains("e.g. \"lab-a:65432\""));
    REQUIRE_THROWS_WITH(yaml(head + "      endpoints: [lab-a]\n"),
                        Contains("lab.yaml:5: Socket_connection.Client.Fleet.endpoints[0]: "
                                 "\"lab-a\" has no port;"));
  }
  SECTION("the same endpoint twice") {
    REQUIRE_THROWS_WITH(
        yaml(head + "      endpoints:\n        - 127.0.0.3:1\n        - lab-a:1\n"
                    "        - 127.0.0.3:1\n"),
        Contains("lab.yaml:8: Socket_connection.Client.Fleet.endpoints[2]: \"127.0.0.3:1\" is "
                 "given twice (first at line 6)"));
  }
  SECTION("resolve_max_age") {
    REQUIRE_THROWS_WITH(
        yaml("Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 1}\ncomet:\n"
             "  resolve_max_age: .nan\n"),
        Contains("lab.yaml:4: comet.resolve_max_age: .nan is out of range; use a number of "
                 "seconds from 0.001 to 86400"));
  }
}

TEST_CASE("config endpoints in JSON: the same key and checks, errors by key path",
          "[unit][config]") {
  const std::string head = R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1},
    "Client": {"Fleet": )";
  const auto with_fleet = [&](std::string_view fleet, std::string_view comet = "{}") {
    return json_config(head + std::string(fleet) + "}}, \"comet\": " + std::string(comet) + "}");
  };
  const comet::config config =
      with_fleet(R"({"endpoints": ["lab-a:65432", "127.0.0.3:65432", "[::1]:65433",],},
                    "Telegram": {"IP": "127.0.0.4", "Port": 65432})",
                 R"({"resolve_max_age": 45})");
  CHECK(config.client_endpoints.at("Fleet") ==
        std::vector<endpoint>{{"lab-a", 65432}, {"127.0.0.3", 65432}, {"::1", 65433}});
  CHECK(config.clients.size() == 1);
  CHECK(config.clients.at("Telegram") == endpoint{"127.0.0.4", 65432});
  CHECK(config.framework.resolve_max_age == 45s);

  const std::string path = "lab.json: Socket_connection.Client.Fleet.endpoints";
  REQUIRE_THROWS_WITH(with_fleet(R"({"Port": 2, "endpoints": ["lab-a:1"]})"),
                      Contains(path + ": given with Port; a client is one peer (IP and Port) "
                                      "or a list of endpoints, not both"));
  REQUIRE_THROWS_WITH(with_fleet(R"({"endpoints": []})"),
                      Contains(path + ": the list is empty; give at least one \"HOST:PORT\", "
                                      "e.g. \"endpoints\": [\"lab-a:65432\", \"127.0.0.3:65432\"]"));
  REQUIRE_THROWS_WITH(with_fleet(R"({"endpoints": {"lab-a": 1}})"),
                      Contains(path + ": the value is an object; list the peers as an array"));
  REQUIRE_THROWS_WITH(
      with_fleet(R"({"endpoints": ["lab-a:1", null]})"),
      Contains(path + "[1]: the value is empty (null); write each endpoint as a string") &&
          !Contains("YAML"));
  REQUIRE_THROWS_WITH(with_fleet(R"({"endpoints": [["lab-a:1"]]})"),
                      Contains(path + "[0]: the value is an array;"));
  REQUIRE_THROWS_WITH(with_fleet(R"({"endpoints": ["lab-a:1", "lab-b:65536"]})"),
                      Contains(path + "[1]: \"lab-b:65536\" has port 65536, out of range (1 to "
                                      "65535); write HOST:PORT"));
  REQUIRE_THROWS_WITH(with_fleet(R"({"endpoints": ["lab-a:1", "LAB-A:1"]})"),
                      Contains(path + "[1]: \"LAB-A:1\" is given twice (first as endpoints[0])"));
  REQUIRE_THROWS_WITH(with_fleet(R"({"endpoints": ["lab-a:1"]})", R"({"resolve_max_age": 0})"),
                      Contains("lab.json: comet.resolve_max_age: 0 is out of range"));
}

TEST_CASE("config endpoints: TOML, YAML and JSON word an endpoint problem the same way",
          "[unit][config]") {
  const std::string toml = message(
      "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 1\n"
      "[Socket_connection.Client.F]\nendpoints = [\"::1:80\"]\n",
      config_format::toml);
  const std::string yml = message(
      "Socket_connection:\n  Host: {IP: 127.0.0.1, Port: 1}\n  Client:\n"
      "    F: {endpoints: [\"::1:80\"]}\n",
      config_format::yaml);
  const std::string json = message(
      R"({"Socket_connection": {"Host": {"IP": "127.0.0.1", "Port": 1},
          "Client": {"F": {"endpoints": ["::1:80"]}}}})",
      config_format::json);
  const std::string expected =
      "Socket_connection.Client.F.endpoints[0]: \"::1:80\" reads as an IPv6 address with no "
      "port (with a port, an IPv6 address goes in brackets: \"[::1]:80\"); write HOST:PORT, an address or a host name and the port the "
      "peer listens on (1 to 65535), e.g. \"lab-a:65432\", \"127.0.0.3:65432\" or \"[::1]:65432\"";
  CHECK(toml == "f:5: " + expected);
  CHECK(yml == "f:4: " + expected);
  CHECK(json == "f: " + expected);
}
