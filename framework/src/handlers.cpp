#include <comet/handlers.hpp>

#include <comet/codec.hpp>
#include <comet/log.hpp>

#include "json_text.hpp"
#include "spare_strings.hpp"

#include <boost/system/system_error.hpp>

#include <exception>

namespace comet {
namespace {

// How a handler failed, as the peer is told: a comet::error keeps its code
// and message (a relay answers its upstream's peer_offline); any other
// exception is handler_failed with its message. A Boost system_error's
// what() carries the library's source location: the peer gets the error's
// own message only, the host's log the whole text.
struct handler_failure {
  errc code = errc::handler_failed;
  std::string message;  // for the peer
  std::string logged;   // for the host's log
  bool cancelled = false;  // the handler's wait was cancelled (its caller went away)

  // Expected events are not warnings: a handler cancelled because its peer
  // left is debug, a request that does not fit the handler's type is info.
  log_level level() const noexcept {
    if (cancelled) return log_level::debug;
    if (code == errc::bad_request) return log_level::info;
    return log_level::warn;
  }
};

handler_failure describe_current_exception() {
  try {
    throw;
  } catch (const error& e) {
    const auto code = e.code().category() == error_category() ? static_cast<errc>(e.code().value())
                                                              : errc::handler_failed;
    return {code, e.what(), e.what(), code == errc::cancelled};
  } catch (const boost::system::system_error& e) {
    return {errc::handler_failed, e.code().message(), e.what(),
            e.code() == boost::system::errc::operation_canceled};
  } catch (const std::exception& e) {
    return {errc::handler_failed, e.what(), e.what()};
  } catch (...) {
    return {errc::handler_failed, "unknown exception", "unknown exception"};
  }
}

// An answer encoded into `into`, whose content's capacity is kept.
void answer_into(encoded_response& into, const handler_result& answer) {
  static const json::value no_answer;  // null
  into.error.reset();
  into.content.clear();
  detail::append_response(into.content, answer ? *answer : no_answer);
}

// A coroutine's answer, encoded into a string this thread had spare
// (spare_strings.hpp): its connection gives the string back.
encoded_response routed_answer(const handler_result& answer) {
  encoded_response out{detail::take_spare_string(), {}};
  answer_into(out, answer);
  return out;
}

encoded_response routed_failure(const std::string& action, const request_context& context,
                                 const handler_failure& failure) {
  log(failure.level(), "handler for action '" + action + "' from " + context.peer.to_string() +
                          " failed: " + failure.logged);
  if (failure.code != errc::handler_failed) return error_response(failure.code, failure.message);
  return error_response(errc::handler_failed,
                        "handler for action '" + action + "' failed: " + failure.message);
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
  void failed(handler_failure failure) {
    log(failure.level(), "action handler failed for action '" + action_ + "' from " +
                             context_.peer.to_string() + ", trying the next one: " + failure.logged);
    if (!first_failure_) first_failure_ = std::move(failure);
  }
  encoded_response finish() {
    if (response_.error || !response_.content.empty()) return std::move(response_);
    if (first_failure_ && first_failure_->code != errc::handler_failed)
      return error_response(first_failure_->code, first_failure_->message);
    if (first_failure_)
      return error_response(errc::handler_failed, "no handler answered action '" + action_ +
                                                      "'; one failed: " + first_failure_->message);
    return error_response(errc::no_handler, "no handler answered action '" + action_ + "'");
  }

 private:
  const std::string& action_;
  const request_context& context_;
  std::optional<handler_failure> first_failure_;
  encoded_response response_;
};

}  // namespace

encoded_response error_response(errc code, std::string_view message) {
  return {encode_error_response(code, message), code};
}

void action_router::throw_already_routed(const std::string& action) {
  throw error(errc::usage_error, "action '" + action +
                                     "' already has a handler (on() was called twice for it); "
                                     "route each action once, or use add_action_handler for a chain");
}

bool action_router::may_suspend(std::string_view action) const {
  if (streams_.find(action) != streams_.end()) return false;
  if (auto route = routes_.find(action); route != routes_.end()) return !route->second.plain;
  return chain_may_suspend_;
}

std::optional<encoded_response> action_router::dispatch_now(const std::string& action,
                                                            const json::value& value,
                                                            const request_context& context) const {
  encoded_response out;
  if (!dispatch_now(action, value, context, out)) return std::nullopt;
  return out;
}

bool action_router::dispatch_now(const std::string& action, const json::value& value,
                                 const request_context& context, encoded_response& into) const {
  if (auto route = routes_.find(action); route != routes_.end()) {
    if (!route->second.plain) return false;
    try {
      answer_into(into, route->second.plain(action, value, context));
    } catch (...) {
      into = routed_failure(action, context, describe_current_exception());
    }
    return true;
  }
  if (streams_.find(action) != streams_.end()) {
    into = error_response(errc::bad_request, "action '" + action +
                                                 "' is a stream: open it as one (client::open_stream, "
                                                 "comet-send --stream)");
    return true;
  }
  if (chain_may_suspend_) return false;
  chain_run chain(action, context);
  for (const auto& handler : chain_) {
    try {
      if (chain.answered(handler.plain(action, value, context))) break;
    } catch (...) {
      chain.failed(describe_current_exception());
    }
  }
  into = chain.finish();
  return true;
}

asio::awaitable<encoded_response> action_router::dispatch(const std::string& action,
                                                          const json::value& value,
                                                          const request_context& context) const {
  if (auto now = dispatch_now(action, value, context)) co_return std::move(*now);

  if (auto route = routes_.find(action); route != routes_.end()) {
    handler_failure failure;
    try {
      co_return routed_answer(co_await route->second.coroutine(action, value, context));
    } catch (...) {
      failure = describe_current_exception();
    }
    co_return routed_failure(action, context, failure);
  }

  chain_run chain(action, context);
  for (const auto& handler : chain_) {
    handler_failure failure;
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

asio::awaitable<std::optional<encoded_response>> action_router::stream(
    const std::string& action, const json::value& value, stream_writer& out,
    const request_context& context) const {
  const auto route = streams_.find(action);
  if (route == streams_.end()) {
    const bool unary = routes_.find(action) != routes_.end();
    co_return error_response(errc::no_handler,
                             unary ? "action '" + action + "' is not a stream: send it as a request"
                                   : "no stream handler for action '" + action + "'");
  }
  handler_failure failure;
  try {
    co_await route->second(value, out, context);
    co_return std::nullopt;
  } catch (...) {
    failure = describe_current_exception();
  }
  co_return routed_failure(action, context, failure);
}

}  // namespace comet
