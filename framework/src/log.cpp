#include <comet/log.hpp>

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

namespace comet {
namespace {

std::atomic<log_level> current_level{log_level::info};
std::mutex sink_mutex;
log_sink current_sink;  // empty: stderr

void write_stderr(log_level level, std::string_view message) {
  std::string line = "comet [";
  line += to_string(level);
  line += "] ";
  line += message;
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace

void set_log_sink(log_sink sink) {
  std::lock_guard lock(sink_mutex);
  current_sink = std::move(sink);
}

void set_log_level(log_level level) { current_level.store(level, std::memory_order_relaxed); }

log_level get_log_level() noexcept { return current_level.load(std::memory_order_relaxed); }

std::optional<log_level> parse_log_level(std::string_view name) {
  for (auto level : {log_level::trace, log_level::debug, log_level::info, log_level::warn,
                     log_level::error, log_level::off})
    if (to_string(level) == name) return level;
  return std::nullopt;
}

std::string_view to_string(log_level level) noexcept {
  switch (level) {
    case log_level::trace: return "trace";
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    case log_level::off: return "off";
  }
  return "?";
}

void log(log_level level, std::string_view message) {
  if (level < get_log_level() || level == log_level::off) return;
  std::lock_guard lock(sink_mutex);
  if (current_sink)
    current_sink(level, message);
  else
    write_stderr(level, message);
}

}  // namespace comet
