// The system calls behind common/file_util's writers (WriteFileAtomic, AtomicFileWriter,
// AppendLine), behind an interface so that tests can inject the failures a full or broken disk
// gives (ENOSPC after N bytes, a failing fsync or close) without needing one: Envoy's OsSysCalls,
// reduced to what the writers use. Production code never installs anything; the real calls are
// the default. Installing is for tests only and is not synchronized with writers running at the
// time (install before, uninstall after); the installed object must be thread-safe itself.
#pragma once

#include <sys/types.h>

#include <cstddef>

namespace spar::internal {

class FileSysCalls {
 public:
  virtual ~FileSysCalls() = default;
  virtual int Open(const char* path, int flags, mode_t mode);
  virtual ssize_t Write(int fd, const void* data, size_t size);
  virtual int Fsync(int fd);
  virtual int Close(int fd);
};

// The calls in effect: the real ones unless a ScopedFileSysCallsForTesting is alive.
FileSysCalls& GetFileSysCalls();

// Routes the writers through `calls` for the lifetime of this object (tests only; not nestable).
class ScopedFileSysCallsForTesting {
 public:
  explicit ScopedFileSysCallsForTesting(FileSysCalls* calls);
  ~ScopedFileSysCallsForTesting();
  ScopedFileSysCallsForTesting(const ScopedFileSysCallsForTesting&) = delete;
  ScopedFileSysCallsForTesting& operator=(const ScopedFileSysCallsForTesting&) = delete;
};

}  // namespace spar::internal
