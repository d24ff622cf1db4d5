// Action handlers and the router that picks them.
//
// A handler gets the request's action, its value and a small context, and
// returns an answer. Both plain functions and coroutines work:
//
//   json::value f(const std::string& action, const json::value& value);
//   json::value f(const std::string& action, const json::value& value, const request_context&);
//   asio::awaitable<json::value> f(...);          // may co_await sends, timers...
//   std::optional<json::value> / awaitable<std::optional<json::value>>
//
// Any return type convertible to json::value (or via boost::json::value_from)
// works too; `void` means "no answer".
//
// Typed handlers take the value as a C++ type, read by comet::convert_to
// (convert.hpp): described structs (tolerantly: unknown keys ignored, a
// missing std::optional empty; comet::strict_keys refuses unknown keys) and
// enums, standard types, and anything with a tag_invoke:
//
//   R f(const point& p);                          // or (const point&, const request_context&)
//   asio::awaitable<R> f(point p);                // coroutine form
//
// A value that does not convert is answered bad_request, naming the field
// and what was expected ("value.x: expected a number, got a string").
//
// A handler chooses its error by throwing comet::error: the peer gets that
// code and message (a relay whose upstream is offline answers peer_offline).
// Any other exception is answered handler_failed with its message.
//
// Two ways to register, as in COMET and beyond:
//  - add_action_handler(fn): the chain. Every request goes to each chain
//    handler in registration order; the first one that answers wins. A
//    handler declines with std::nullopt or a JSON null (COMET's `None`). A
//    handler that throws is logged and skipped. If none answers the
//    response is `no_handler`, or `handler_failed` when one of them threw.
//  - on("TelegramBot", fn): routed. The handler for that action alone, tried
//    before the chain; its answer is final, null included. If it throws the
//    response is `handler_failed` with the exception's message. Routing an
//    action twice throws comet::error(errc::usage_error).
#pragma once

#include <comet/detail/asio_abi.hpp>

#include <comet/convert.hpp>
#include <comet/endpoint.hpp>
#include <comet/errors.hpp>
#include <comet/stream.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>

#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string_view>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace comet {

namespace asio = boost::asio;
namespace json = boost::json;

struct request_context {
  endpoint peer;                            // who sent the request
  std::optional<std::uint64_t> request_id;  // docs/protocol.md "request-id", when tagged
  // The executor the request's connection runs on (a strand, or the executor
  // of a context one thread runs): work posted to it is serialized with that
  // connection. Plain functions and untagged coroutine handlers run on it; a
  // tagged coroutine handler ("request-id") runs beside it, not on it.
  asio::any_io_executor executor;
  // The request's W3C traceparent (docs/api.md, "Tracing"); empty when it
  // carried none, or one that is not valid. The sends this handler makes
  // carry it on unless their send_options say otherwise.
  std::string traceparent;
};

// What a handler produced: an answer, or nullopt when it declined.
using handler_result = std::optional<json::value>;

// A response's content as it goes on the wire, and its error code if it
// reports a failure.
struct encoded_response {
  std::string content;
  std::optional<errc> error;
};

// An error response with that code and message.
encoded_response error_response(errc code, std::string_view message);

// The type-erased form every handler is stored as. The arguments outlive the
// returned awaitable as long as it is awaited at once.
using handler_function = std::function<asio::awaitable<handler_result>(
    const std::string& action, const json::value& value, const request_context& context)>;

// The type-erased form of a stream handler (action_router::on_stream).
using stream_handler_function = std::function<asio::awaitable<void>(
    const json::value& value, stream_writer& out, const request_context& context)>;

