#include "trace.hpp"

#include <comet/errors.hpp>

#include <algorithm>
#include <string>

namespace comet::detail {
namespace {

thread_local std::string_view current;

bool lower_hex(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
bool all_zero(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

}  // namespace

std::string_view valid_traceparent(std::string_view text) noexcept {
  if (text.size() < traceparent_size) return {};
  const std::string_view version = text.substr(0, 2), trace_id = text.substr(3, 32),
                         parent_id = text.substr(36, 16), flags = text.substr(53, 2);
  if (text[2] != '-' || text[35] != '-' || text[52] != '-') return {};
  if (!lower_hex(version) || version == "ff" || !lower_hex(trace_id) || all_zero(trace_id) ||
      !lower_hex(parent_id) || all_zero(parent_id) || !lower_hex(flags))
    return {};
  // Version 00 is exactly this long; a later version may add fields after a '-'.
  if (text.size() > traceparent_size && (version == "00" || text[traceparent_size] != '-'))
    return {};
  return text.substr(0, traceparent_size);
}

void check_send_traceparent(std::string_view text) {
  if (text.empty() || valid_traceparent(text).size() == text.size()) return;
  throw error(errc::usage_error,
              "send_options::traceparent '" + std::string(text.substr(0, 80)) +
                  (text.size() > 80 ? "...'" : "'") +
                  " is not a W3C traceparent: expected "
                  "\"00-<32 lowercase hex trace-id>-<16 lowercase hex parent-id>-<2 lowercase hex "
                  "flags>\" with non-zero ids, such as "
                  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 (an empty string sends none)");
}

std::string_view current_traceparent() noexcept { return current; }

traceparent_scope::traceparent_scope(std::string_view traceparent) noexcept
    : previous_(std::exchange(current, traceparent)) {}

traceparent_scope::~traceparent_scope() { current = previous_; }

}  // namespace comet::detail
