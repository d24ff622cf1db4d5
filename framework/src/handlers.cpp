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

encoded_response routed_answer(const handler_result& answer) {
  return {encode_response(answer ? *answer : json::value(nullptr)), {}};
}

encoded_response routed_failure(const std::string& action, const request_context& context,
                                 const std::string& failure) {
  log(log_level::warn, "handler for action '" + action + "' from " + context.peer.to_string() +
                           " failed: " + failure);
  return error_response(errc::handler_failed,
                        "handler for action '" + action + "' failed: " + failure);
}

// The chain's bookkeeping: the first answer wins, failures are logged and
// skipped, and the end says no_handler or handler_failed.
class chain_run {
 public:
  chain_run(const std::string& action, const request_context& context)
      : action_(action), context_(context) {}

  // True when `answer` ends the chain.
  bool answered(const handler_result& answer) {
    if (!answer || answer->is_null()) return false;
    response_ = {encode_response(*answer), {}};
    return true;
  }
  void failed(const std::string& failure) {
    log(log_level::warn, "action handler failed for action '" + action_ + "' from " +
                             context_.peer.to_string() + ", trying the next one: " + failure);
    if (first_failure_.empty()) first_failure_ = failure;
  }
  encoded_response finish() {
    if (response_.error || !response_.content.empty()) return std::move(response_);
    if (!first_failure_.empty())
      return error_response(errc::handler_failed, "no handler answered action '" + action_ +
                                                      "'; one failed: " + first_failure_);
    return error_response(errc::no_handler, "no handler answered action '" + action_ + "'");
  }

 private:
  const std::string& action_;
  const request_context& context_;
  std::string first_failure_;
  encoded_response response_;
};

}  // namespace

encoded_response error_response(errc code, std::string_view message) {
  return {encode_error_response(code, message), code};
}

bool action_router::may_suspend(std::string_view action) const {
  if (auto route = routes_.find(action); route != routes_.end()) return !route->second.plain;
  return chain_may_suspend_;
}

std::optional<encoded_response> action_router::dispatch_now(const std::string& action,
                                                            const json::value& value,
                                                            const request_context& context) const {
  if (auto route = routes_.find(action); route != routes_.end()) {
    if (!route->second.plain) return std::nullopt;
    try {
      return routed_answer(route->second.plain(action, value, context));
    } catch (...) {
      return routed_failure(action, context, describe_current_exception());
    }
  }
  if (chain_may_suspend_) return std::nullopt;
  chain_run chain(action, context);
  for (const auto& handler : chain_) {
    try {
      if (chain.answered(handler.plain(action, value, context))) break;
    } catch (...) {
      chain.failed(describe_current_exception());
    }
  }
  return chain.finish();
}

asio::awaitable<encoded_response> action_router::dispatch(const std::string& action,
                                                          const json::value& value,
                                                          const request_context& context) const {
  if (auto now = dispatch_now(action, value, context)) co_return std::move(*now);

  if (auto route = routes_.find(action); route != routes_.end()) {
    std::string failure;
    try {
      co_return routed_answer(co_await route->second.coroutine(action, value, context));
    } catch (...) {
      failure = describe_current_exception();
    }
    co_return routed_failure(action, context, failure);
  }

  chain_run chain(action, context);
  for (const auto& handler : chain_) {
    std::string failure;
    try {
      const handler_result answer = handler.plain ? handler.plain(action, value, context)
                                                  : co_await handler.coroutine(action, value, context);
      if (chain.answered(answer)) break;
      continue;
    } catch (...) {
      failure = describe_current_exception();
    }
    chain.failed(failure);
  }
  co_return chain.finish();
}

}  // namespace comet