namespace detail {

template <class T>
struct is_awaitable : std::false_type {};
template <class T, class E>
struct is_awaitable<asio::awaitable<T, E>> : std::true_type {};

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class T>
handler_result to_handler_result(T&& answer) {
  using U = std::remove_cvref_t<T>;
  if constexpr (is_optional<U>::value) {
    if (!answer) return std::nullopt;
    return to_handler_result(std::move(*answer));
  } else if constexpr (std::is_constructible_v<json::value, U&&>) {
    return json::value(std::forward<T>(answer));
  } else {
    return json::value_from(std::forward<T>(answer));
  }
}

// The parameters of a handler that is not generic (a lambda, a function
// object or a function pointer).
template <class F, class = void>
struct parameters_of {
  using type = void;
};
template <class F>
struct parameters_of<F, std::void_t<decltype(&F::operator())>>
    : parameters_of<decltype(&F::operator())> {};
template <class C, class R, class... A>
struct parameters_of<R (C::*)(A...), void> {
  using type = std::tuple<A...>;
};
template <class C, class R, class... A>
struct parameters_of<R (C::*)(A...) const, void> {
  using type = std::tuple<A...>;
};
template <class C, class R, class... A>
struct parameters_of<R (C::*)(A...) noexcept, void> {
  using type = std::tuple<A...>;
};
template <class C, class R, class... A>
struct parameters_of<R (C::*)(A...) const noexcept, void> {
  using type = std::tuple<A...>;
};
template <class R, class... A>
struct parameters_of<R (*)(A...), void> {
  using type = std::tuple<A...>;
};

template <class F>
constexpr bool takes_action_and_value() {
  return std::is_invocable_v<F&, const std::string&, const json::value&> ||
         std::is_invocable_v<F&, const std::string&, const json::value&, const request_context&>;
}

// A typed handler: (T) or (T, const request_context&).
template <class F, class P = typename parameters_of<F>::type>
struct typed_handler_traits {
  static constexpr bool value = false;
};
template <class F, class T>
struct typed_handler_traits<F, std::tuple<T>> {
  static constexpr bool value = true;
  static constexpr bool with_context = false;
  using argument = std::remove_cvref_t<T>;
};
template <class F, class T, class C>
  requires std::is_same_v<std::remove_cvref_t<C>, request_context>
struct typed_handler_traits<F, std::tuple<T, C>> {
  static constexpr bool value = true;
  static constexpr bool with_context = true;
  using argument = std::remove_cvref_t<T>;
};

template <class F>
constexpr bool is_typed_handler() {
  return !takes_action_and_value<F>() && typed_handler_traits<F>::value;
}

template <class T>
T handler_argument(const json::value& value) {
  return convert_to<T>(value, "value", errc::bad_request, "");
}

// A typed handler in the (action, value, context) form. A coroutine one is
// wrapped in a coroutine, so that its converted argument lives as long as it.
template <class F>
auto adapt_typed(F f) {
  using traits = typed_handler_traits<F>;
  using T = typename traits::argument;
  auto call = [](F& fn, T& arg, const request_context& context) -> decltype(auto) {
    if constexpr (traits::with_context)
      return fn(arg, context);
    else
      return fn(arg);
  };
  using R = std::remove_cvref_t<std::invoke_result_t<decltype(call), F&, T&, const request_context&>>;
  if constexpr (is_awaitable<R>::value) {
    using V = typename R::value_type;
    return [fn = std::move(f), call](const std::string&, const json::value& value,
                                     const request_context& context) mutable -> R {
      T arg = handler_argument<T>(value);
      if constexpr (std::is_void_v<V>)
        co_await call(fn, arg, context);
      else
        co_return co_await call(fn, arg, context);
    };
  } else {
    return [fn = std::move(f), call](const std::string&, const json::value& value,
                                     const request_context& context) mutable -> R {
      T arg = handler_argument<T>(value);
      return call(fn, arg, context);
    };
  }
}

template <class F>
decltype(auto) invoke_handler(F& f, const std::string& action, const json::value& value,
                              const request_context& context) {
  if constexpr (std::is_invocable_v<F&, const std::string&, const json::value&,
                                    const request_context&>)
    return f(action, value, context);
  else {
    static_assert(std::is_invocable_v<F&, const std::string&, const json::value&>,
                  "a handler takes (action, value), (action, value, request_context), or a "
                  "typed value: (T) or (T, request_context) with T convertible from JSON");
    return f(action, value);
  }
}

// True when F is a coroutine (returns an awaitable): it may suspend, and so
// can be bounded by a deadline and cancelled.
template <class F>
constexpr bool returns_awaitable() {
  using Fn = std::decay_t<F>;
  if constexpr (std::is_same_v<Fn, handler_function>) {
    return true;
  } else {
    using R = decltype(invoke_handler(std::declval<Fn&>(), std::declval<const std::string&>(),
                                      std::declval<const json::value&>(),
                                      std::declval<const request_context&>()));
    return is_awaitable<std::remove_cvref_t<R>>::value;
  }
}

using sync_handler_function = std::function<handler_result(
    const std::string& action, const json::value& value, const request_context& context)>;

// A registered handler: a plain function is kept callable without a
// coroutine, so requests that reach only plain functions are answered at once.
struct stored_handler {
  handler_function coroutine;  // set for coroutine handlers
  sync_handler_function plain;  // set for plain functions
};

template <class F>
stored_handler make_stored_handler(F&& f) {
  using Fn = std::decay_t<F>;
  if constexpr (!std::is_same_v<Fn, handler_function> && is_typed_handler<Fn>()) {
    return make_stored_handler(adapt_typed(Fn(std::forward<F>(f))));
  } else if constexpr (std::is_same_v<Fn, handler_function>) {
    return {std::forward<F>(f), {}};
  } else if constexpr (returns_awaitable<F>()) {
    return {[fn = Fn(std::forward<F>(f))](const std::string& action, const json::value& value,
                                          const request_context& context) mutable
            -> asio::awaitable<handler_result> {
              using R = decltype(invoke_handler(fn, action, value, context));
              using T = typename std::remove_cvref_t<R>::value_type;
              if constexpr (std::is_void_v<T>) {
                co_await invoke_handler(fn, action, value, context);
                co_return std::nullopt;
              } else {
                co_return to_handler_result(co_await invoke_handler(fn, action, value, context));
              }
            },
            {}};
  } else {
    return {{},
            [fn = Fn(std::forward<F>(f))](const std::string& action, const json::value& value,
                                          const request_context& context) mutable
            -> handler_result {
              using R = decltype(invoke_handler(fn, action, value, context));
              if constexpr (std::is_void_v<R>) {
                invoke_handler(fn, action, value, context);
                return std::nullopt;
              } else {
                return to_handler_result(invoke_handler(fn, action, value, context));
              }
            }};
  }
}

// A stream handler: (T, stream_writer&) or (T, stream_writer&, const
// request_context&), returning asio::awaitable<void>; T is read from the
// request's value as a typed handler's is (json::value takes it as it is).
template <class F, class P = typename parameters_of<F>::type>
struct stream_handler_traits {
  static constexpr bool value = false;
};
template <class F, class T, class W>
  requires std::is_same_v<W, stream_writer&>
struct stream_handler_traits<F, std::tuple<T, W>> {
  static constexpr bool value = true;
  static constexpr bool with_context = false;
  using argument = std::remove_cvref_t<T>;
};
template <class F, class T, class W, class C>
  requires std::is_same_v<W, stream_writer&> && std::is_same_v<std::remove_cvref_t<C>, request_context>
struct stream_handler_traits<F, std::tuple<T, W, C>> {
  static constexpr bool value = true;
  static constexpr bool with_context = true;
  using argument = std::remove_cvref_t<T>;
};

template <class F>
stream_handler_function make_stream_handler(F f) {
  using traits = stream_handler_traits<F>;
  static_assert(traits::value,
                "a stream handler takes (T, comet::stream_writer&) or (T, comet::stream_writer&, "
                "const comet::request_context&), T convertible from JSON, and returns "
                "asio::awaitable<void>");
  using T = typename traits::argument;
  return [fn = std::move(f)](const json::value& value, stream_writer& out,
                             const request_context& context) mutable -> asio::awaitable<void> {
    T arg = handler_argument<T>(value);
    if constexpr (traits::with_context)
      co_await fn(arg, out, context);
    else
      co_await fn(arg, out);
  };
}

}  // namespace detail

