#include "services/common/connection_watch.h"

#include <dirent.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace spar::services {
namespace {

// The local port of socket `fd` and its peer ("addr:port" as httplib names it), when `fd` is a
// connected TCP socket.
bool ConnectedSocket(int fd, int* local_port, std::string* peer) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  sockaddr_storage local{}, remote{};
  socklen_t local_len = sizeof(local), remote_len = sizeof(remote);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) return false;
  if (local.ss_family == AF_INET) {
    *local_port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
  } else if (local.ss_family == AF_INET6) {
    *local_port = ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port);
  } else {
    return false;
  }
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &remote_len) != 0) return false;
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&remote), remote_len, host, sizeof(host), port,
                    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return false;
  }
  *peer = absl::StrCat(host, ":", port);
  return true;
}

// Whether the peer of `fd` has closed its side (a zero-byte read; data still unread is not EOF).
bool PeerClosed(int fd) {
  char byte;
  return ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

}  // namespace

struct ConnectionWatch::Impl {
  struct Conn {
    absl::Time since;  // accepted, or its last request served
    int busy = 0;      // handlers serving it now
    bool gone = false;
    bool seen = false;  // by the last scan
  };

  Options options;
  mutable std::mutex mu;
  std::map<std::string, Conn> conns;  // by peer; guarded by mu
  absl::Notification stop;
  std::thread thread;

  void Scan() {
    const absl::Time now = absl::Now();
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [peer, c] : conns) c.seen = false;
    DIR* dir = ::opendir("/proc/self/fd");
    if (dir == nullptr) return;
    while (dirent* e = ::readdir(dir)) {
      int fd = -1;
      if (!absl::SimpleAtoi(e->d_name, &fd) || fd == ::dirfd(dir)) continue;
      int port = 0;
      std::string peer;
      if (!ConnectedSocket(fd, &port, &peer) || port != options.port) continue;
      auto [it, added] = conns.try_emplace(peer);
      Conn& c = it->second;
      if (added) c.since = now;
      c.seen = true;
      if (PeerClosed(fd)) c.gone = true;
      if (c.busy == 0 && now - c.since > options.request_deadline) {
        // Checked and cut in one step, on the fd just identified by its peer.
        ::shutdown(fd, SHUT_RDWR);
        c.since = now;  // once per deadline, while httplib closes it
        if (options.on_cut) options.on_cut();
        SPAR_LOG(Warning) << "http: cut " << peer << ": no request completed in "
                          << absl::FormatDuration(options.request_deadline);
      }
    }
    ::closedir(dir);
    for (auto it = conns.begin(); it != conns.end();) {
      it = it->second.seen || it->second.busy > 0 ? std::next(it) : conns.erase(it);
    }
  }
};

ConnectionWatch::ConnectionWatch(Options options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  Impl* self = impl_.get();
  impl_->thread = std::thread([self] {
    while (!self->stop.WaitForNotificationWithTimeout(self->options.scan_interval)) self->Scan();
  });
}

ConnectionWatch::~ConnectionWatch() {
  impl_->stop.Notify();
  impl_->thread.join();
}

std::string ConnectionWatch::Peer(const std::string& remote_addr, int remote_port) {
  return absl::StrCat(remote_addr, ":", remote_port);
}

ConnectionWatch::Busy::Busy(ConnectionWatch* watch, std::string peer)
    : watch_(watch), peer_(std::move(peer)) {
  std::lock_guard<std::mutex> lock(watch_->impl_->mu);
  auto [it, added] = watch_->impl_->conns.try_emplace(peer_);
  if (added) it->second.since = absl::Now();
  ++it->second.busy;
}

ConnectionWatch::Busy::~Busy() {
  std::lock_guard<std::mutex> lock(watch_->impl_->mu);
  auto it = watch_->impl_->conns.find(peer_);
  if (it == watch_->impl_->conns.end()) return;
  if (--it->second.busy == 0) it->second.since = absl::Now();  // the next request's deadline
}

bool ConnectionWatch::PeerGone(const std::string& peer) const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->conns.find(peer);
  return it != impl_->conns.end() && it->second.gone;
}

}  // namespace spar::services
