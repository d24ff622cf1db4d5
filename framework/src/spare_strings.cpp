#include "spare_strings.hpp"

#include <vector>

namespace comet::detail {
namespace {

constexpr std::size_t max_spare = 64;
constexpr std::size_t max_capacity = 64 * 1024;

std::vector<std::string>& spare() noexcept {
  thread_local std::vector<std::string> strings;
  return strings;
}

}  // namespace

std::string take_spare_string() noexcept {
  auto& strings = spare();
  if (strings.empty()) return {};
  std::string s = std::move(strings.back());
  strings.pop_back();
  return s;
}

void give_back_string(std::string&& s) noexcept {
  if (s.capacity() <= 15 || s.capacity() > max_capacity) return;
  auto& strings = spare();
  if (strings.size() >= max_spare) return;
  try {
    if (strings.capacity() == 0) strings.reserve(max_spare);
    s.clear();
    strings.push_back(std::move(s));
  } catch (...) {  // no room to keep it: it is freed
  }
}

}  // namespace comet::detail
