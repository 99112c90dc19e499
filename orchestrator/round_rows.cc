#include "orchestrator/round_rows.h"

#include <type_traits>
#include <utility>

namespace spar::orchestrator {
namespace {

using nlohmann::json;

// Each row kind's fields are listed once (the Describe overloads below) and walked by a Writer
// (ToJson) or a Reader (FromJson). A field is
//   Required:  written; reading fails without it;
//   Defaulted: written; absent on reading: the struct's default;
//   Optional:  a std::optional, written when set;
//   Derived / Constant: written from other fields or as a fixed value, never read.

// ----- writing -----
template <typename T>
json ToValue(const T& v) {
  return json(v);
}
json ToValue(const std::vector<std::optional<int>>& v);  // nulls for the unset ones
json ToValue(const std::vector<SampledText>& v);
json ToValue(const std::vector<GroupResponse>& v);

class Writer {
 public:
  template <typename T>
  void Required(const char* name, const T& v) {
    out_[name] = ToValue(v);
  }
  template <typename T>
  void Defaulted(const char* name, const T& v) {
    out_[name] = ToValue(v);
  }
  template <typename T>
  void Optional(const char* name, const std::optional<T>& v) {
    if (v.has_value()) out_[name] = ToValue(*v);
  }
  template <typename T>
  void Derived(const char* name, const T& v) {
    out_[name] = ToValue(v);
  }
  void Constant(const char* name, const char* value) { out_[name] = value; }
  json Take() { return std::move(out_); }

 private:
  json out_ = json::object();
};

// ----- reading -----
absl::Status Not(const char* what) { return absl::DataLossError(absl::StrCat("not ", what)); }

absl::Status FromValue(const json& j, std::string* v) {
  if (!j.is_string()) return Not("a string");
  *v = j.get<std::string>();
  return absl::OkStatus();
}
absl::Status FromValue(const json& j, bool* v) {
  if (!j.is_boolean()) return Not("a boolean");
  *v = j.get<bool>();
  return absl::OkStatus();
}
absl::Status FromValue(const json& j, double* v) {
  if (!j.is_number()) return Not("a number");
  *v = j.get<double>();
  return absl::OkStatus();
}
template <typename Int, std::enable_if_t<std::is_integral_v<Int>, int> = 0>
absl::Status FromValue(const json& j, Int* v) {
  if (!j.is_number_integer()) return Not("an integer");
  *v = j.get<Int>();
  return absl::OkStatus();
}
absl::Status FromValue(const json& j, std::optional<int>* v) {  // an element of ScoreRow::scores
  if (j.is_null()) {
    v->reset();
    return absl::OkStatus();
  }
  if (!j.is_number_integer()) return Not("an integer or null");
  *v = j.get<int>();
  return absl::OkStatus();
}
absl::Status FromValue(const json& j, SampledText* v);
absl::Status FromValue(const json& j, GroupResponse* v);
template <typename T>
absl::Status FromValue(const json& j, std::vector<T>* v) {
  if (!j.is_array()) return Not("an array");
  v->assign(j.size(), T{});
  for (size_t k = 0; k < j.size(); ++k) {
    absl::Status st = FromValue(j[k], &(*v)[k]);
    if (!st.ok()) return absl::DataLossError(absl::StrCat("element ", k, ": ", st.message()));
  }
  return absl::OkStatus();
}

// Keeps the first problem ("field \"x\": missing", "field \"x\": not a string"); later reads do
// nothing.
class Reader {
 public:
  explicit Reader(const json& row) : row_(row) {
    if (!row.is_object()) status_ = absl::DataLossError("not a JSON object");
  }
  template <typename T>
  void Required(const char* name, T& v) {
    Read(name, &v, /*required=*/true);
  }
  template <typename T>
  void Defaulted(const char* name, T& v) {
    Read(name, &v, /*required=*/false);
  }
  template <typename T>
  void Optional(const char* name, std::optional<T>& v) {
    if (!status_.ok() || !row_.contains(name)) return;
    T value{};
    Read(name, &value, /*required=*/true);
    if (status_.ok()) v = std::move(value);
  }
  template <typename T>
  void Derived(const char*, const T&) {}
  void Constant(const char*, const char*) {}
  const absl::Status& status() const { return status_; }

