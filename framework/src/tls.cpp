// TLS contexts from settings, and the words for what went wrong.
#include "transport.hpp"

#include <comet/config.hpp>
#include <comet/errors.hpp>

#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>

#include <filesystem>
#include <system_error>

namespace comet {
namespace {

namespace ssl = asio::ssl;

// What a file is for, in messages: "the TLS certificate".
void require_readable(const std::string& file, std::string_view what, std::string_view key) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec))
    throw error(errc::tls_error, std::string(what) + " '" + file +
                                     "' is not a readable file; set " + std::string(key) +
                                     " to a PEM file");
}

template <class Load>
void load(const std::string& file, std::string_view what, std::string_view key, Load&& load) {
  require_readable(file, what, key);
  boost::system::error_code ec;
  load(ec);
  if (ec)
    throw error(errc::tls_error, "cannot use " + std::string(what) + " '" + file +
                                     "': " + ec.message() + "; " + std::string(key) +
                                     " must name a PEM file");
}

std::shared_ptr<ssl::context> make_context(ssl::context::method method) {
  auto context = std::make_shared<ssl::context>(method);
  // TLS 1.2 and later only.
  context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                       ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  return context;
}

void load_identity(ssl::context& context, const tls_settings& settings) {
  load(settings.certificate, "the TLS certificate", "tls_certificate",
       [&](auto& ec) { context.use_certificate_chain_file(settings.certificate, ec); });
  const auto mismatch = [&] {
    return error(errc::tls_error, "the TLS private key '" + settings.private_key +
                                      "' does not belong to the certificate '" +
                                      settings.certificate + "'; pair each certificate with its key");
  };
  require_readable(settings.private_key, "the TLS private key", "tls_private_key");
  boost::system::error_code ec;
  context.use_private_key_file(settings.private_key, ssl::context::pem, ec);
  if (ec && ec.message().find("key values mismatch") != std::string::npos) throw mismatch();
  if (ec)
    throw error(errc::tls_error, "cannot use the TLS private key '" + settings.private_key +
                                     "': " + ec.message() + "; tls_private_key must name a PEM file");
  if (SSL_CTX_check_private_key(context.native_handle()) != 1) throw mismatch();
}

void load_ca(ssl::context& context, const tls_settings& settings) {
  load(settings.ca, "the TLS CA file", "tls_ca",
       [&](auto& ec) { context.load_verify_file(settings.ca, ec); });
}

}  // namespace

std::shared_ptr<ssl::context> make_host_tls_context(const tls_settings& settings) {
  if (!settings.enabled) return nullptr;
  if (settings.certificate.empty() || settings.private_key.empty())
    throw error(errc::tls_error,
                "a TLS host needs a certificate and its private key: set tls_certificate and "
                "tls_private_key");
  auto context = make_context(ssl::context::tls_server);
  load_identity(*context, settings);
  // Lets clients resume sessions, client certificates included (OpenSSL
  // refuses to resume a verified session without an id context).
  static constexpr unsigned char session_context[] = "comet-net";
  SSL_CTX_set_session_id_context(context->native_handle(), session_context,
                                 sizeof session_context - 1);
  if (settings.require_client_certificate) {
    if (settings.ca.empty())
      throw error(errc::tls_error,
                  "tls_require_client_certificate needs tls_ca: the CA that signs client "
                  "certificates");
    load_ca(*context, settings);
    context->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
  } else {
    context->set_verify_mode(ssl::verify_none);
  }
  return context;
}

std::shared_ptr<ssl::context> make_client_tls_context(const tls_settings& settings) {
  if (!settings.enabled) return nullptr;
  auto context = make_context(ssl::context::tls_client);
  if (!settings.certificate.empty() || !settings.private_key.empty()) {
    if (settings.certificate.empty() || settings.private_key.empty())
      throw error(errc::tls_error,
                  "a TLS client certificate needs both tls_certificate and tls_private_key");
    load_identity(*context, settings);
  }
  if (settings.ca.empty()) {
    boost::system::error_code ec;
    context->set_default_verify_paths(ec);
    if (ec)
      throw error(errc::tls_error, "cannot load the system's trusted CAs (" + ec.message() +
                                       "); set tls_ca to the CA that signs your hosts");
  } else {
    load_ca(*context, settings);
  }
  context->set_verify_mode(ssl::verify_peer);
  return context;
}

tls_session_cache::~tls_session_cache() {
  if (session_) SSL_SESSION_free(session_);
}

void tls_session_cache::offer(transport& t) const {
  if (!t.secure()) return;
  std::lock_guard lock(mutex_);
  if (session_) SSL_set_session(t.tls().native_handle(), session_);
}

void tls_session_cache::remember(transport& t) {
  if (!t.secure()) return;
  SSL_SESSION* current = SSL_get0_session(t.tls().native_handle());
  if (!current || !SSL_SESSION_is_resumable(current)) return;
  // A copy: OpenSSL marks a connection's own session unresumable when the
  // connection is freed without a TLS shutdown, which is how ours end.
  SSL_SESSION* copy = SSL_SESSION_dup(current);
  if (!copy) return;
  std::lock_guard lock(mutex_);
  if (session_) SSL_SESSION_free(session_);
  session_ = copy;
}

void transport::verify_peer_name(const std::string& address) {
  if (tls_) tls_->set_verify_callback(ssl::host_name_verification(address));
}

std::string describe_tls_failure(const boost::system::error_code& ec) {
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated ||
      ec == asio::error::connection_reset)
    return "the peer closed the connection during the TLS handshake (does it use TLS, and "
           "does it accept this side's certificate?)";
  if (ec.category() == asio::error::get_ssl_category()) {
    const std::string reason = ec.message();
    if (reason.find("certificate verify failed") != std::string::npos)
      return reason + " (the certificate is not signed by a trusted CA in tls_ca, has expired, "
                      "or does not name the address connected to)";
    if (reason.find("wrong version number") != std::string::npos ||
        reason.find("packet length too long") != std::string::npos ||
        reason.find("http request") != std::string::npos)
      return reason + " (the peer does not speak TLS)";
    if (reason.find("peer did not return a certificate") != std::string::npos ||
        reason.find("certificate required") != std::string::npos)
      return reason + " (this host requires a client certificate: set tls_certificate and "
                      "tls_private_key on the client)";
    if (reason.find("unknown ca") != std::string::npos ||
        reason.find("bad certificate") != std::string::npos)
      return reason + " (the host does not trust this side's certificate: it must be signed "
                      "by the CA in the host's tls_ca)";
    return reason;
  }
  return ec.message();
}

}  // namespace comet
