#include "services/cli/spec_file.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/util/json_util.h>

#include <cctype>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/str_cat.h"

namespace spar::cli {
namespace {

// Every field name (proto and JSON spelling) of JobSpec and the messages it holds.
void CollectFieldNames(const google::protobuf::Descriptor* d, std::set<std::string>& names,
                       std::set<const google::protobuf::Descriptor*>& seen) {
  if (d == nullptr || !seen.insert(d).second) return;
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    names.insert(f->name());
    names.insert(f->json_name());
    CollectFieldNames(f->message_type(), names, seen);
  }
}

const std::set<std::string>& FieldNames() {
  static const std::set<std::string>* names = [] {
    auto* out = new std::set<std::string>();
    std::set<const google::protobuf::Descriptor*> seen;
    CollectFieldNames(v1::JobSpec::descriptor(), *out, seen);
    return out;
  }();
  return *names;
}

const google::protobuf::FieldDescriptor* FindField(const google::protobuf::Descriptor* d,
                                                   const std::string& key) {
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->name() == key || d->field(i)->json_name() == key) return d->field(i);
  }
  return nullptr;
}

// Where the first key unknown to the schema sits ("training, key #3"), named by known field
// names and positions only; "" when every key is known.
std::string FindUnknownKey(const nlohmann::json& j, const google::protobuf::Descriptor* d,
                           const std::string& where) {
  if (!j.is_object()) return "";
  int position = 0;
  for (auto it = j.begin(); it != j.end(); ++it) {
    ++position;
    const google::protobuf::FieldDescriptor* f = FindField(d, it.key());
    if (f == nullptr) return absl::StrCat(where.empty() ? "top level" : where, ", key #", position);
    const google::protobuf::Descriptor* sub = f->message_type();
    if (sub == nullptr || f->is_map()) continue;
    const std::string path = where.empty() ? f->name() : absl::StrCat(where, ".", f->name());
    if (it.value().is_array()) {
      for (size_t i = 0; i < it.value().size(); ++i) {
        std::string found = FindUnknownKey(it.value()[i], sub, absl::StrCat(path, "[", i, "]"));
        if (!found.empty()) return found;
      }
    } else {
      std::string found = FindUnknownKey(it.value(), sub, path);
      if (!found.empty()) return found;
    }
  }
  return "";
}

// What protobuf's message says, reduced to the JobSpec field names it mentions: its text quotes
// the input (values, unknown keys), which must not reach a terminal or a log.
std::string SchemaError(const nlohmann::json& j, const std::string& message) {
  std::string unknown = FindUnknownKey(j, v1::JobSpec::descriptor(), "");
  if (!unknown.empty()) return absl::StrCat("unknown field (", unknown, ")");
  std::string line = message.substr(0, message.find('\n'));
  std::string token, fields;
  auto flush = [&] {
    if (!token.empty() && FieldNames().count(token) && fields.find(token) == std::string::npos) {
      absl::StrAppend(&fields, fields.empty() ? "" : ", ", token);
    }
    token.clear();
  };
  for (char c : line) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_')
      token += c;
    else
      flush();
  }
  flush();
  return fields.empty() ? "a value has the wrong type or range"
                        : absl::StrCat("field ", fields, ": wrong type or value");
}

// 1-based line and column of byte offset `byte` (nlohmann reports the byte after the error).
std::string Position(const std::string& text, size_t byte) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i + 1 < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return absl::StrCat("line ", line, ", column ", column);
}

}  // namespace

absl::StatusOr<v1::JobSpec> ParseJobSpecFile(const std::string& path, const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", Position(text, e.byte), ": not valid JSON"));
  } catch (const nlohmann::json::exception&) {  // out_of_range: a number such as 1e400
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a number is out of range (beyond a 64-bit float)"));
  }
  v1::JobSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(text, &spec, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": does not match JobSpec: ", SchemaError(j, st.message().ToString())));
  }
  return spec;
}

}  // namespace spar::cli
