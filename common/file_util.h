// File IO with the durability protocol of ARCHITECTURE.md: whole files are written under a
// temporary name, fsynced, renamed over the target and the directory fsynced, so a reader sees
// either the old or the new file, never a torn one. JSONL helpers for the run directory.
// Every write, fsync and close is checked: a full disk is ResourceExhausted naming the file and
// "No space left on device", and a failed write leaves no temporary behind.
// All functions are thread-safe with respect to distinct paths.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace spar {

absl::StatusOr<std::string> ReadFile(const std::string& path);
// Atomically replaces `path` with `contents` (temp + fsync + rename + fsync dir).
absl::Status WriteFileAtomic(const std::string& path, const std::string& contents);
// Appends one line (a '\n' is added) and fsyncs; for append-only logs such as events.jsonl.
// A failed append is cut off again (ftruncate), so the next one does not follow a torn line.
absl::Status AppendLine(const std::string& path, const std::string& line);

// One file written durably by a producer that streams its bytes (LibTorch's archive writer, a
// serializer): they go to a temporary beside `path` ("<path>.tmp-<pid>-<n>"), and Commit()
// fsyncs and closes it, renames it over `path` and fsyncs the directory. The first failed write
// is remembered; later writes are skipped but still report their full size, so a producer that
// cannot stop midway finishes normally (LibTorch throws from a destructor on a short write, which
// terminates the process); Commit() then returns that error. A writer destroyed without a
// successful Commit() removes its temporary. Not thread-safe.
class AtomicFileWriter {
 public:
  // Creates the temporary; the error names it (ResourceExhausted on ENOSPC).
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends `size` bytes; always returns `size` (see above). Check status() or Commit().
  size_t Write(const void* data, size_t size);
  // The first write error, OK while every write succeeded.
  const absl::Status& status() const { return status_; }
  // Publishes the file (see above). On any error the temporary is removed and `path` keeps its
  // old contents, except when only the final directory fsync fails. Call at most once.
  absl::Status Commit();

 private:
  AtomicFileWriter(std::string path, std::string tmp, int fd);
  void Abandon();

  const std::string path_, tmp_;
  int fd_;
  absl::Status status_;
  bool done_ = false;
};

bool PathExists(const std::string& path);
bool IsDirectory(const std::string& path);
// mkdir -p.
absl::Status MakeDirs(const std::string& path);
// rm -rf; OK when the path does not exist.
absl::Status RemoveAll(const std::string& path);
// rename(2) + fsync of the parent directory.
absl::Status RenameDurable(const std::string& from, const std::string& to);
// Points the symbolic link `link` at `target`, stored as given (relative targets resolve against
// the link's directory): a temporary link beside it is renamed over `link` and the directory
// fsynced, so a reader sees the old or the new target, never no link. `link` must not be a
// directory. Does nothing when the link already holds `target`.
absl::Status ReplaceSymlink(const std::string& target, const std::string& link);
// The target stored in symbolic link `path` (readlink(2)); NotFound when there is none.
absl::StatusOr<std::string> ReadSymlink(const std::string& path);
// Directory entries (names only, no "." / ".."), sorted.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& path);
std::string JoinPath(const std::string& a, const std::string& b);
std::string Dirname(const std::string& path);
// `path` made absolute against the working directory ("" and "." are the working directory);
// an absolute path is returned as is. Nothing is resolved (no symlinks, no "..").
absl::StatusOr<std::string> AbsolutePath(const std::string& path);

// Parses `text` as JSON; the error names `what` (a file path or field) and the parser's message
// (with any input bytes it quotes escaped: EscapeBytes).
absl::StatusOr<nlohmann::json> ParseJson(const std::string& text, const std::string& what);
// The product's one JSON writer: `value` as text (`indent` as nlohmann's dump). Never throws on
// text: a string holding invalid UTF-8 (a Latin-1 file, an engine's cut error page) is written
// with U+FFFD in place of each ill-formed sequence. Use it instead of json::dump, which throws.
std::string DumpJson(const nlohmann::json& value, int indent = -1);
absl::StatusOr<nlohmann::json> ReadJsonFile(const std::string& path);
absl::Status WriteJsonFileAtomic(const std::string& path, const nlohmann::json& value);

// JSONL: one JSON object per line. A trailing partial line (a crash mid-append) is an error
// naming the line number unless `allow_torn_tail` is set, in which case it is dropped.
absl::StatusOr<std::vector<nlohmann::json>> ReadJsonl(const std::string& path,
                                                      bool allow_torn_tail = false);
absl::Status WriteJsonlAtomic(const std::string& path, const std::vector<nlohmann::json>& rows);

// Rejects keys of `obj` not in `known`: "<context>: unknown field \"x\"".
absl::Status CheckKnownKeys(const nlohmann::json& obj, const std::vector<std::string>& known,
                            const std::string& context);

}  // namespace spar