// Holds the routed and chained handlers of one host and runs a request
// through them. Register handlers before the host starts serving.
class action_router {
 public:
  template <class F>
  void add_action_handler(F&& f) {
    chain_.push_back(detail::make_stored_handler(std::forward<F>(f)));
    chain_may_suspend_ = chain_may_suspend_ || !chain_.back().plain;
  }

  // Throws comet::error(errc::usage_error) naming an action already routed:
  // a second handler for it is a mistake, not a replacement.
  template <class F>
  void on(std::string action, F&& f) {
    if (routes_.contains(action) || streams_.contains(action)) throw_already_routed(action);
    routes_.emplace(std::move(action), detail::make_stored_handler(std::forward<F>(f)));
  }

  // Routes `action` to a stream handler (stream.hpp): a request that opens
  // a stream of it gets the items the handler writes, then the end (the
  // handler's exception ends it with that error, as a unary handler's
  // answers it). An action has one route, on() or on_stream(): the same
  // name twice throws comet::error(errc::usage_error). A plain request for
  // a stream action is answered bad_request.
  template <class F>
  void on_stream(std::string action, F&& f) {
    if (routes_.contains(action) || streams_.contains(action)) throw_already_routed(action);
    streams_.emplace(std::move(action),
                     detail::make_stream_handler(std::decay_t<F>(std::forward<F>(f))));
  }
  bool has_stream(std::string_view action) const { return streams_.find(action) != streams_.end(); }
  // Whether `action` has a route of its own (on() or on_stream()).
  bool routed(std::string_view action) const {
    return routes_.find(action) != routes_.end() || has_stream(action);
  }

