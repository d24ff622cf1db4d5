// Internal: W3C Trace Context (level 1) on requests (docs/api.md,
// "Tracing"). The check of a traceparent, and the thread's "current
// traceparent": the host sets it while a handler of a request that carried
// one runs, and the client sends that handler makes read it when they are
// made, so that they carry it on. A plain handler's call is one scope; a
// coroutine handler runs on a traced_executor, which sets it around every
// piece of the coroutine it runs, so it survives each suspension.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include <array>
#include <cstddef>
#include <string_view>
#include <utility>

namespace comet::detail {

namespace asio = boost::asio;

// A version-00 traceparent: "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>".
inline constexpr std::size_t traceparent_size = 55;

// `text` as a traceparent: its first 55 characters when valid (version 00
// exactly so; a higher version may go on past a '-' at character 55),
// empty when not (version ff, an all-zero id, upper case, a wrong length).
std::string_view valid_traceparent(std::string_view text) noexcept;

// A send_options::traceparent as given: throws comet::error(usage_error),
// saying the form expected, unless it is empty or valid whole.
void check_send_traceparent(std::string_view text);

// The traceparent of the request whose handler runs on this thread now
// (empty: none).
std::string_view current_traceparent() noexcept;

// Makes `traceparent` (which outlives the scope) the current one, and
// restores the one before on exit.
class traceparent_scope {
 public:
  explicit traceparent_scope(std::string_view traceparent) noexcept;
  ~traceparent_scope();
  traceparent_scope(const traceparent_scope&) = delete;
  traceparent_scope& operator=(const traceparent_scope&) = delete;

 private:
  std::string_view previous_;
};

// An executor that runs each function on `inner` with a traceparent made
// current around it: a coroutine spawned on it sees the traceparent
// whenever it runs, whatever thread resumes it. Queries, require and
// prefer go to `inner`; the traceparent is kept inline (no allocation of
// its own per copy).
class traced_executor {
 public:
  // `traceparent`: a valid one (valid_traceparent()).
  traced_executor(asio::any_io_executor inner, std::string_view traceparent) noexcept
      : inner_(std::move(inner)) {
    traceparent.copy(trace_.data(), trace_.size());
  }

  template <class F>
  void execute(F&& f) const {
    inner_.execute([trace = trace_, f = std::forward<F>(f)]() mutable {
      const traceparent_scope scope(std::string_view(trace.data(), trace.size()));
      std::move(f)();
    });
  }

  template <class Property>
    requires asio::can_query<const asio::any_io_executor&, const Property&>::value
  decltype(auto) query(const Property& p) const {
    return asio::query(inner_, p);
  }
  template <class Property>
    requires asio::can_require<const asio::any_io_executor&, const Property&>::value
  traced_executor require(const Property& p) const {
    return traced_executor(asio::require(inner_, p), trace_);
  }
  template <class Property>
    requires asio::can_prefer<const asio::any_io_executor&, const Property&>::value
  traced_executor prefer(const Property& p) const {
    return traced_executor(asio::prefer(inner_, p), trace_);
  }

  friend bool operator==(const traced_executor& a, const traced_executor& b) noexcept {
    return a.inner_ == b.inner_ && a.trace_ == b.trace_;
  }

 private:
  using trace_text = std::array<char, traceparent_size>;
  traced_executor(asio::any_io_executor inner, const trace_text& trace) noexcept
      : inner_(std::move(inner)), trace_(trace) {}

  asio::any_io_executor inner_;
  trace_text trace_{};
};

}  // namespace comet::detail
