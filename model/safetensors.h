// Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
//   8 bytes little-endian u64 N | N bytes of JSON header (space-padded to a multiple of 8) | buffer
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
// relative to the buffer, tiling it contiguously from 0) plus an optional "__metadata__"
// string->string map. Pure C++ (no torch): model/policy.cc converts to and from tensors.
// Thread-compatible.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spar::model {

enum class SafetensorsDType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32 ...; InvalidArgument for an unknown name.
absl::StatusOr<SafetensorsDType> ParseSafetensorsDType(std::string_view name);
std::string_view SafetensorsDTypeName(SafetensorsDType dtype);
// Bytes per element.
size_t SafetensorsDTypeSize(SafetensorsDType dtype);

// Largest header accepted, as the reference implementation.
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

struct SafetensorsEntry {
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;  // empty = scalar
  uint64_t begin = 0;          // byte offsets into the data buffer
  uint64_t end = 0;
};

// A parsed file. Holds its bytes (in memory, or a read-only memory map of the file that is
// unmapped when the last copy of this object goes); Data() views them.
class SafetensorsFile {
 public:
  // The bytes behind a file: a string or a memory map.
  class Storage {
   public:
    virtual ~Storage() = default;
    virtual std::string_view bytes() const = 0;
  };

  // Parses and validates `bytes`: header length within the file and <= 100 MB, header a JSON
  // object, known dtypes, shapes of non-negative integers, offsets matching shape x dtype size and
  // tiling the buffer without gap or overlap. InvalidArgument with the reason otherwise.
  static absl::StatusOr<SafetensorsFile> Parse(std::string bytes);
  // Memory-maps the file read-only (no copy into memory: tensor bytes are read from the page
  // cache when a caller converts them) + Parse's checks. NotFound when the file is missing;
  // errors are prefixed with the path.
  static absl::StatusOr<SafetensorsFile> Read(const std::string& path);

  const std::map<std::string, SafetensorsEntry>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The entry's bytes; valid while this object (or a copy) lives.
  std::string_view Data(const SafetensorsEntry& entry) const {
    return storage_->bytes().substr(data_start_ + entry.begin, entry.end - entry.begin);
  }
  // True when the bytes are a memory map of the file (Read), false when in memory (Parse).
  bool mapped() const { return mapped_; }
  // Done with the entry's bytes for now: for a mapped file its whole pages leave this process's
  // resident memory (madvise MADV_DONTNEED; they stay in the page cache), so converting tensors
  // one at a time never holds the whole file. Data() stays valid (re-read on access). No-op for
  // in-memory bytes.
  void Release(const SafetensorsEntry& entry) const;

 private:
  static absl::StatusOr<SafetensorsFile> ParseStorage(std::shared_ptr<const Storage> storage);

  std::shared_ptr<const Storage> storage_;
  bool mapped_ = false;
  uint64_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct SafetensorsTensorRef {
  std::string name;
  SafetensorsDType dtype = SafetensorsDType::kF32;
  std::vector<int64_t> shape;
  std::string_view data;  // little-endian element bytes, row-major; size must match the shape
};

// Serializes `tensors` in the given order (offsets follow that order). InvalidArgument for a
// duplicate or reserved name ("__metadata__") or a data size that does not match the shape.
absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<SafetensorsTensorRef>& tensors,
    const std::map<std::string, std::string>& metadata = {});

// SerializeSafetensors + an atomic write (temp file, fsync, rename).
absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<SafetensorsTensorRef>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace spar::model
