#include <comet/handlers.hpp>

#include "support.hpp"

using namespace comet;
using namespace comet::test;

namespace {

response_message dispatch(const action_router& router, const std::string& action,
                          const json::value& value) {
  asio::io_context io;
  request_context context{{"127.0.0.1", 5555}, std::nullopt, io.get_executor()};
  auto done = asio::co_spawn(io, router.dispatch(action, value, context), asio::use_future);
  io.run();
  return decode_response(done.get().content);
}

}  // namespace

TEST_CASE("plain and awaitable handlers of every supported shape answer", "[unit][handlers]") {
  action_router r;
  r.on("value", [](const std::string&, const json::value& v) { return v; });
  r.on("string", [](const std::string& a, const json::value&) { return "got " + a; });
  r.on("int", [](std::string_view, const json::value&) { return 42; });
  r.on("optional", [](const std::string&, const json::value&) -> std::optional<json::value> {
    return json::value("opt");
  });
  r.on("void", [](const std::string&, const json::value&) {});
  r.on("context", [](const std::string&, const json::value&, const request_context& c) {
    return c.peer.to_string();
  });
  r.on("coroutine", [](const std::string&, const json::value& v) -> asio::awaitable<json::value> {
    asio::steady_timer t(co_await asio::this_coro::executor, 1ms);
    co_await t.async_wait(asio::use_awaitable);
    co_return json::value{{"wrapped", v}};
  });
  r.on("coroutine_optional",
       [](const std::string&, const json::value&) -> asio::awaitable<std::optional<int>> {
         co_return 7;
       });
  r.on("vector", [](const std::string&, const json::value&) { return std::vector<int>{1, 2}; });

  CHECK(dispatch(r, "value", "x").result == "x");
  CHECK(dispatch(r, "string", 1).result == "got string");
  CHECK(dispatch(r, "int", 1).result == 42);
  CHECK(dispatch(r, "optional", 1).result == "opt");
  CHECK(dispatch(r, "void", 1).result.is_null());
  CHECK(dispatch(r, "context", 1).result == "127.0.0.1:5555");
  CHECK(dispatch(r, "coroutine", 3).result == json::parse(R"({"wrapped": 3})"));
  CHECK(dispatch(r, "coroutine_optional", 3).result == 7);
  CHECK(dispatch(r, "vector", 3).result == json::parse("[1, 2]"));
}

TEST_CASE("the chain runs in order and the first answer wins", "[unit][handlers]") {
  action_router r;
  std::vector<std::string> calls;
  r.add_action_handler([&](const std::string& a, const json::value&) -> std::optional<json::value> {
    calls.push_back("first");
    if (a == "one") return json::value("first answered");
    return std::nullopt;
  });
  r.add_action_handler([&](const std::string& a, const json::value&) -> json::value {
    calls.push_back("second");
    if (a == "two") return "second answered";
    return nullptr;  // COMET's None: declines
  });
  r.add_action_handler([&](const std::string&, const json::value& v) {
    calls.push_back("third");
    return v;
  });

  CHECK(dispatch(r, "one", 0).result == "first answered");
  CHECK(calls == std::vector<std::string>{"first"});
  calls.clear();
  CHECK(dispatch(r, "two", 0).result == "second answered");
  CHECK(calls == std::vector<std::string>{"first", "second"});
  calls.clear();
  // 0, "" and {} are answers here (COMET's falsy quirk is not copied).
  CHECK(dispatch(r, "three", 0).result == 0);
  CHECK(dispatch(r, "three", "").result == "");
  CHECK(calls == std::vector<std::string>{"first", "second", "third", "first", "second", "third"});
}

TEST_CASE("a throwing chain handler is skipped", "[unit][handlers]") {
  action_router r;
  r.add_action_handler([](const std::string&, const json::value&) -> json::value {
    throw std::runtime_error("sensor unplugged");
  });
  r.add_action_handler([](const std::string& a, const json::value&) -> json::value {
    if (a == "known") return "fine";
    return nullptr;
  });
  CHECK(dispatch(r, "known", 1).result == "fine");

  auto failed = dispatch(r, "unknown", 1);
  REQUIRE(failed.error);
  CHECK(*failed.error == errc::handler_failed);
  CHECK_THAT(failed.error_message, Catch::Contains("sensor unplugged"));
}

TEST_CASE("no answer gives no_handler naming the action", "[unit][handlers]") {
  action_router empty;
  auto none = dispatch(empty, "Telegram", 1);
  REQUIRE(none.error);
  CHECK(*none.error == errc::no_handler);
  CHECK(none.error_message == "no handler answered action 'Telegram'");
  CHECK(none.result == "Error: no handler answered action 'Telegram'");

  action_router declining;
  declining.add_action_handler([](const std::string&, const json::value&) { return nullptr; });
  CHECK(*dispatch(declining, "x", 1).error == errc::no_handler);
}

TEST_CASE("routed handlers come before the chain and their answer is final", "[unit][handlers]") {
  action_router r;
  r.add_action_handler([](const std::string&, const json::value&) { return "chain"; });
  r.on("routed", [](const std::string&, const json::value&) { return nullptr; });
  r.on("broken", [](const std::string&, const json::value&) -> asio::awaitable<json::value> {
    throw std::runtime_error("division by zero");
    co_return 1;
  });
  CHECK(dispatch(r, "other", 1).result == "chain");
  auto routed = dispatch(r, "routed", 1);
  CHECK_FALSE(routed.error);
  CHECK(routed.result.is_null());
  auto broken = dispatch(r, "broken", 1);
  REQUIRE(broken.error);
  CHECK(*broken.error == errc::handler_failed);
  CHECK_THAT(broken.error_message, Catch::Contains("division by zero") && Catch::Contains("broken"));
}
