// An IP address and port, as COMET's config spells them.
#pragma once

#include <cstdint>
#include <string>

namespace comet {

struct endpoint {
  std::string ip;
  std::uint16_t port = 0;

  // "127.0.0.1:65432", or "[::1]:65432" for IPv6.
  std::string to_string() const;

  friend bool operator==(const endpoint&, const endpoint&) = default;
};

}  // namespace comet
