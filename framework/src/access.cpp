#include "access.hpp"

#include <charconv>
#include <stdexcept>

namespace comet {
namespace {

namespace ip = boost::asio::ip;

// The address as bytes, IPv4-mapped IPv6 addresses folded to IPv4.
std::vector<unsigned char> bytes_of(const ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return bytes_of(ip::make_address_v4(ip::v4_mapped, a.to_v6()));
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return {b.begin(), b.end()};
  }
  const auto b = a.to_v6().to_bytes();
  return {b.begin(), b.end()};
}

}  // namespace

address_filter::address_filter(const std::vector<std::string>& allow) {
  for (const auto& entry : allow) {
    const auto slash = entry.find('/');
    boost::system::error_code ec;
    const auto base = ip::make_address(entry.substr(0, slash), ec);
    if (ec)
      throw std::invalid_argument("allow-list entry '" + entry +
                                  "' is not an address or network (e.g. 10.0.0.0/8 or ::1)");
    const unsigned bits = base.is_v4() ? 32 : 128;
    unsigned prefix = bits;
    if (slash != std::string::npos) {
      const std::string_view digits = std::string_view(entry).substr(slash + 1);
      auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
      if (err != std::errc() || end != digits.data() + digits.size() || prefix > bits)
        throw std::invalid_argument("allow-list entry '" + entry + "' has a bad prefix length; use 0 to " +
                                    std::to_string(bits));
    }
    networks_.push_back({base, prefix});
  }
}

bool address_filter::admits(const ip::address& peer) const noexcept {
  if (networks_.empty()) return true;
  const auto peer_bytes = bytes_of(peer);
  for (const auto& n : networks_) {
    const auto base = bytes_of(n.base);
    if (base.size() != peer_bytes.size()) continue;
    unsigned left = n.prefix;
    bool match = true;
    for (std::size_t i = 0; i < base.size() && left > 0 && match; ++i) {
      const unsigned take = left >= 8 ? 8 : left;
      const auto mask = static_cast<unsigned char>(0xFF << (8 - take));
      match = (base[i] & mask) == (peer_bytes[i] & mask);
      left -= take;
    }
    if (match) return true;
  }
  return false;
}

std::vector<std::string> split_allow_list(std::string_view list) {
  std::vector<std::string> entries;
  while (!list.empty()) {
    const auto comma = list.find(',');
    std::string_view entry = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    const auto first = entry.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;
    entry = entry.substr(first, entry.find_last_not_of(" \t") - first + 1);
    entries.emplace_back(entry);
  }
  return entries;
}

bool token_matches(std::string_view expected, std::string_view given) noexcept {
  unsigned char diff = expected.size() == given.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>(expected[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0;
}

}  // namespace comet
