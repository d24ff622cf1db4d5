// An address and port, as COMET's config spells them: `ip` is an IPv4 or
// IPv6 address, or a host name ("localhost", "lab-pc"), which clients
// resolve for each new connection and a host resolves when it starts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace comet {

struct endpoint {
  std::string ip;  // an address or a host name
  std::uint16_t port = 0;

  // "127.0.0.1:65432", or "[::1]:65432" for IPv6.
  std::string to_string() const;
  // True when `ip` is an IPv4 or IPv6 address (no resolution needed).
  bool is_address() const noexcept;

  friend bool operator==(const endpoint&, const endpoint&) = default;
};

// True for an IPv4 or IPv6 address (IPv6 without brackets).
bool is_ip_address(const std::string& text) noexcept;

// "127.0.0.1:65432", "lab-a:65432" or "[::1]:65432" as an endpoint: an
// IPv4 address, a host name or a bracketed IPv6 address, a colon, and a
// port from 1 to 65535. nullopt for anything else.
std::optional<endpoint> parse_endpoint(std::string_view text);

// True for a syntactically valid host name (RFC 1123: dot-separated labels
// of letters, digits and inner hyphens, at most 253 characters), which
// says nothing of whether it resolves.
bool is_host_name(std::string_view text) noexcept;

}  // namespace comet
