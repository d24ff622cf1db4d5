// Internal: the completion handler for detached coroutines. An exception
// escaping one is a bug; it is logged instead of unwinding through run().
#pragma once

#include <comet/log.hpp>

#include <exception>
#include <string>

namespace comet::detail {

inline auto log_failure(const char* what) {
  return [what](std::exception_ptr failure) {
    if (!failure) return;
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      log(log_level::error, std::string(what) + " ended with an exception: " + e.what());
    } catch (...) {
      log(log_level::error, std::string(what) + " ended with an unknown exception");
    }
  };
}

}  // namespace comet::detail
