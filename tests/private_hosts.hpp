// The private /etc/hosts a test of host names runs with (issue 15). The
// cases tagged [.names] and [.names-multi] are hidden from the discovered
// run; ctest runs them under tests/with_hosts with each file of
// tests/hosts/, so that none depends on the machine's own /etc/hosts:
//
//   tests/with_hosts tests/hosts/debian -- build/tests/comet_tests "[names]"
//   tests/with_hosts tests/hosts/multi -- build/tests/comet_tests "[names-multi]"
#pragma once

#include "support.hpp"

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace comet::test {

// The file with_hosts gave this process; fails the test when it ran
// without one (a name would then resolve as the machine says).
inline std::string private_hosts_file() {
  const char* file = std::getenv("COMET_HOSTS_FILE");
  if (file == nullptr)
    FAIL("this case needs a private /etc/hosts: run it as ctest does, under "
         "tests/with_hosts tests/hosts/FILE -- comet_tests \"[names]\"");
  const char* via = std::getenv("COMET_HOSTS_VIA");
  if (via != nullptr && std::string(via) == "mount") REQUIRE(read_file("/etc/hosts") == read_file(file));
  return file;
}

// The addresses the private file gives `name`, sorted.
inline std::vector<std::string> private_addresses_of(const std::string& name) {
  std::istringstream lines(read_file(private_hosts_file()));
  std::vector<std::string> found;
  for (std::string line; std::getline(lines, line);) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string address, word;
    if (!(words >> address)) continue;
    while (words >> word)
      if (word == name) found.push_back(address);
  }
  std::sort(found.begin(), found.end());
  return found;
}

// The addresses of `name` as this process resolves them, in the
// resolver's order.
inline std::vector<tcp::endpoint> resolved(const std::string& name, std::uint16_t port) {
  asio::io_context io;
  tcp::resolver resolver(io);
  std::vector<tcp::endpoint> out;
  for (const auto& entry : resolver.resolve(name, std::to_string(port)))
    if (std::find(out.begin(), out.end(), entry.endpoint()) == out.end())
      out.push_back(entry.endpoint());
  return out;
}

}  // namespace comet::test
