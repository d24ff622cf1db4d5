// Connections stay on their thread (issue 21, item 4): with one thread to
// each context, a connection's handlers (plain, coroutine, tagged
// coroutine), its request_context::executor and the keep-alive sends its
// handlers make all run on the thread of the context it was given.
#include "support.hpp"

#include <set>

using namespace comet;
using namespace comet::test;

namespace {

std::string this_thread_name() {
  return std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
}

// Whether `ex` is an io_context's executor whose context runs this thread.
bool runs_here(const asio::any_io_executor& ex) {
  const auto* e = ex.target<asio::io_context::executor_type>();
  return e && e->running_in_this_thread();
}

// Each answer says which thread ran the handler, and whether the
// request's executor is that thread's context.
json::value where(const request_context& ctx) {
  return json::object{{"thread", this_thread_name()}, {"executor_here", runs_here(ctx.executor)}};
}

void add_where_handlers(host& h) {
  h.on("plain", [](const std::string&, const json::value&, const request_context& ctx) { return where(ctx); });
  h.on("coroutine", [](const std::string&, const json::value&,
                       const request_context& ctx) -> asio::awaitable<json::value> {
    // Suspends once: the handler resumes where its executor runs it.
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(1));
    co_await t.async_wait(asio::use_awaitable);
    co_return where(ctx);
  });
}

json::value result_of(const std::string& frame) {
  return json::parse(split(frame).content).at("result");
}

// On each of `count` connections, a plain request, an ordered coroutine and
// a tagged coroutine; each connection's three answers came from one thread,
// whose context is the request's executor. Returns the threads seen.
std::set<std::string> threads_of_connections(const endpoint& at, int count) {
  std::set<std::string> seen;
  for (int i = 0; i < count; ++i) {
    raw_peer peer(at);
    std::set<std::string> mine;
    peer.write(request_frame("plain", nullptr, true));
    const auto plain = result_of(peer.read_frame());
    peer.write(request_frame("coroutine", nullptr, true));
    const auto ordered = result_of(peer.read_frame());
    peer.write(tagged(7, "coroutine", nullptr));
    const auto tagged_answer = result_of(peer.read_frame());
    for (const auto* r : {&plain, &ordered, &tagged_answer}) {
      CHECK(r->at("executor_here").as_bool());
      mine.insert(std::string(r->at("thread").as_string()));
    }
    CHECK(mine.size() == 1);
    seen.insert(mine.begin(), mine.end());
  }
  return seen;
}

}  // namespace

TEST_CASE("in an io_pool of one thread per context, a connection and its handlers stay on its thread",
          "[affinity]") {
  io_pool pool(2, io_pool_layout::context_per_thread);
  host_options o;
  o.listen = {"127.0.0.1", 0};
  host h(pool, o);
  add_where_handlers(h);
  const endpoint at = h.start();
  // Connections go to the contexts in turn: four of them use both threads.
  CHECK(threads_of_connections(at, 4).size() == 2);
}

TEST_CASE("a host over the program's own per-thread contexts spreads its connections over them",
          "[affinity]") {
  asio::io_context first(1), second(1);
  auto keep_first = asio::make_work_guard(first);
  auto keep_second = asio::make_work_guard(second);
  std::string first_thread, second_thread;
  std::promise<void> first_named, second_named;
  std::thread a([&] {
    first_thread = this_thread_name();
    first_named.set_value();
    first.run();
  });
  std::thread b([&] {
    second_thread = this_thread_name();
    second_named.set_value();
    second.run();
  });
  first_named.get_future().wait();
  second_named.get_future().wait();
  {
    host_options o;
    o.listen = {"127.0.0.1", 0};
    host h(std::vector<asio::any_io_executor>{first.get_executor(), second.get_executor()}, o);
    add_where_handlers(h);
    const endpoint at = h.start();
    CHECK(threads_of_connections(at, 4) == std::set<std::string>{first_thread, second_thread});
    h.stop();
    CHECK(wait_until([&] { return h.stats().connections_open == 0; }));
  }
  keep_first.reset();
  keep_second.reset();
  a.join();
  b.join();
}

TEST_CASE("a keep-alive client on a pool of one thread per context sends from each context's own thread",
          "[affinity]") {
  host_fixture backend(1);
  add_echo(backend.server);
  const endpoint backend_at = backend.start();

  io_pool pool(2, io_pool_layout::context_per_thread);
  client_options co;
  co.keep_alive = true;
  client relay_to(pool, backend_at, co);
  host_options o;
  o.listen = {"127.0.0.1", 0};
  host front(pool, o);
  front.on("relay", [&relay_to](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    const std::string before = this_thread_name();
    const json::value echoed = co_await relay_to.send("echo", v);
    co_return json::object{{"before", before}, {"after", this_thread_name()}, {"echoed", echoed}};
  });
  const endpoint at = front.start();

  std::set<std::string> threads;
  for (int i = 0; i < 4; ++i) {
    raw_peer peer(at);
    for (std::uint64_t id = 1; id <= 3; ++id) {
      peer.write(id == 1 ? request_frame("relay", static_cast<std::int64_t>(i), true)
                         : tagged(id, "relay", static_cast<std::int64_t>(i)));
      const auto r = result_of(peer.read_frame());
      CHECK(r.at("echoed") == json::value(i));
      CHECK(r.at("before") == r.at("after"));
      threads.insert(std::string(r.at("before").as_string()));
    }
  }
  CHECK(threads.size() == 2);
  // Each context's sends went through its own pool: one connection each.
  CHECK(relay_to.stats().connects == 2);
}
