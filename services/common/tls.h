// Native TLS for the services (docs/operations.md#tls): what a server presents and, for mutual
// TLS, which clients it accepts; what a client trusts and the certificate it presents. All PEM
// files, named by the environment of each process (never flags: the edge reads them):
//   server: SPAR_TLS_CERT, SPAR_TLS_KEY (both or neither), SPAR_TLS_CLIENT_CA (mutual TLS: every
//           client must present a certificate this CA signed);
//   client: SPAR_TLS_CA (verify servers against it; set = dial with TLS), SPAR_TLS_CLIENT_CERT and
//           SPAR_TLS_CLIENT_KEY (the certificate a client presents to a mutual-TLS server).
// Without them, plaintext (loopback). gRPC-free.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace spar::services {

struct ServerTls {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;  // "" = no client certificate asked for
  bool enabled() const { return !cert_file.empty(); }
};

struct ClientTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  bool enabled() const { return !ca_file.empty(); }
};

// The PEM contents of a TLS setting's files.
struct TlsPem {
  std::string cert;
  std::string key;
  std::string ca;
};

// InvalidArgument naming the variable when a file is missing or unreadable, or a certificate
// comes without its key (or the reverse), or a client CA without a certificate.
absl::StatusOr<ServerTls> ServerTlsFromEnv();
absl::StatusOr<ClientTls> ClientTlsFromEnv();
// The files' contents; InvalidArgument naming the file when one cannot be read.
absl::StatusOr<TlsPem> ReadPem(const ServerTls& tls);
absl::StatusOr<TlsPem> ReadPem(const ClientTls& tls);

}  // namespace spar::services
