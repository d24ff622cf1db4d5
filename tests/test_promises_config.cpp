// Config promises of docs/configuration.md and README.md that no other test
// kept (issue 14, item 3): keys given twice in TOML, YAML's plain scalars,
// and a table one edit from the block's names.
#include <comet/config.hpp>

#include <catch2/catch.hpp>

#include <string>

using namespace comet;
using namespace std::chrono_literals;
using Catch::Contains;

namespace {

const std::string toml_block = "[Socket_connection.Host]\nIP = \"127.0.0.1\"\nPort = 1\n";
const std::string yaml_block = "Socket_connection:\n  Host:\n    IP: 127.0.0.1\n    Port: 1\n";

config toml(const std::string& text) { return parse_config(text, "lab.toml", config_format::toml); }
config yaml(const std::string& text) { return parse_config(text, "lab.yaml", config_format::yaml); }

}  // namespace

// configuration.md: "Inside Socket_connection and comet every key is
// checked: ... and so is a key given twice." (YAML and JSON: test_config_yaml.cpp.)
TEST_CASE("a TOML key or table given twice is refused with its line", "[promises][config]") {
  REQUIRE(toml(toml_block).host.port == 1);
  CHECK_THROWS_AS(toml(toml_block + "Port = 2\n"), config_error);
  CHECK_THROWS_WITH(toml(toml_block + "Port = 2\n"), Contains("lab.toml:4"));
  CHECK_THROWS_WITH(toml(toml_block + "[comet]\nkeep_alive = true\nkeep_alive = false\n"),
                    Contains("lab.toml:6") && Contains("keep_alive"));
  CHECK_THROWS_WITH(toml(toml_block + "[comet]\nkeep_alive = true\n[comet]\nio_threads = 3\n"),
                    Contains("lab.toml:6") && Contains("'comet'"));
  CHECK_THROWS_WITH(
      toml(toml_block + "[Socket_connection.Client.A]\nIP = \"127.0.0.1\"\nPort = 2\n"
                        "[Socket_connection.Client.A]\nIP = \"127.0.0.1\"\nPort = 3\n"),
      Contains("lab.toml:7"));
}

// configuration.md, Types in YAML: `1e3` a float, yes/no/on/off booleans,
// `~`/`null`/nothing null, a quoted scalar always a string.
TEST_CASE("YAML plain scalars no, on, 1e3 and null read as documented", "[promises][config]") {
  const std::string comet = yaml_block + "comet:\n";
  CHECK(yaml(comet + "  keep_alive: on\n").framework.keep_alive);
  CHECK(yaml(comet + "  keep_alive: yes\n").framework.keep_alive);
  CHECK_FALSE(yaml(comet + "  keep_alive: on\n  tls: no\n").framework.tls.enabled);
  const auto off = yaml(comet + "  keep_alive: no\n");
  CHECK_FALSE(off.framework.keep_alive);
  CHECK_FALSE(yaml(comet + "  keep_alive: off\n").framework.keep_alive);
  // 1e3 is a float: seconds, kept to the millisecond.
  CHECK(yaml(comet + "  request_timeout: 1e3\n").framework.request_timeout == 1000000ms);
  CHECK(yaml(comet + "  connect_timeout: 2.5e-1\n").framework.connect_timeout == 250ms);
  // ...and not an integer: a count refuses it.
  CHECK_THROWS_WITH(yaml(comet + "  io_threads: 1e3\n"), Contains("comet.io_threads"));
  // null, ~ and nothing are null: not a value.
  for (const std::string null : {"null", "~", "Null", ""}) {
    INFO("keep_alive: '" << null << "'");
    CHECK_THROWS_WITH(yaml(comet + "  keep_alive: " + null + "\n"),
                      Contains("lab.yaml:6: comet.keep_alive") && Contains("the value is empty (null)"));
  }
  // Quoted, each is a string.
  for (const std::string quoted : {"\"no\"", "'on'", "\"null\""}) {
    INFO("keep_alive: " << quoted);
    CHECK_THROWS_WITH(yaml(comet + "  keep_alive: " + quoted + "\n"),
                      Contains("comet.keep_alive") && Contains("string"));
  }
  CHECK_THROWS_WITH(yaml(comet + "  request_timeout: \"1e3\"\n"), Contains("string"));
}

// 7ccdc50: other top-level tables are the application's and ignored, but
// one a single edit from `comet` or `Socket_connection` is refused with a
// "did you mean", since its settings would be lost without a word.
TEST_CASE("a top-level table one edit from comet or Socket_connection is refused",
          "[promises][config]") {
  CHECK_THROWS_WITH(toml(toml_block + "[comnet]\nkeep_alive = true\n"),
                    Contains("lab.toml:4: comnet: unknown table (did you mean comet?)"));
  CHECK_THROWS_WITH(toml(toml_block + "[Socket_connections.Client.A]\nIP = \"127.0.0.1\"\nPort = 2\n"),
                    Contains("Socket_connections: unknown table (did you mean Socket_connection?)"));
  CHECK_THROWS_WITH(yaml(yaml_block + "Comet:\n  keep_alive: true\n"),
                    Contains("lab.yaml:5: Comet: unknown mapping (did you mean comet?)"));
  // Two edits or more away: the application's own, ignored.
  CHECK_NOTHROW(toml(toml_block + "[common]\nx = 1\n[app]\ncomet = 1\n"));
  CHECK_NOTHROW(yaml(yaml_block + "Telegram:\n  token: x\n"));
}
