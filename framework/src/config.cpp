// The format-independent half of config.hpp: printing endpoints, the embedded
// default, and reading a file into the parser its extension names.
#include <comet/config.hpp>

#include <arpa/inet.h>

#include <comet/detail/default_config.hpp>
#include <comet/errors.hpp>

#include "config_document.hpp"
#include "config_wording.hpp"

#include <cctype>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>

namespace comet {
namespace {

std::string read_config_file(const std::filesystem::path& file) {
  const std::string name = file.string();
  std::error_code ec;
  const auto type = std::filesystem::status(file, ec).type();
  if (type == std::filesystem::file_type::not_found) {
    const auto absolute = std::filesystem::absolute(file, ec);
    throw config_error(name + ": config file not found (looked for " +
                       (ec ? name : absolute.string()) + "); check the path");
  }
  if (type == std::filesystem::file_type::directory) {
    throw config_error(name +
                       ": is a directory, not a config file; give the path of a .toml, .yaml or "
                       ".json file");
  }
  errno = 0;
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    const int reason = errno;  // libstdc++ opens with fopen, which sets it
    const std::string why = reason != 0 ? ": " + std::generic_category().message(reason) : "";
    throw config_error(name + ": cannot open the config file" + why +
                       "; check that it is readable");
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    throw config_error(name + ": cannot read the config file; check that it is readable");
  }
  return text.str();
}

}  // namespace

bool is_ip_address(const std::string& text) noexcept {
  if (text.find('\0') != std::string::npos) return false;  // inet_pton would stop there
  in6_addr address{};
  return inet_pton(AF_INET, text.c_str(), &address) == 1 ||
         inet_pton(AF_INET6, text.c_str(), &address) == 1;
}

bool endpoint::is_address() const noexcept { return is_ip_address(ip); }

bool is_host_name(std::string_view text) noexcept {
  if (text.empty() || text.size() > 253) return false;
  if (text.back() == '.') text.remove_suffix(1);  // a fully qualified name
  bool all_digits_or_dots = true;
  std::size_t label = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : '.';
    if (c == '.') {
      if (label == 0 || label > 63 || text[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (c != '-' || label == 0)) return false;
    if (!(c >= '0' && c <= '9')) all_digits_or_dots = false;
    ++label;
  }
  return !all_digits_or_dots;  // "256.1.1.1" is a bad address, not a name
}

namespace detail {

std::optional<endpoint> parse_endpoint(std::string_view text, std::string& problem) {
  const auto refuse = [&](std::string why) -> std::optional<endpoint> {
    problem = std::move(why);
    return std::nullopt;
  };
  std::string_view host = text;
  std::string_view port;
  bool bracketed = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return refuse("has no closing bracket after the IPv6 address");
    host = text.substr(1, close - 1);
    bracketed = true;
    const std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return refuse("has no port after the address");
    if (rest.front() != ':') return refuse("has something other than :PORT after the address");
    port = rest.substr(1);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return refuse("has no port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    // "::1:65432": the port cannot be told from the address's own colons.
    if (host.find(':') != std::string_view::npos) {
      const std::string address(host);
      // How it reads with the last colon taken as the port's, if that is an address.
      const std::string bracketed_form =
          is_ip_address(address)
              ? " \"[" + address + "]:" + std::string(port) + "\""
              : std::string();
      if (is_ip_address(std::string(text))) {
        return refuse("reads as an IPv6 address with no port (with a port, an IPv6 address goes "
                      "in brackets" +
                      (bracketed_form.empty() ? std::string() : ":" + bracketed_form) + ")");
      }
      if (!bracketed_form.empty())
        return refuse("has an IPv6 address and a port without brackets; write" + bracketed_form);
      return refuse("has more than one colon outside brackets");
    }
  }
  if (host.empty()) return refuse("has no address or host name before the port");
  const std::string name(host);
  if (bracketed) {
    if (name.find(':') == std::string::npos || !is_ip_address(name))
      return refuse("has brackets around something other than an IPv6 address");
  } else if (!is_ip_address(name) && !is_host_name(name)) {
    return refuse("has " + quote_for_message(name) +
                  " before the port, neither an IPv4 address nor a host name");
  }
  if (port.empty()) return refuse("has no port after the colon");
  unsigned number = 0;
  const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), number);
  // Digits only: from_chars takes no sign or space.
  if (end != port.data() + port.size())
    return refuse("has " + quote_for_message(port) + " as its port, not a number");
  if (error != std::errc() || number > 65535)
    return refuse("has port " + std::string(port) + ", out of range (1 to 65535)");
  if (number == 0) return refuse("has port 0, which only lets a host pick a free port");
  return endpoint{name, static_cast<std::uint16_t>(number)};
}

}  // namespace detail

std::optional<endpoint> parse_endpoint(std::string_view text) {
  std::string problem;
  return detail::parse_endpoint(text, problem);
}

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

config_format config_format_of(const std::filesystem::path& file) {
  std::string extension = file.extension().string();
  for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (extension == ".yaml" || extension == ".yml") return config_format::yaml;
  if (extension == ".json") return config_format::json;
  return config_format::toml;
}

config parse_config(std::string_view text, std::string_view source_name, config_format format) {
  switch (format) {
    case config_format::yaml: return detail::parse_yaml_config(text, source_name);
    case config_format::json: return detail::parse_json_config(text, source_name);
    case config_format::toml: break;
  }
  return detail::parse_toml_config(text, source_name);
}

config load_config(const std::filesystem::path& file) {
  config cfg = parse_config(read_config_file(file), file.string(), config_format_of(file));
  // A config names its TLS files relative to itself, so it works from any
  // working directory.
  const auto next_to_config = [&](std::string& path) {
    if (!path.empty() && std::filesystem::path(path).is_relative())
      path = (file.parent_path() / path).lexically_normal().string();
  };
  next_to_config(cfg.framework.tls.certificate);
  next_to_config(cfg.framework.tls.private_key);
  next_to_config(cfg.framework.tls.ca);
  return cfg;
}

std::string_view default_config_text() noexcept {
  return detail::embedded_default_config();
}

config default_config() {
  return parse_config(default_config_text(), "<embedded default config>");
}

}  // namespace comet
