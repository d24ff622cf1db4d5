// The format-independent half of config.hpp: printing endpoints, the embedded
// default, and reading a file into the parser its extension names.
#include <comet/config.hpp>

#include <arpa/inet.h>

#include <comet/detail/default_config.hpp>
#include <comet/errors.hpp>

#include "config_document.hpp"

#include <cctype>
#include <cerrno>
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
