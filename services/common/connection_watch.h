// What an httplib server cannot do by itself, for the connections it accepted on one port: a
// whole-request deadline (httplib's read timeout is per read, so a client dripping a byte every
// two seconds holds a worker forever, and a dozen of them starve /health), and knowing that a
// client has left (so a long generation for a closed connection stops instead of blocking the
// next request). A watcher thread scans this process's sockets (/proc/self/fd) every
// `scan_interval`; a connection that is not being served by a handler (Busy) and has not
// completed a request for `request_deadline` is shut down, which ends the worker's read. Linux
// only. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"

namespace spar::services {

class ConnectionWatch {
 public:
  struct Options {
    int port = 0;  // the server's listening port
    // Reading one request (headers and body), or waiting between requests on a kept-alive
    // connection, may take at most this long.
    absl::Duration request_deadline = absl::Seconds(30);
    absl::Duration scan_interval = absl::Milliseconds(200);
    std::function<void()> on_cut;  // called (on the watcher thread) for each connection cut
  };

  explicit ConnectionWatch(Options options);
  ~ConnectionWatch();  // stops the watcher thread
  ConnectionWatch(const ConnectionWatch&) = delete;
  ConnectionWatch& operator=(const ConnectionWatch&) = delete;

  // Held by a handler while it serves the peer (httplib's remote_addr, remote_port): its
  // connection is not cut meanwhile; when the last Busy ends, the request deadline restarts.
  class Busy {
   public:
    Busy(ConnectionWatch* watch, std::string peer);
    ~Busy();
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;

   private:
    ConnectionWatch* watch_;
    std::string peer_;
  };
  static std::string Peer(const std::string& remote_addr, int remote_port);

  // Whether the peer's connection is gone: closed by the client (EOF seen) or no longer open.
  // False until the watcher has seen the connection once.
  bool PeerGone(const std::string& peer) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace spar::services
