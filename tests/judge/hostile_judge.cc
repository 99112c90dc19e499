#include "tests/judge/hostile_judge.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace spar::judge {
namespace {

bool SendAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t k = ::send(fd, data, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    data += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

std::string Head(int status, size_t content_length,
                 const std::vector<std::pair<std::string, std::string>>& extra) {
  std::string h = absl::StrCat("HTTP/1.1 ", status, " X\r\nContent-Type: application/json\r\n",
                               "Content-Length: ", content_length, "\r\n");
  for (const auto& [k, v] : extra) absl::StrAppend(&h, k, ": ", v, "\r\n");
  return h + "\r\n";
}

size_t ContentLength(const std::string& headers) {
  for (absl::string_view line : absl::StrSplit(headers, "\r\n")) {
    if (absl::StartsWithIgnoreCase(line, "content-length:")) {
      size_t n = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &n)) return n;
    }
  }
  return 0;
}

}  // namespace

HostileJudge::HostileJudge(Plan plan, std::string upstream_host_port)
    : plan_(std::move(plan)), upstream_(std::move(upstream_host_port)) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 64) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return;
  }
  listen_fd_ = fd;
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

HostileJudge::~HostileJudge() {
  stopping_ = true;
  if (listen_fd_ < 0) return;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
  ::close(listen_fd_);
}

std::string HostileJudge::base_url() const {
  return absl::StrCat("http://127.0.0.1:", port_, "/v1");
}

int64_t HostileJudge::count(Fault f) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(f);
  return it == counts_.end() ? 0 : it->second;
}

void HostileJudge::AcceptLoop() {
  for (;;) {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0 || stopping_) {
      if (fd >= 0) ::close(fd);
      return;
    }
    int one = 1;  // headers and body are separate writes: no Nagle + delayed-ACK stalls
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    std::lock_guard<std::mutex> lock(mu_);
    fds_.push_back(fd);
    threads_.emplace_back([this, fd] { Serve(fd); });
  }
}

// Reads requests off one connection until it closes or a fault closes it.
void HostileJudge::Serve(int fd) {
  std::unique_ptr<httplib::Client> upstream;
  if (!upstream_.empty()) upstream = std::make_unique<httplib::Client>(upstream_);
  std::string buf;
  char chunk[4096];
  bool open = true;
  while (open && !stopping_) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      ssize_t k = ::recv(fd, chunk, sizeof(chunk), 0);
      if (k <= 0) {
        open = false;
        break;
      }
      buf.append(chunk, static_cast<size_t>(k));
    }
    if (!open) break;
    std::string headers = buf.substr(0, end);
    const size_t body_len = ContentLength(headers);
    buf.erase(0, end + 4);
    while (buf.size() < body_len) {
      ssize_t k = ::recv(fd, chunk, sizeof(chunk), 0);
      if (k <= 0) {
        open = false;
        break;
      }
      buf.append(chunk, static_cast<size_t>(k));
    }
    if (!open) break;
    std::string body = buf.substr(0, body_len);
    buf.erase(0, body_len);
    open = Respond(fd, headers, body, upstream.get());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (int& f : fds_) {
      if (f == fd) f = -1;
    }
  }
  ::close(fd);
}

// Answers one request; false when the connection must close.
bool HostileJudge::Respond(int fd, const std::string& headers, const std::string& body,
                           void* upstream_client) {
  const int64_t n = ++requests_;
  Reply r = plan_(n, headers);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_[r.fault];
  }
  switch (r.fault) {
    case Fault::kForward: {
      auto* up = static_cast<httplib::Client*>(upstream_client);
      std::string path = headers.substr(headers.find(' ') + 1);
      path = path.substr(0, path.find(' '));
      httplib::Result res = up->Post(path, body, "application/json");
      if (!res) return false;
      std::string h = Head(res->status, res->body.size(), r.headers);
      return SendAll(fd, h.data(), h.size()) && SendAll(fd, res->body.data(), res->body.size());
    }
    case Fault::kStatus: {
      std::string h = Head(r.status, r.body.size(), r.headers);
      return SendAll(fd, h.data(), h.size()) && SendAll(fd, r.body.data(), r.body.size());
    }
    case Fault::kDrip: {
      std::string h = Head(r.status, r.body.size(), r.headers);
      if (!SendAll(fd, h.data(), h.size())) return false;
      for (char c : r.body) {
        if (stopping_ || !SendAll(fd, &c, 1)) return false;
        absl::SleepFor(r.drip_interval);  // the fault itself: one byte per interval
      }
      return false;
    }
    case Fault::kCutShort: {
      std::string h = Head(r.status, r.body.size(), r.headers);
      SendAll(fd, h.data(), h.size());
      SendAll(fd, r.body.data(), r.body.size() / 2);
      return false;
    }
    case Fault::kReset: {
      linger l{1, 0};  // close with RST
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
      return false;
    }
  }
  return false;
}

}  // namespace spar::judge
