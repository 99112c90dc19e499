// HostileJudge: a small, independent HTTP/1.1 server on raw sockets (127.0.0.1:0) that plays a
// misbehaving OpenAI-compatible judge (issue #12 items 3, 9, 10). Request n (1-based, counted
// across connections) gets what the plan says: a clean answer forwarded to an honest upstream
// (a JudgeServer, so verdicts are real and the upstream counts what was paid), a canned status +
// body, a body dripped one byte at a time, a body cut short (Content-Length promises more; the
// connection closes), or a connection reset (RST). Keep-alive like a real server; any fault
// closes the connection. The only waits are the drip's, by design.
//
// Thread-safe; one thread per connection. The destructor stops everything and joins.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace spar::judge {

class HostileJudge {
 public:
  enum class Fault { kForward, kStatus, kDrip, kCutShort, kReset };
  struct Reply {
    Fault fault = Fault::kForward;
    int status = 200;                                          // kStatus, kDrip, kCutShort
    std::string body;                                          // kStatus, kDrip, kCutShort
    std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
    absl::Duration drip_interval = absl::Milliseconds(50);     // kDrip: one byte each
  };
  // Called with the request number and the request's header block (request line included).
  using Plan = std::function<Reply(int64_t n, const std::string& request_headers)>;

  // `upstream_host_port` ("127.0.0.1:1234", may be "" when the plan never forwards).
  HostileJudge(Plan plan, std::string upstream_host_port);
  ~HostileJudge();
  HostileJudge(const HostileJudge&) = delete;
  HostileJudge& operator=(const HostileJudge&) = delete;

  bool ok() const { return listen_fd_ >= 0; }
  int port() const { return port_; }
  std::string base_url() const;
  int64_t requests() const { return requests_.load(); }
  // How many requests got each fault.
  int64_t count(Fault f) const;

 private:
  void AcceptLoop();
  void Serve(int fd);
  bool Respond(int fd, const std::string& headers, const std::string& body, void* upstream);

  Plan plan_;
  std::string upstream_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> requests_{0};
  mutable std::mutex mu_;
  std::map<Fault, int64_t> counts_;   // guarded by mu_
  std::vector<int> fds_;              // open connections, guarded by mu_
  std::vector<std::thread> threads_;  // guarded by mu_
  std::thread acceptor_;
};

}  // namespace spar::judge
