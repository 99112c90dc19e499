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
#include "common/status_macros.h"

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
  int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd < 0) return ErrnoStatus("open", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync", path);
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, const char* data, size_t size, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write", path);
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

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
  static std::atomic<uint64_t> counter{0};
  std::string tmp = absl::StrCat(path, ".tmp-", ::getpid(), "-", counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create", tmp);
  absl::Status st = WriteAll(fd, contents.data(), contents.size(), tmp);
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoStatus("fsync", tmp);
  ::close(fd);
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status rs = ErrnoStatus("rename to", path);
    ::unlink(tmp.c_str());
    return rs;
  }
  return FsyncPath(Dirname(path), /*directory=*/true);
}

absl::Status AppendLine(const std::string& path, const std::string& line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("open", path);
  std::string buf = line + "\n";
  absl::Status st = WriteAll(fd, buf.data(), buf.size(), path);
  if (st.ok() && ::fsync(fd) != 0) st = ErrnoStatus("fsync", path);
  ::close(fd);
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
    return absl::InvalidArgumentError(absl::StrCat(what, ": invalid JSON: ", e.what()));
  }
}

absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path) {
  SPAR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseJson(text, path);
}

absl::Status WriteJsonFileAtomic(const std::string& path, const nlohmann::json& value) {
  return WriteFileAtomic(path, value.dump(2) + "\n");
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
          absl::StrCat(path, ":", i + 1, ": invalid JSON line: ", e.what()));
    }
  }
  return rows;
}

absl::Status WriteJsonlAtomic(const std::string& path, const std::vector<nlohmann::json>& rows) {
  std::string out;
  for (const nlohmann::json& r : rows) {
    out += r.dump();
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
