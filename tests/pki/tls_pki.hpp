// Throwaway certificates for the TLS tests, made with OpenSSL at test time
// in a private temp directory that is removed afterwards: a CA, a host and a
// client certificate it signs, and a rogue CA with a host certificate of its
// own. Keys are P-256, which is quick to generate.
#pragma once

#include <filesystem>
#include <string>

namespace comet::test {

class test_pki {
 public:
  test_pki();
  test_pki(const test_pki&) = delete;
  test_pki& operator=(const test_pki&) = delete;
  ~test_pki();

  // "ca.pem", "host.pem", "host.key", "client.pem", "client.key",
  // "rogue-ca.pem", "rogue-host.pem", "rogue-host.key", "rogue-client.pem",
  // "rogue-client.key", "expired-host.pem", "expired-host.key".
  // Leaf certificates name IP 127.0.0.1 and DNS localhost.
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  std::filesystem::path dir_;
};

}  // namespace comet::test