 private:
  template <typename T>
  void Read(const char* name, T* v, bool required) {
    if (!status_.ok()) return;
    auto it = row_.find(name);
    if (it == row_.end()) {
      if (required) status_ = absl::DataLossError(absl::StrCat("field \"", name, "\": missing"));
      return;
    }
    absl::Status st = FromValue(*it, v);
    if (!st.ok())
      status_ = absl::DataLossError(absl::StrCat("field \"", name, "\": ", st.message()));
  }

  const json& row_;
  absl::Status status_;
};

// ----- the fields of each row kind (R: the row, const when writing) -----
template <typename R, typename Row>
using Is = std::enable_if_t<std::is_same_v<std::remove_const_t<R>, Row>, int>;

template <typename Io, typename R, Is<R, SampledText> = 0>
void Describe(Io& io, R& s) {
  io.Required("text", s.text);
  io.Defaulted("logprob", s.logprob);
  io.Defaulted("finished", s.finished);
  io.Derived("num_tokens", static_cast<int>(s.token_ids.size()));
  io.Defaulted("token_ids", s.token_ids);
  io.Defaulted("token_logprobs", s.token_logprobs);
}

template <typename Io, typename R, Is<R, SampleRow> = 0>
void Describe(Io& io, R& r) {
  io.Required("index", r.index);
  io.Required("prompt", r.prompt);
  io.Optional("gold", r.gold);
  io.Required("samples", r.samples);
}

template <typename Io, typename R, Is<R, JudgmentRow> = 0>
void Describe(Io& io, R& r) {
  io.Required("index", r.index);
  io.Required("i", r.i);
  io.Required("j", r.j);
  io.Required("ok", r.ok);
  io.Required("p_a_wins", r.p_a_wins);
  io.Defaulted("comparison", r.comparison);
  io.Defaulted("flipped", r.flipped);
  io.Defaulted("p_ab", r.p_ab);
  io.Defaulted("p_ba", r.p_ba);
  io.Defaulted("verdict_ab", r.verdict_ab);
  io.Defaulted("verdict_ba", r.verdict_ba);
  io.Optional("reward_i", r.reward_i);
  io.Optional("reward_j", r.reward_j);
  io.Optional("error", r.error);
}

template <typename Io, typename R, Is<R, ScoreRow> = 0>
void Describe(Io& io, R& r) {
  io.Required("index", r.index);
  io.Constant("scoring", "side_by_side");
  io.Required("ok", r.ok);
  io.Defaulted("shown", r.shown);
  io.Defaulted("order", r.order);
  io.Required("scores", r.scores);
  io.Defaulted("verdict", r.verdict);
  io.Optional("error", r.error);
}

template <typename Io, typename R, Is<R, PairRow> = 0>
void Describe(Io& io, R& r) {
  io.Required("prompt", r.prompt);
  io.Required("chosen", r.chosen);
  io.Required("rejected", r.rejected);
  io.Required("chosen_win_rate", r.chosen_win_rate);
  io.Required("rejected_win_rate", r.rejected_win_rate);
  io.Optional("chosen_score", r.chosen_score);
  io.Optional("rejected_score", r.rejected_score);
  io.Optional("p", r.p);
  io.Defaulted("chosen_finished", r.chosen_finished);
  io.Defaulted("rejected_finished", r.rejected_finished);
  io.Optional("source_index", r.source_index);
  io.Optional("source_round", r.source_round);
}

template <typename Io, typename R, Is<R, GroupResponse> = 0>
void Describe(Io& io, R& r) {
  io.Required("text", r.text);
  io.Required("reward", r.reward);
  io.Optional("proposal_logprob", r.proposal_logprob);
  io.Defaulted("finished", r.finished);
}

template <typename Io, typename R, Is<R, GroupRow> = 0>
void Describe(Io& io, R& r) {
  io.Required("prompt", r.prompt);
  io.Required("responses", r.responses);
  io.Optional("source_index", r.source_index);
  io.Optional("source_round", r.source_round);
}

template <typename Io, typename R, Is<R, AnsweredRow> = 0>
void Describe(Io& io, R& r) {
  io.Required("prompt", r.prompt);
  io.Required("response_a", r.response_a);
  io.Required("response_b", r.response_b);
  io.Required("p_a_wins", r.p_a_wins);
  io.Required("p_ab", r.p_ab);
  io.Required("p_ba", r.p_ba);
  io.Required("verdict_ab", r.verdict_ab);
  io.Required("verdict_ba", r.verdict_ba);
  io.Optional("reward_a", r.reward_a);
  io.Optional("reward_b", r.reward_b);
}

template <typename Io, typename R, Is<R, EvalAnswerRow> = 0>
void Describe(Io& io, R& r) {
  io.Required("index", r.index);
  io.Required("prompt", r.prompt);
  io.Required("text", r.text);
}

template <typename Row>
json Write(const Row& row) {
  Writer w;
  Describe(w, row);
  return w.Take();
}

template <typename Row>
absl::StatusOr<Row> Read(const json& j) {
  Row row;
  Reader r(j);
  Describe(r, row);
  if (!r.status().ok()) return r.status();
  return row;
}

json ToValue(const std::vector<std::optional<int>>& v) {
  json out = json::array();
  for (const std::optional<int>& x : v) {
    if (x.has_value()) {
      out.push_back(*x);
    } else {
      out.push_back(nullptr);
    }
  }
  return out;
}

json ToValue(const std::vector<SampledText>& v) {
  json out = json::array();
  for (const SampledText& s : v) out.push_back(Write(s));
  return out;
}

json ToValue(const std::vector<GroupResponse>& v) {
  json out = json::array();
  for (const GroupResponse& r : v) out.push_back(Write(r));
  return out;
}

absl::Status FromValue(const json& j, SampledText* v) {
  absl::StatusOr<SampledText> s = Read<SampledText>(j);
  if (!s.ok()) return s.status();
  *v = *std::move(s);
  return absl::OkStatus();
}

absl::Status FromValue(const json& j, GroupResponse* v) {
  absl::StatusOr<GroupResponse> r = Read<GroupResponse>(j);
  if (!r.ok()) return r.status();
  *v = *std::move(r);
  return absl::OkStatus();
}

}  // namespace

json SampleRow::ToJson() const { return Write(*this); }
absl::StatusOr<SampleRow> SampleRow::FromJson(const json& row) { return Read<SampleRow>(row); }
json JudgmentRow::ToJson() const { return Write(*this); }
absl::StatusOr<JudgmentRow> JudgmentRow::FromJson(const json& row) {
  return Read<JudgmentRow>(row);
}
json ScoreRow::ToJson() const { return Write(*this); }
absl::StatusOr<ScoreRow> ScoreRow::FromJson(const json& row) { return Read<ScoreRow>(row); }
json PairRow::ToJson() const { return Write(*this); }
absl::StatusOr<PairRow> PairRow::FromJson(const json& row) { return Read<PairRow>(row); }
json GroupRow::ToJson() const { return Write(*this); }
absl::StatusOr<GroupRow> GroupRow::FromJson(const json& row) { return Read<GroupRow>(row); }
json AnsweredRow::ToJson() const { return Write(*this); }
absl::StatusOr<AnsweredRow> AnsweredRow::FromJson(const json& row) {
  return Read<AnsweredRow>(row);
}
json EvalAnswerRow::ToJson() const { return Write(*this); }
absl::StatusOr<EvalAnswerRow> EvalAnswerRow::FromJson(const json& row) {
  return Read<EvalAnswerRow>(row);
}

}  // namespace spar::orchestrator
