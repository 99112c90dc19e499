#include "services/cli/inspect_command.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "model/safetensors.h"

namespace spar::cli {
namespace {

double HalfToDouble(uint16_t h) {
  const int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  double v;
  if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -24);
  } else if (exp == 31) {
    v = mant == 0 ? INFINITY : NAN;
  } else {
    v = std::ldexp(static_cast<double>(mant | 0x400), exp - 25);
  }
  return sign ? -v : v;
}

double BfloatToDouble(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

template <typename T>
double SumAs(std::string_view data) {
  double sum = 0;
  for (size_t i = 0; i + sizeof(T) <= data.size(); i += sizeof(T)) {
    T v;
    std::memcpy(&v, data.data() + i, sizeof(T));
    sum += static_cast<double>(v);
  }
  return sum;
}

double Sum(model::SafetensorsDType dtype, std::string_view data) {
  using model::SafetensorsDType;
  switch (dtype) {
    case SafetensorsDType::kF64:
      return SumAs<double>(data);
    case SafetensorsDType::kF32:
      return SumAs<float>(data);
    case SafetensorsDType::kI64:
      return SumAs<int64_t>(data);
    case SafetensorsDType::kI32:
      return SumAs<int32_t>(data);
    case SafetensorsDType::kI16:
      return SumAs<int16_t>(data);
    case SafetensorsDType::kI8:
      return SumAs<int8_t>(data);
    case SafetensorsDType::kU8:
    case SafetensorsDType::kBool:
      return SumAs<uint8_t>(data);
    case SafetensorsDType::kF16:
    case SafetensorsDType::kBF16: {
      double sum = 0;
      for (size_t i = 0; i + 2 <= data.size(); i += 2) {
        uint16_t v;
        std::memcpy(&v, data.data() + i, 2);
        sum += dtype == SafetensorsDType::kF16 ? HalfToDouble(v) : BfloatToDouble(v);
      }
      return sum;
    }
  }
  return 0;
}

}  // namespace

absl::StatusOr<nlohmann::json> InspectCheckpoint(const std::string& dir) {
  if (!IsDirectory(dir)) return absl::NotFoundError(absl::StrCat(dir, ": no such directory"));
  nlohmann::json report = {{"dir", dir}};
  const std::string config_path = JoinPath(dir, "config.json");
  if (PathExists(config_path)) {
    SPAR_ASSIGN_OR_RETURN(nlohmann::json config, ReadJsonFile(config_path));
    report["model_type"] = config.value("model_type", "");
    report["architectures"] = config.value("architectures", nlohmann::json::array());
  } else {
    report["model_type"] = "";
    report["architectures"] = nlohmann::json::array();
  }
  std::vector<std::string> files;
  if (PathExists(JoinPath(dir, "model.safetensors"))) {
    files.push_back("model.safetensors");
  } else if (PathExists(JoinPath(dir, "model.safetensors.index.json"))) {
    SPAR_ASSIGN_OR_RETURN(nlohmann::json index,
                          ReadJsonFile(JoinPath(dir, "model.safetensors.index.json")));
    const nlohmann::json weight_map = index.value("weight_map", nlohmann::json::object());
    for (const auto& [name, file] : weight_map.items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("weight_map[\"", name, "\"] is not a file"));
      }
      if (std::find(files.begin(), files.end(), file.get<std::string>()) == files.end()) {
        files.push_back(file.get<std::string>());
      }
    }
  } else {
    return absl::NotFoundError(
        absl::StrCat(dir, ": neither model.safetensors nor model.safetensors.index.json"));
  }
  std::map<std::string, nlohmann::json> tensors;
  int64_t params = 0;
  for (const std::string& file : files) {
    SPAR_ASSIGN_OR_RETURN(model::SafetensorsFile st,
                          model::SafetensorsFile::Read(JoinPath(dir, file)));
    for (const auto& [name, entry] : st.tensors()) {
      int64_t n = 1;
      for (int64_t d : entry.shape) n *= d;
      params += n;
      tensors[name] = {{"name", name},
                       {"dtype", std::string(model::SafetensorsDTypeName(entry.dtype))},
                       {"shape", entry.shape},
                       {"sum", Sum(entry.dtype, st.Data(entry))},
                       {"file", file}};
    }
  }
  report["num_parameters"] = params;
  report["tensors"] = nlohmann::json::array();
  for (auto& [name, t] : tensors) report["tensors"].push_back(std::move(t));
  return report;
}

int RunInspectCommand(const Args& args) {
  absl::Status known = args.CheckKnown({"json"});
  if (!known.ok() || args.positional().size() != 1) {
    std::fprintf(
        stderr, "spar inspect: %s\n",
        known.ok() ? "usage: spar inspect DIR [--json]" : std::string(known.message()).c_str());
    return 2;
  }
  absl::StatusOr<nlohmann::json> report = InspectCheckpoint(args.positional()[0]);
  if (!report.ok()) {
    std::fprintf(stderr, "spar inspect: %s\n", std::string(report.status().message()).c_str());
    return report.status().code() == absl::StatusCode::kNotFound ? 4 : 2;
  }
  if (args.Has("json")) {
    std::printf("%s\n", DumpJson(*report, 2).c_str());
    return 0;
  }
  const nlohmann::json& r = *report;
  std::printf("architecture: %s (%s)\n", r["model_type"].get<std::string>().c_str(),
              DumpJson(r["architectures"]).c_str());
  std::printf("parameters:   %lld\n", static_cast<long long>(r["num_parameters"].get<int64_t>()));
  std::printf("tensors:      %zu\n", r["tensors"].size());
  for (const nlohmann::json& t : r["tensors"]) {
    std::printf("  %-60s %-5s [%s] sum=%.17g\n", t["name"].get<std::string>().c_str(),
                t["dtype"].get<std::string>().c_str(),
                absl::StrJoin(t["shape"].get<std::vector<int64_t>>(), ", ").c_str(),
                t["sum"].get<double>());
  }
  return 0;
}

}  // namespace spar::cli
