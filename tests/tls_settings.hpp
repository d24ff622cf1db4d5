// TLS settings made from the test PKI (tls_pki.hpp), for the tests that
// run hosts and clients over TLS.
#pragma once

#include <comet/config.hpp>

#include "tls_pki.hpp"

#include <string>

namespace comet::test {

// A host presenting the PKI's certificate `stem` ("host", "rogue-host", ...).
inline tls_settings host_tls(const test_pki& pki, const std::string& stem = "host") {
  tls_settings t;
  t.enabled = true;
  t.certificate = pki.file(stem + ".pem");
  t.private_key = pki.file(stem + ".key");
  return t;
}

// A client trusting the CA in `ca`.
inline tls_settings client_tls(const test_pki& pki, const std::string& ca = "ca.pem") {
  tls_settings t;
  t.enabled = true;
  t.ca = pki.file(ca);
  return t;
}

}  // namespace comet::test
