// The soak's counters, and the spelling of error codes in its report.
#include "soak.hpp"

namespace comet_soak {
namespace {

constexpr std::size_t max_samples = 12;

std::string_view local_code_name(comet::errc e) {
  switch (e) {
    case comet::errc::peer_offline: return "peer_offline";
    case comet::errc::connect_timeout: return "connect_timeout";
    case comet::errc::request_timeout: return "request_timeout";
    case comet::errc::connection_closed: return "connection_closed";
    case comet::errc::protocol_error: return "protocol_error";
    case comet::errc::unknown_client: return "unknown_client";
    case comet::errc::would_deadlock: return "would_deadlock";
    case comet::errc::bind_failed: return "bind_failed";
    case comet::errc::remote_error: return "remote_error";
    default: return "unknown";
  }
}

}  // namespace

std::string code_name(const std::error_code& code) {
  if (code.category() != comet::error_category()) return "system:" + code.message();
  const auto e = static_cast<comet::errc>(code.value());
  const std::string_view wire = comet::wire_name(e);
  return std::string(wire.empty() ? local_code_name(e) : wire);
}

void tally::lost(std::string_view how, const std::string& detail) {
  ++lost_;
  bump(lost_by_kind_, how);
  sample("lost (" + std::string(how) + "): " + detail);
}

void tally::mismatched(const std::string& detail) {
  ++mismatched_;
  sample("mismatched: " + detail);
}

void tally::hostile(std::string_view scenario, const std::string& problem) {
  {
    std::lock_guard lock(mutex_);
    auto it = hostile_.find(scenario);
    if (it == hostile_.end()) it = hostile_.emplace(std::string(scenario), scenario_counts{}).first;
    ++(problem.empty() ? it->second.as_documented : it->second.problems);
  }
  if (!problem.empty()) sample(std::string(scenario) + ": " + problem);
}

void tally::known_issue(std::string_view name, const std::string& detail) {
  if (bump(known_issues_, name) == 1) sample("known issue " + std::string(name) + ": " + detail);
}

void tally::failure(const std::string& detail) {
  ++failures_;
  sample(detail);
}

std::uint64_t tally::hostile_problems() const {
  std::lock_guard lock(mutex_);
  std::uint64_t n = 0;
  for (const auto& [name, c] : hostile_) n += c.problems;
  return n;
}

std::map<std::string, tally::scenario_counts, std::less<>> tally::hostile_counts() const {
  std::lock_guard lock(mutex_);
  return hostile_;
}

std::vector<std::string> tally::samples() const {
  std::lock_guard lock(mutex_);
  return samples_;
}

std::uint64_t tally::bump(counts& which, std::string_view key) {
  std::lock_guard lock(mutex_);
  auto it = which.find(key);
  if (it == which.end()) it = which.emplace(std::string(key), 0).first;
  return ++it->second;
}

tally::counts tally::copy(const counts& which) const {
  std::lock_guard lock(mutex_);
  return which;
}

void tally::sample(const std::string& detail) {
  std::lock_guard lock(mutex_);
  if (samples_.size() < max_samples) samples_.push_back(detail.substr(0, 400));
}

}  // namespace comet_soak
