#include <comet/handlers.hpp>

#include <comet/codec.hpp>
#include <comet/log.hpp>

#include <exception>

namespace comet {
namespace {

std::string describe_current_exception() {
  try {
    throw;
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

encoded_response error_response(errc code, std::string_view message) {
  return {encode_error_response(code, message), code};
}

bool action_router::may_suspend(std::string_view action) const {
  if (auto route = routes_.find(action); route != routes_.end()) return route->second.may_suspend;
  return chain_may_suspend_;
}

asio::awaitable<encoded_response> action_router::dispatch(const std::string& action,
                                                     const json::value& value,
                                                     const request_context& context) const {
  if (auto route = routes_.find(action); route != routes_.end()) {
    std::string failure;
    try {
      handler_result answer = co_await route->second.function(action, value, context);
      co_return encoded_response{encode_response(answer ? *answer : json::value(nullptr)), {}};
    } catch (...) {
      failure = describe_current_exception();
    }
    log(log_level::warn, "handler for action '" + action + "' from " + context.peer.to_string() +
                             " failed: " + failure);
    co_return error_response(errc::handler_failed,
                             "handler for action '" + action + "' failed: " + failure);
  }

  std::string first_failure;
  for (const auto& handler : chain_) {
    std::string failure;
    try {
      handler_result answer = co_await handler.function(action, value, context);
      if (answer && !answer->is_null()) co_return encoded_response{encode_response(*answer), {}};
      continue;
    } catch (...) {
      failure = describe_current_exception();
    }
    log(log_level::warn, "action handler failed for action '" + action + "' from " +
                             context.peer.to_string() + ", trying the next one: " + failure);
    if (first_failure.empty()) first_failure = failure;
  }
  if (!first_failure.empty())
    co_return error_response(errc::handler_failed, "no handler answered action '" + action +
                                                       "'; one failed: " + first_failure);
  co_return error_response(errc::no_handler, "no handler answered action '" + action + "'");
}

}  // namespace comet
