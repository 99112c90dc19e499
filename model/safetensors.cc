#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace spar::model {
namespace {

struct DTypeInfo {
  SafetensorsDType dtype;
  std::string_view name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {SafetensorsDType::kF64, "F64", 8}, {SafetensorsDType::kF32, "F32", 4},
    {SafetensorsDType::kF16, "F16", 2}, {SafetensorsDType::kBF16, "BF16", 2},
    {SafetensorsDType::kI64, "I64", 8}, {SafetensorsDType::kI32, "I32", 4},
    {SafetensorsDType::kI16, "I16", 2}, {SafetensorsDType::kI8, "I8", 1},
    {SafetensorsDType::kU8, "U8", 1},   {SafetensorsDType::kBool, "BOOL", 1},
};

const DTypeInfo& Info(SafetensorsDType dtype) {
  for (const auto& info : kDTypes) {
    if (info.dtype == dtype) return info;
  }
  return kDTypes[1];
}

// numel * element size, or an error on overflow / negative dims.
absl::StatusOr<uint64_t> ByteSize(const std::vector<int64_t>& shape, SafetensorsDType dtype,
                                  const std::string& name) {
  uint64_t n = SafetensorsDTypeSize(dtype);
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor \"", name, "\" has a negative dimension ", d));
    }
    if (d != 0 && n > UINT64_MAX / static_cast<uint64_t>(d)) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor \"", name, "\" is too large"));
    }
    n *= static_cast<uint64_t>(d);
  }
  return n;
}

class StringStorage : public SafetensorsFile::Storage {
 public:
  explicit StringStorage(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string_view bytes() const override { return bytes_; }

 private:
  std::string bytes_;
};

class MappedStorage : public SafetensorsFile::Storage {
 public:
  MappedStorage(void* addr, size_t size) : addr_(addr), size_(size) {}
  ~MappedStorage() override {
    if (addr_ != nullptr) ::munmap(addr_, size_);
  }
  MappedStorage(const MappedStorage&) = delete;
  MappedStorage& operator=(const MappedStorage&) = delete;
  std::string_view bytes() const override {
    return std::string_view(static_cast<const char*>(addr_), size_);
  }

 private:
  void* addr_;
  size_t size_;
};

// Read-only private map of the whole file (an empty file gets an empty string storage).
absl::StatusOr<std::shared_ptr<const SafetensorsFile::Storage>> MapFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::UnavailableError(absl::StrCat(path, ": open: ", std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(absl::StrCat(path, ": fstat: ", std::strerror(err)));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return std::shared_ptr<const SafetensorsFile::Storage>(std::make_shared<StringStorage>(""));
  }
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (addr == MAP_FAILED) {
    return absl::UnavailableError(absl::StrCat(path, ": mmap: ", std::strerror(err)));
  }
  // Loading reads every tensor once, front to back.
  ::madvise(addr, size, MADV_SEQUENTIAL);
  return std::shared_ptr<const SafetensorsFile::Storage>(
      std::make_shared<MappedStorage>(addr, size));
}

// The JSON header after the 8-byte little-endian length; `header_bytes` gets that length.
absl::StatusOr<nlohmann::json> ParseHeader(std::string_view bytes, uint64_t* header_bytes) {
  if (bytes.size() < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "safetensors: file is ", bytes.size(), " bytes, too short for the 8-byte header length"));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: bad header length ", n, " (limit ",
                                                   kMaxSafetensorsHeaderBytes, ")"));
  }
  if (n > bytes.size() - 8) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: bad header length ", n,
                                                   ": file has only ", bytes.size() - 8,
                                                   " bytes after the length"));
  }
  const std::string header_text(bytes.substr(8, n));
  nlohmann::json header = nlohmann::json::parse(header_text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    return absl::InvalidArgumentError("safetensors: header is not valid JSON");
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError("safetensors: header is not a JSON object");
  }
  *header_bytes = n;
  return header;
}

absl::Status ParseMetadata(const nlohmann::json& v, std::map<std::string, std::string>* out) {
  if (!v.is_object()) {
    return absl::InvalidArgumentError("safetensors: __metadata__ is not an object");
  }
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: __metadata__.", m.key(), " is not a string"));
    }
    (*out)[m.key()] = m.value().get<std::string>();
  }
  return absl::OkStatus();
}

// One tensor's header entry: dtype, shape and data_offsets, its size matching shape x dtype.
absl::StatusOr<SafetensorsEntry> ParseEntry(const std::string& name, const nlohmann::json& v) {
  const std::string where = absl::StrCat("safetensors: tensor \"", name, "\"");
  if (!v.is_object()) return absl::InvalidArgumentError(where + " is not an object");
  auto dt = v.find("dtype");
  auto sh = v.find("shape");
  auto off = v.find("data_offsets");
  if (dt == v.end() || !dt->is_string()) {
    return absl::InvalidArgumentError(where + ": missing or non-string \"dtype\"");
  }
  if (sh == v.end() || !sh->is_array()) {
    return absl::InvalidArgumentError(where + ": missing or non-array \"shape\"");
  }
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned()) {
    return absl::InvalidArgumentError(where +
                                      ": \"data_offsets\" must be two non-negative integers");
  }
  SafetensorsEntry entry;
  absl::StatusOr<SafetensorsDType> dtype = ParseSafetensorsDType(dt->get<std::string>());
  if (!dtype.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": unknown dtype \"", dt->get<std::string>(), "\""));
  }
  entry.dtype = *dtype;
  for (const auto& d : *sh) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) {
      return absl::InvalidArgumentError(where + ": shape must hold non-negative integers");
    }
    entry.shape.push_back(d.get<int64_t>());
  }
  entry.begin = (*off)[0].get<uint64_t>();
  entry.end = (*off)[1].get<uint64_t>();
  if (entry.end < entry.begin) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": data_offsets [", entry.begin, ", ",
                                                   entry.end, "] end before begin"));
  }
  SPAR_ASSIGN_OR_RETURN(uint64_t expected, ByteSize(entry.shape, entry.dtype, name));
  if (entry.end - entry.begin != expected) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": size mismatch: data_offsets span ",
                                                   entry.end - entry.begin,
                                                   " bytes but shape x dtype needs ", expected));
  }
  return entry;
}

