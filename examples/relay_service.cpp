// A coroutine service that relays: a `TelegramBot` message it receives goes
// on to the Telegram bridge (another host) and the bridge's answer returns to
// the sender. The handler co_awaits the onward send, so a slow bridge holds
// no thread, and a failure there (offline, timeout) becomes a
// handler_failed answer with the reason.
//
// Self-contained for the demo: it starts a stand-in bridge and the relay on
// free ports of 127.0.0.1, sends one message through, prints the answer.
#include <comet/comet.hpp>

#include <iostream>

namespace asio = boost::asio;
namespace json = boost::json;

int main() {
  comet::io_pool pool(2);

  // Stand-in for COMET's Telegram bridge: reports what it would send.
  comet::host bridge(pool.get_executor(), comet::host_options{.listen = {"127.0.0.1", 0}});
  bridge.on("TelegramBot", [](const std::string&, const json::value& value) {
    return json::value{{"delivered", value}};
  });
  const comet::endpoint bridge_at = bridge.start();

  // The relay's config; a real service reads it with comet::load_config.
  comet::config cfg;
  cfg.host = {"127.0.0.1", 0};
  cfg.clients.emplace("Telegram", bridge_at);
  comet::client_set clients(pool.get_executor(), cfg);
  comet::host relay(pool.get_executor(), cfg);
  relay.on("TelegramBot",
           [&clients](const std::string& action,
                      const json::value& value) -> asio::awaitable<json::value> {
             co_return co_await clients["Telegram"].send(action, value);
           });
  const comet::endpoint relay_at = relay.start();

  comet::client sender(pool.get_executor(), relay_at);
  const json::value answer = sender.send_sync("TelegramBot", {{"123456789", "scan done"}});
  std::cout << comet::to_json_text(answer) << '\n';

  relay.stop();
  bridge.stop();
  pool.release();
  pool.join();
}
