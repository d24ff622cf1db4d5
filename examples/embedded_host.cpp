// Embedding: the program owns its io_context and runs it on its own thread;
// the host is one more piece of async work beside the program's own (here a
// heartbeat timer). comet-net starts no threads, and its log lines go to the
// program's logger through a sink.
#include <comet/comet.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <iostream>

namespace asio = boost::asio;
namespace json = boost::json;
using namespace std::chrono_literals;

// The program's own work: a beat every 10 ms until told to stop.
asio::awaitable<void> heartbeat(int& beats, const bool& stopping) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  while (!stopping) {
    timer.expires_after(10ms);
    co_await timer.async_wait(asio::use_awaitable);
    ++beats;
  }
}

int main() {
  comet::set_log_sink([](comet::log_level level, std::string_view message) {
    std::cout << "[app log, " << comet::to_string(level) << "] " << message << '\n';
  });

  asio::io_context io;  // one thread: handlers and the heartbeat never race
  int beats = 0;
  bool stopping = false;

  comet::host host(io.get_executor(), comet::host_options{.listen = {"127.0.0.1", 0}});
  host.on("beats", [&beats](const std::string&, const json::value&) { return beats; });
  const comet::endpoint at = host.start();

  asio::co_spawn(io, heartbeat(beats, stopping), asio::detached);

  // Something that uses the host (here the program itself), then ends the program.
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        comet::client self(io.get_executor(), at);
        asio::steady_timer pause(io);
        for (int i = 0; i < 3; ++i) {
          pause.expires_after(30ms);
          co_await pause.async_wait(asio::use_awaitable);
          const json::value answer = co_await self.send("beats", nullptr);
          std::cout << "beats so far: " << comet::to_json_text(answer) << '\n';
        }
        stopping = true;
        co_await host.async_stop();
      },
      asio::detached);

  io.run();  // returns when the host, the heartbeat and the client are done
  std::cout << "done after " << beats << " beats\n";
}