// The tensors must tile the data buffer: sorted by offset, no overlap, no gap, nothing after.
absl::Status CheckTiling(std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> spans,
                         uint64_t buffer_size) {
  std::sort(spans.begin(), spans.end());
  uint64_t cursor = 0;
  for (const auto& [span, name] : spans) {
    if (span.first < cursor) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor \"", name,
                       "\" overlaps the previous tensor (offsets overlap at ", span.first, ")"));
    }
    if (span.first > cursor) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: gap in the data buffer at [",
                                                     cursor, ", ", span.first, ") before tensor \"",
                                                     name, "\""));
    }
    cursor = span.second;
  }
  if (cursor != buffer_size) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: size mismatch: tensors cover ",
                                                   cursor, " bytes but the data buffer holds ",
                                                   buffer_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SafetensorsDType> ParseSafetensorsDType(std::string_view name) {
  for (const auto& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors: unknown dtype \"", std::string(name), "\""));
}

std::string_view SafetensorsDTypeName(SafetensorsDType dtype) { return Info(dtype).name; }
size_t SafetensorsDTypeSize(SafetensorsDType dtype) { return Info(dtype).size; }

absl::StatusOr<SafetensorsFile> SafetensorsFile::Parse(std::string bytes) {
  return ParseStorage(std::make_shared<StringStorage>(std::move(bytes)));
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::ParseStorage(
    std::shared_ptr<const Storage> storage) {
  const std::string_view bytes = storage->bytes();
  uint64_t header_bytes = 0;
  SPAR_ASSIGN_OR_RETURN(nlohmann::json header, ParseHeader(bytes, &header_bytes));
  SafetensorsFile file;
  file.data_start_ = 8 + header_bytes;
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      SPAR_RETURN_IF_ERROR(ParseMetadata(it.value(), &file.metadata_));
      continue;
    }
    SPAR_ASSIGN_OR_RETURN(SafetensorsEntry entry, ParseEntry(name, it.value()));
    spans.push_back({{entry.begin, entry.end}, name});
    file.tensors_.emplace(name, std::move(entry));
  }
  SPAR_RETURN_IF_ERROR(CheckTiling(std::move(spans), bytes.size() - file.data_start_));
  file.storage_ = std::move(storage);
  return file;
}

void SafetensorsFile::Release(const SafetensorsEntry& entry) const {
  if (!mapped_) return;
  const std::string_view all = storage_->bytes();
  const uintptr_t base = reinterpret_cast<uintptr_t>(all.data());
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = base + data_start_ + entry.begin;
  const uintptr_t end = base + data_start_ + entry.end;
  // Whole pages inside [begin, end) only: neighbours' bytes stay resident.
  const uintptr_t first = (begin + page - 1) / page * page;
  const uintptr_t last = end / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Read(const std::string& path) {
  if (!PathExists(path)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  SPAR_ASSIGN_OR_RETURN(std::shared_ptr<const Storage> storage, MapFile(path));
  const bool mapped = dynamic_cast<const MappedStorage*>(storage.get()) != nullptr;
  absl::StatusOr<SafetensorsFile> file = ParseStorage(std::move(storage));
  if (!file.ok()) {
    return absl::Status(file.status().code(), absl::StrCat(path, ": ", file.status().message()));
  }
  file->mapped_ = mapped;
  return file;
}

absl::StatusOr<std::string> SerializeSafetensors(
    const std::vector<SafetensorsTensorRef>& tensors,
    const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) {
    nlohmann::json meta = nlohmann::json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__" || t.name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: reserved or empty tensor name \"", t.name, "\""));
    }
    if (!names.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: duplicate tensor name \"", t.name, "\""));
    }
    SPAR_ASSIGN_OR_RETURN(uint64_t size, ByteSize(t.shape, t.dtype, t.name));
    if (size != t.data.size()) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: tensor \"", t.name, "\" has ",
                                                     t.data.size(), " bytes, shape needs ", size));
    }
    header[t.name] = {{"dtype", std::string(SafetensorsDTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = DumpJson(header);
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const auto& t : tensors) out.append(t.data.data(), t.data.size());
  return out;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::vector<SafetensorsTensorRef>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  SPAR_ASSIGN_OR_RETURN(std::string bytes, SerializeSafetensors(tensors, metadata));
  return WriteFileAtomic(path, bytes);
}

}  // namespace spar::model
