#include "common/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/internal/file_sys_calls.h"
#include "common/status_macros.h"
#include "common/utf8.h"

namespace spar {
namespace {

absl::Status ErrnoStatus(const std::string& what, const std::string& path) {
  int err = errno;
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == ENOSPC) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::Status FsyncPath(const std::string& path, bool directory) {
  internal::FileSysCalls& calls = internal::GetFileSysCalls();
  int fd = calls.Open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY, 0);
  if (fd < 0) return ErrnoStatus("open", path);
  int rc = calls.Fsync(fd);
  absl::Status st = rc != 0 ? ErrnoStatus("fsync", path) : absl::OkStatus();
  calls.Close(fd);
  return st;
}

// Writes all of `data` to `fd` (retrying short writes and EINTR); the error names `path`.
absl::Status WriteAll(int fd, const char* data, size_t size, const std::string& path) {
  internal::FileSysCalls& calls = internal::GetFileSysCalls();
  while (size > 0) {
    ssize_t n = calls.Write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("writing", path);
    if (n == 0) return absl::InternalError(absl::StrCat("writing ", path, ": write returned 0"));
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

namespace internal {

int FileSysCalls::Open(const char* path, int flags, mode_t mode) {
  return ::open(path, flags, mode);
}
ssize_t FileSysCalls::Write(int fd, const void* data, size_t size) {
  return ::write(fd, data, size);
}
int FileSysCalls::Fsync(int fd) { return ::fsync(fd); }
int FileSysCalls::Close(int fd) { return ::close(fd); }

namespace {
FileSysCalls g_real_calls;
std::atomic<FileSysCalls*> g_calls{&g_real_calls};
}  // namespace

FileSysCalls& GetFileSysCalls() { return *g_calls.load(std::memory_order_acquire); }

ScopedFileSysCallsForTesting::ScopedFileSysCallsForTesting(FileSysCalls* calls) {
  g_calls.store(calls, std::memory_order_release);
}
ScopedFileSysCallsForTesting::~ScopedFileSysCallsForTesting() {
  g_calls.store(&g_real_calls, std::memory_order_release);
}

}  // namespace internal

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(
    const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  std::string tmp = absl::StrCat(path, ".tmp-", ::getpid(), "-", counter.fetch_add(1));
  const int fd =
      internal::GetFileSysCalls().Open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create", tmp);
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, std::move(tmp), fd));
}

AtomicFileWriter::AtomicFileWriter(std::string path, std::string tmp, int fd)
    : path_(std::move(path)), tmp_(std::move(tmp)), fd_(fd) {}

AtomicFileWriter::~AtomicFileWriter() {
  if (!done_) Abandon();
}

size_t AtomicFileWriter::Write(const void* data, size_t size) {
  if (status_.ok()) status_ = WriteAll(fd_, static_cast<const char*>(data), size, path_);
  return size;
}

void AtomicFileWriter::Abandon() {
  if (fd_ >= 0) internal::GetFileSysCalls().Close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  done_ = true;
}

absl::Status AtomicFileWriter::Commit() {
  if (done_) return absl::FailedPreconditionError(absl::StrCat(path_, ": committed twice"));
  internal::FileSysCalls& calls = internal::GetFileSysCalls();
  absl::Status st = status_;
  if (st.ok() && calls.Fsync(fd_) != 0) st = ErrnoStatus("fsync", tmp_);
  // close(2) can report a deferred write error (NFS, quotas): the file is not whole then.
  const int closed = calls.Close(fd_);
  if (st.ok() && closed != 0) st = ErrnoStatus("close", tmp_);
  fd_ = -1;
  if (st.ok() && ::rename(tmp_.c_str(), path_.c_str()) != 0) st = ErrnoStatus("rename to", path_);
  if (!st.ok()) {
    Abandon();
    return st;
  }
  done_ = true;
  return FsyncPath(Dirname(path_), /*directory=*/true);
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  if (!b.empty() && b[0] == '/') return b;
  if (a.back() == '/') return a + b;
  return a + "/" + b;
}

std::string Dirname(const std::string& path) {
  size_t pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

absl::StatusOr<std::string> AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return path;
  std::string cwd(4096, '\0');
  if (::getcwd(cwd.data(), cwd.size()) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read the working directory: ", std::strerror(errno)));
  }
  cwd.resize(std::strlen(cwd.c_str()));
  if (path.empty() || path == ".") return cwd;
  return JoinPath(cwd, path.rfind("./", 0) == 0 ? path.substr(2) : path);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (!PathExists(path)) return absl::NotFoundError(absl::StrCat("no such file: ", path));
    return absl::PermissionDeniedError(absl::StrCat("cannot read ", path));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteFileAtomic(const std::string& path, const std::string& contents) {
  SPAR_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> file, AtomicFileWriter::Create(path));
  file->Write(contents.data(), contents.size());
  return file->Commit();
}

absl::Status AppendLine(const std::string& path, const std::string& line) {
  internal::FileSysCalls& calls = internal::GetFileSysCalls();
  int fd = calls.Open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("open", path);
  struct stat before;
  if (::fstat(fd, &before) != 0) {
    absl::Status st = ErrnoStatus("stat", path);
    calls.Close(fd);
    return st;
  }
  std::string buf = line + "\n";
  absl::Status st = WriteAll(fd, buf.data(), buf.size(), path);
  if (st.ok() && calls.Fsync(fd) != 0) st = ErrnoStatus("fsync", path);
  // Cut a partial line off again, so the next append does not continue it (best effort: a
  // reader tolerates a torn tail, not a torn line in the middle).
  if (!st.ok()) (void)::ftruncate(fd, before.st_size);
  if (calls.Close(fd) != 0 && st.ok()) st = ErrnoStatus("close", path);
  return st;
}

bool PathExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

absl::Status MakeDirs(const std::string& path) {
  if (path.empty() || IsDirectory(path)) return absl::OkStatus();
  std::string parent = Dirname(path);
  if (parent != path && parent != "." && parent != "/") SPAR_RETURN_IF_ERROR(MakeDirs(parent));
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoStatus("mkdir", path);
  return absl::OkStatus();
}

absl::Status RemoveAll(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (S_ISDIR(st.st_mode)) {
    SPAR_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(path));
    for (const std::string& n : names) SPAR_RETURN_IF_ERROR(RemoveAll(JoinPath(path, n)));
    if (::rmdir(path.c_str()) != 0) return ErrnoStatus("rmdir", path);
  } else if (::unlink(path.c_str()) != 0) {
    return ErrnoStatus("unlink", path);
  }
  return absl::OkStatus();
}

