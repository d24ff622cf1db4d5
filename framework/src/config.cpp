// The format-independent half of config.hpp: printing endpoints and the
// embedded default. TOML reading lives in config_toml.cpp.
#include <comet/config.hpp>

#include <comet/detail/default_config.hpp>

#include <string>

namespace comet {

std::string endpoint::to_string() const {
  // A colon can only come from IPv6, whose own colons would make the port
  // ambiguous without brackets (RFC 3986).
  const bool bracketed = ip.find(':') != std::string::npos;
  std::string text;
  text.reserve(ip.size() + 8);
  if (bracketed) text += '[';
  text += ip;
  if (bracketed) text += ']';
  text += ':';
  text += std::to_string(port);
  return text;
}

std::string_view default_config_text() noexcept {
  return detail::embedded_default_config();
}

config default_config() {
  return parse_config(default_config_text(), "<embedded default config>");
}

}  // namespace comet
