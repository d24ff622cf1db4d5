#include "tls_pki.hpp"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>

namespace comet::test {
namespace {

struct key_deleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct cert_deleter {
  void operator()(X509* c) const { X509_free(c); }
};
using key_ptr = std::unique_ptr<EVP_PKEY, key_deleter>;
using cert_ptr = std::unique_ptr<X509, cert_deleter>;

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test PKI: ") + what + " failed");
}

key_ptr make_key() {
  key_ptr key(EVP_EC_gen("P-256"));
  check(key != nullptr, "EVP_EC_gen");
  return key;
}

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, "X509V3_EXT_conf_nid");
  check(X509_add_ext(cert, ext, -1) == 1, "X509_add_ext");
  X509_EXTENSION_free(ext);
}

struct identity {
  key_ptr key;
  cert_ptr cert;
};

// A certificate for `key`, signed by `issuer` (self-signed when null).
// `valid_from`/`valid_until` are seconds from now.
cert_ptr make_cert(const std::string& common_name, EVP_PKEY* key, const identity* issuer,
                   bool is_ca, long valid_from = -3600, long valid_until = 86400) {
  static long serial = 1;
  cert_ptr cert(X509_new());
  check(cert != nullptr, "X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), valid_from);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), valid_until);
  check(X509_set_pubkey(cert.get(), key) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509* signer_cert = issuer ? issuer->cert.get() : cert.get();
  EVP_PKEY* signer_key = issuer ? issuer->key.get() : key;
  check(X509_set_issuer_name(cert.get(), X509_get_subject_name(signer_cert)) == 1,
        "X509_set_issuer_name");
  add_extension(cert.get(), signer_cert, NID_subject_key_identifier, "hash");
  if (is_ca) {
    add_extension(cert.get(), signer_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert.get(), signer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_extension(cert.get(), signer_cert, NID_authority_key_identifier, "keyid");
    add_extension(cert.get(), signer_cert, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), signer_cert, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    add_extension(cert.get(), signer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  check(X509_sign(cert.get(), signer_key, EVP_sha256()) > 0, "X509_sign");
  return cert;
}

identity make_ca(const std::string& name) {
  identity ca{make_key(), nullptr};
  ca.cert = make_cert(name, ca.key.get(), nullptr, true);
  return ca;
}

identity make_leaf(const std::string& name, const identity& ca, long valid_from = -3600,
                   long valid_until = 86400) {
  identity leaf{make_key(), nullptr};
  leaf.cert = make_cert(name, leaf.key.get(), &ca, false, valid_from, valid_until);
  return leaf;
}

void write_cert(const std::filesystem::path& file, X509* cert) {
  BIO* out = BIO_new_file(file.c_str(), "w");
  check(out != nullptr, "BIO_new_file");
  const bool ok = PEM_write_bio_X509(out, cert) == 1;
  BIO_free(out);
  check(ok, "PEM_write_bio_X509");
}

void write_key(const std::filesystem::path& file, EVP_PKEY* key) {
  BIO* out = BIO_new_file(file.c_str(), "w");
  check(out != nullptr, "BIO_new_file");
  const bool ok = PEM_write_bio_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  BIO_free(out);
  check(ok, "PEM_write_bio_PrivateKey");
}

void write_identity(const std::filesystem::path& dir, const std::string& stem, const identity& id) {
  write_cert(dir / (stem + ".pem"), id.cert.get());
  write_key(dir / (stem + ".key"), id.key.get());
}

}  // namespace

test_pki::test_pki() {
  std::random_device random;
  std::ostringstream name;
  name << "comet_test_pki_" << std::hex << random() << random();
  dir_ = std::filesystem::temp_directory_path() / name.str();
  std::filesystem::create_directory(dir_);

  const identity ca = make_ca("comet test CA");
  write_cert(dir_ / "ca.pem", ca.cert.get());
  write_identity(dir_, "host", make_leaf("comet test host", ca));
  write_identity(dir_, "client", make_leaf("comet test client", ca));
  write_identity(dir_, "expired-host", make_leaf("comet expired host", ca, -7200, -3600));

  const identity rogue = make_ca("rogue CA");
  write_cert(dir_ / "rogue-ca.pem", rogue.cert.get());
  write_identity(dir_, "rogue-host", make_leaf("rogue host", rogue));
  write_identity(dir_, "rogue-client", make_leaf("rogue client", rogue));
}

test_pki::~test_pki() {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace comet::test
