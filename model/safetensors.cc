#include "model/safetensors.h"

#include <algorithm>
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
    {SafetensorsDType::kF64, "F64", 8},  {SafetensorsDType::kF32, "F32", 4},
    {SafetensorsDType::kF16, "F16", 2},  {SafetensorsDType::kBF16, "BF16", 2},
    {SafetensorsDType::kI64, "I64", 8},  {SafetensorsDType::kI32, "I32", 4},
    {SafetensorsDType::kI16, "I16", 2},  {SafetensorsDType::kI8, "I8", 1},
    {SafetensorsDType::kU8, "U8", 1},    {SafetensorsDType::kBool, "BOOL", 1},
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

}  // namespace

absl::StatusOr<SafetensorsDType> ParseSafetensorsDType(std::string_view name) {
  for (const auto& info : kDTypes) {
    if (info.name == name) return info.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("safetensors: unknown dtype \"", std::string(name), "\""));
}

std::string_view SafetensorsDTypeName(SafetensorsDType dtype) { return Info(dtype).name; }
size_t SafetensorsDTypeSize(SafetensorsDType dtype) { return Info(dtype).size; }

absl::StatusOr<SafetensorsFile> SafetensorsFile::Parse(std::string bytes) {
  if (bytes.size() < 8) {
    return absl::InvalidArgumentError(absl::StrCat(
        "safetensors: file is ", bytes.size(), " bytes, too short for the 8-byte header length"));
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  if (n > kMaxSafetensorsHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: bad header length ", n,
                                                   " (limit ", kMaxSafetensorsHeaderBytes, ")"));
  }
  if (n > bytes.size() - 8) {
    return absl::InvalidArgumentError(absl::StrCat("safetensors: bad header length ", n,
                                                   ": file has only ", bytes.size() - 8,
                                                   " bytes after the length"));
  }
  const std::string header_text = bytes.substr(8, n);
  nlohmann::json header = nlohmann::json::parse(header_text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    return absl::InvalidArgumentError("safetensors: header is not valid JSON");
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError("safetensors: header is not a JSON object");
  }
  SafetensorsFile file;
  file.data_start_ = 8 + n;
  const uint64_t buffer_size = bytes.size() - file.data_start_;
  std::vector<std::pair<std::pair<uint64_t, uint64_t>, std::string>> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) {
        return absl::InvalidArgumentError("safetensors: __metadata__ is not an object");
      }
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat("safetensors: __metadata__.", m.key(), " is not a string"));
        }
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
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
    if (off == v.end() || !off->is_array() || off->size() != 2 ||
        !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
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
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": size mismatch: data_offsets span ", entry.end - entry.begin,
          " bytes but shape x dtype needs ", expected));
    }
    spans.push_back({{entry.begin, entry.end}, name});
    file.tensors_.emplace(name, std::move(entry));
  }
  std::sort(spans.begin(), spans.end());
  uint64_t cursor = 0;
  for (const auto& [span, name] : spans) {
    if (span.first < cursor) {
      return absl::InvalidArgumentError(absl::StrCat(
          "safetensors: tensor \"", name, "\" overlaps the previous tensor (offsets overlap at ",
          span.first, ")"));
    }
    if (span.first > cursor) {
      return absl::InvalidArgumentError(absl::StrCat("safetensors: gap in the data buffer at [",
                                                     cursor, ", ", span.first, ") before tensor \"",
                                                     name, "\""));
    }
    cursor = span.second;
  }
  if (cursor != buffer_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors: size mismatch: tensors cover ", cursor,
                     " bytes but the data buffer holds ", buffer_size));
  }
  file.bytes_ = std::move(bytes);
  return file;
}

absl::StatusOr<SafetensorsFile> SafetensorsFile::Read(const std::string& path) {
  if (!PathExists(path)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  SPAR_ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  absl::StatusOr<SafetensorsFile> file = Parse(std::move(bytes));
  if (!file.ok()) {
    return absl::Status(file.status().code(), absl::StrCat(path, ": ", file.status().message()));
  }
  return file;
}

absl::StatusOr<std::string> SerializeSafetensors(const std::vector<SafetensorsTensorRef>& tensors,
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
  std::string text = header.dump();
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