absl::Status RenameDurable(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return ErrnoStatus("rename " + from + " to", to);
  return FsyncPath(Dirname(to), /*directory=*/true);
}

absl::StatusOr<std::string> ReadSymlink(const std::string& path) {
  std::string buf(4096, '\0');
  ssize_t n = ::readlink(path.c_str(), buf.data(), buf.size());
  if (n < 0) return ErrnoStatus("readlink", path);
  buf.resize(static_cast<size_t>(n));
  return buf;
}

absl::Status ReplaceSymlink(const std::string& target, const std::string& link) {
  absl::StatusOr<std::string> current = ReadSymlink(link);
  if (current.ok() && *current == target) return absl::OkStatus();
  const std::string tmp = link + ".tmp-link";
  if (::unlink(tmp.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink", tmp);
  if (::symlink(target.c_str(), tmp.c_str()) != 0) return ErrnoStatus("symlink", tmp);
  return RenameDurable(tmp, link);
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return ErrnoStatus("opendir", path);
  std::vector<std::string> out;
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    out.push_back(name);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<nlohmann::json> ParseJson(const std::string& text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": invalid JSON: ", EscapeBytes(e.what())));
  }
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  SPAR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseJson(text, path);
}

std::string DumpJson(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::Status WriteJsonFileAtomic(const std::string& path, const nlohmann::json& value) {
  return WriteFileAtomic(path, DumpJson(value, 2) + "\n");
}

absl::StatusOr<std::vector<nlohmann::json>> ReadJsonl(const std::string& path,
                                                      bool allow_torn_tail) {
  SPAR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::vector<nlohmann::json> rows;
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (line.empty()) continue;
    try {
      rows.push_back(nlohmann::json::parse(line));
    } catch (const nlohmann::json::exception& e) {
      bool is_tail = (i + 1 == lines.size());  // no newline after it: torn append
      if (is_tail && allow_torn_tail) break;
      return absl::DataLossError(
          absl::StrCat(path, ":", i + 1, ": invalid JSON line: ", EscapeBytes(e.what())));
    }
  }
  return rows;
}

absl::Status WriteJsonlAtomic(const std::string& path, const std::vector<nlohmann::json>& rows) {
  std::string out;
  for (const nlohmann::json& r : rows) {
    // Invalid UTF-8 in a string becomes U+FFFD instead of an exception that would abort the
    // writer after all the work that produced the rows (issue #12 item 9).
    out += DumpJson(r);
    out += '\n';
  }
  return WriteFileAtomic(path, out);
}

absl::Status CheckKnownKeys(const nlohmann::json& obj, const std::vector<std::string>& known,
                            const std::string& context) {
  if (!obj.is_object()) return absl::InvalidArgumentError(context + ": expected a JSON object");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(known.begin(), known.end(), it.key()) == known.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(context, ": unknown field \"", it.key(), "\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace spar
