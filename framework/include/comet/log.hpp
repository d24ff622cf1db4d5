// Logging: the library never writes to stdout. Messages go to one sink, by
// default a line on stderr; an embedding program redirects them into its own
// logger with set_log_sink.
#pragma once

#include <functional>
#include <optional>
#include <string_view>

namespace comet {

enum class log_level { trace, debug, info, warn, error, off };

using log_sink = std::function<void(log_level, std::string_view message)>;

// Replaces the sink; an empty function restores the stderr sink.
// Thread-safe; call it before starting hosts to avoid missing early lines.
void set_log_sink(log_sink sink);

// Messages below this level are dropped before they are formatted.
void set_log_level(log_level level);
log_level get_log_level() noexcept;

// Parses "trace", "debug", "info", "warn", "error", "off".
std::optional<log_level> parse_log_level(std::string_view name);
std::string_view to_string(log_level level) noexcept;

void log(log_level level, std::string_view message);

// Whether a message at `level` would be written: for callers whose message
// costs something to build (a line per request at debug).
inline bool log_enabled(log_level level) noexcept {
  return level >= get_log_level() && level != log_level::off;
}

}  // namespace comet
