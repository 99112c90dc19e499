#include "services/common/tls.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace spar::services {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

absl::Status Readable(const std::string& path, const char* variable) {
  if (path.empty()) return absl::OkStatus();
  if (!ReadFile(path).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(variable, ": cannot read ", path));
  }
  return absl::OkStatus();
}

// The PEM contents of the three files ("" = none); InvalidArgument naming the one unreadable.
absl::StatusOr<TlsPem> ReadFiles(const std::string& cert, const std::string& key,
                                 const std::string& ca) {
  TlsPem pem;
  for (auto [path, out] : {std::pair<const std::string&, std::string*>{cert, &pem.cert},
                           {key, &pem.key},
                           {ca, &pem.ca}}) {
    if (path.empty()) continue;
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("TLS file ", path, ": unreadable"));
    }
    *out = *std::move(text);
  }
  return pem;
}

absl::Status Paired(const std::string& cert, const std::string& key, const char* cert_var,
                    const char* key_var) {
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(cert.empty() ? key_var : cert_var, " is set but ",
                     cert.empty() ? cert_var : key_var, " is not: give both"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerTls> ServerTlsFromEnv() {
  ServerTls t{Env("SPAR_TLS_CERT"), Env("SPAR_TLS_KEY"), Env("SPAR_TLS_CLIENT_CA")};
  if (absl::Status st = Paired(t.cert_file, t.key_file, "SPAR_TLS_CERT", "SPAR_TLS_KEY");
      !st.ok()) {
    return st;
  }
  if (!t.client_ca_file.empty() && t.cert_file.empty()) {
    return absl::InvalidArgumentError(
        "SPAR_TLS_CLIENT_CA is set but SPAR_TLS_CERT is not: mutual TLS needs the server's own "
        "certificate and key");
  }
  for (auto [path, var] : {std::pair<const std::string&, const char*>{t.cert_file, "SPAR_TLS_CERT"},
                           {t.key_file, "SPAR_TLS_KEY"},
                           {t.client_ca_file, "SPAR_TLS_CLIENT_CA"}}) {
    if (absl::Status st = Readable(path, var); !st.ok()) return st;
  }
  return t;
}

absl::StatusOr<ClientTls> ClientTlsFromEnv() {
  ClientTls t{Env("SPAR_TLS_CA"), Env("SPAR_TLS_CLIENT_CERT"), Env("SPAR_TLS_CLIENT_KEY")};
  if (absl::Status st =
          Paired(t.cert_file, t.key_file, "SPAR_TLS_CLIENT_CERT", "SPAR_TLS_CLIENT_KEY");
      !st.ok()) {
    return st;
  }
  if (!t.cert_file.empty() && t.ca_file.empty()) {
    return absl::InvalidArgumentError(
        "SPAR_TLS_CLIENT_CERT is set but SPAR_TLS_CA is not: a client certificate is sent only "
        "over TLS, which needs the CA to verify the server");
  }
  for (auto [path, var] : {std::pair<const std::string&, const char*>{t.ca_file, "SPAR_TLS_CA"},
                           {t.cert_file, "SPAR_TLS_CLIENT_CERT"},
                           {t.key_file, "SPAR_TLS_CLIENT_KEY"}}) {
    if (absl::Status st = Readable(path, var); !st.ok()) return st;
  }
  return t;
}

absl::StatusOr<TlsPem> ReadPem(const ServerTls& tls) {
  return ReadFiles(tls.cert_file, tls.key_file, tls.client_ca_file);
}

absl::StatusOr<TlsPem> ReadPem(const ClientTls& tls) {
  return ReadFiles(tls.cert_file, tls.key_file, tls.ca_file);
}

}  // namespace spar::services
