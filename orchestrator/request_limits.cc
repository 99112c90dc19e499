#include "orchestrator/request_limits.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace spar::orchestrator {
namespace {

size_t LimitFor(const google::protobuf::FieldDescriptor& f) {
  if (f.name() == "name") return kMaxNameBytes;
  if (f.name() == "base_model" || f.name() == "path" || f.name() == "magnet_checkpoint") {
    return kMaxPathBytes;
  }
  return kMaxStringBytes;
}

absl::Status CheckString(const std::string& value, size_t limit, const std::string& field) {
  if (value.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, " contains a NUL byte"));
  }
  if (value.size() > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be at most ", limit, " bytes, got ", value.size()));
  }
  return absl::OkStatus();
}

// Walks every set string (and nested message) field of `m`; `prefix` names `m` ("" = the spec).
absl::Status CheckStrings(const google::protobuf::Message& m, const std::string& prefix) {
  const google::protobuf::Reflection* r = m.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    const std::string name = prefix.empty() ? f->name() : absl::StrCat(prefix, ".", f->name());
    using FD = google::protobuf::FieldDescriptor;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        const std::string item = absl::StrCat(name, "[", i, "]");
        if (f->cpp_type() == FD::CPPTYPE_STRING) {
          SPAR_RETURN_IF_ERROR(CheckString(r->GetRepeatedString(m, f, i), LimitFor(*f), item));
        } else if (f->cpp_type() == FD::CPPTYPE_MESSAGE) {
          SPAR_RETURN_IF_ERROR(CheckStrings(r->GetRepeatedMessage(m, f, i), item));
        }
      }
    } else if (f->cpp_type() == FD::CPPTYPE_STRING) {
      SPAR_RETURN_IF_ERROR(CheckString(r->GetString(m, f), LimitFor(*f), name));
    } else if (f->cpp_type() == FD::CPPTYPE_MESSAGE) {
      SPAR_RETURN_IF_ERROR(CheckStrings(r->GetMessage(m, f), name));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRequestLimits(const v1::CreateJobRequest& request) {
  SPAR_RETURN_IF_ERROR(CheckString(request.request_id(), kMaxNameBytes, "request_id"));
  SPAR_RETURN_IF_ERROR(CheckStrings(request.spec(), ""));  // first: it names the field
  const size_t bytes = request.spec().ByteSizeLong();
  if (bytes > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec must be at most ", kMaxSpecBytes, " bytes serialized, got ", bytes));
  }
  return absl::OkStatus();
}

}  // namespace spar::orchestrator
