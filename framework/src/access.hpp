// Internal: who a host lets in. An allow-list of addresses and networks,
// checked when a connection is accepted, and the shared-secret token,
// compared in constant time on every request.
#pragma once

#include <boost/asio/ip/address.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace comet {

class address_filter {
 public:
  // Entries are addresses ("127.0.0.1", "::1") or networks ("10.0.0.0/8",
  // "fe80::/10"). Throws std::invalid_argument naming a bad entry. An empty
  // list admits everyone.
  explicit address_filter(const std::vector<std::string>& allow);

  bool admits(const boost::asio::ip::address& peer) const noexcept;

 private:
  struct network {
    boost::asio::ip::address base;
    unsigned prefix = 0;
  };
  std::vector<network> networks_;
};

// "127.0.0.0/8, ::1" -> {"127.0.0.0/8", "::1"}: the config's spelling.
std::vector<std::string> split_allow_list(std::string_view list);

// Compares without an early exit, so the time taken does not tell how much
// of a guess was right.
bool token_matches(std::string_view expected, std::string_view given) noexcept;

}  // namespace comet