  // Runs the stream handler of `action` until it returns: nullopt then,
  // or the error response its failure ends the stream with (no_handler
  // when `action` has no stream handler; handler_failed, or the code of a
  // comet::error it threw). Never throws for a handler's failure.
  asio::awaitable<std::optional<encoded_response>> stream(const std::string& action,
                                                          const json::value& value,
                                                          stream_writer& out,
                                                          const request_context& context) const;

  bool empty() const noexcept { return chain_.empty() && routes_.empty(); }

  // Whether the handlers a request for `action` reaches include a coroutine.
  bool may_suspend(std::string_view action) const;

  // Runs the request and returns the encoded response content: the answer,
  // or an error response (no_handler, handler_failed). Never throws for a
  // handler's failure.
  asio::awaitable<encoded_response> dispatch(const std::string& action, const json::value& value,
                                             const request_context& context) const;

  // The same, at once, when every handler the request reaches is a plain
  // function; nullopt when one is a coroutine (use dispatch).
  std::optional<encoded_response> dispatch_now(const std::string& action, const json::value& value,
                                               const request_context& context) const;
  // The same, into `into`, whose content's capacity is kept (a connection
  // answering request after request reuses one buffer); false, with `into`
  // untouched, when a handler is a coroutine.
  bool dispatch_now(const std::string& action, const json::value& value,
                    const request_context& context, encoded_response& into) const;

 private:
  [[noreturn]] static void throw_already_routed(const std::string& action);
  std::vector<detail::stored_handler> chain_;
  std::map<std::string, detail::stored_handler, std::less<>> routes_;
  std::map<std::string, stream_handler_function, std::less<>> streams_;
  bool chain_may_suspend_ = false;
};

}  // namespace comet
