// The round files' row codec: the bytes the runner writes, rows read back, errors naming the field.
#include "orchestrator/round_rows.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "absl/strings/match.h"
#include "common/file_util.h"
#include "tests/testing/status_matchers.h"

namespace spar::orchestrator {
namespace {

using nlohmann::json;
using ::spar::testing::IsOk;

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

TEST(RoundRowsTest, SampleRowBytesAndRoundTrip) {
  SampleRow row;
  row.index = 3;
  row.prompt = "1+1=";
  row.gold = "2";
  row.samples.push_back({"2", -0.5, true, {17, 4}, {-0.25, -0.25}});
  row.samples.push_back({"22", -1.25, false, {}, {}});
  EXPECT_EQ(Dump(row.ToJson()),
            R"({"gold":"2","index":3,"prompt":"1+1=","samples":[{"finished":true,"logprob":-0.5,)"
            R"("num_tokens":2,"text":"2","token_ids":[17,4],"token_logprobs":[-0.25,-0.25]},)"
            R"({"finished":false,"logprob":-1.25,"num_tokens":0,"text":"22","token_ids":[],)"
            R"("token_logprobs":[]}]})");
  absl::StatusOr<SampleRow> back = SampleRow::FromJson(row.ToJson());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(Dump(back->ToJson()), Dump(row.ToJson()));
}

TEST(RoundRowsTest, HandWrittenSampleIsFinishedAndWithoutGold) {
  absl::StatusOr<SampleRow> row = SampleRow::FromJson(
      json::parse(R"({"index": 0, "prompt": "p", "samples": [{"text": "a"}]})"));
  ASSERT_THAT(row, IsOk());
  EXPECT_FALSE(row->gold.has_value());
  ASSERT_EQ(row->samples.size(), 1u);
  EXPECT_TRUE(row->samples[0].finished);
}

TEST(RoundRowsTest, JudgmentScorePairAnsweredAndEvalRowsRoundTrip) {
  // index, i, j, ok, p_a_wins, comparison, flipped, p_ab, p_ba, verdicts, rewards, error
  const JudgmentRow j{1,
                      0,
                      2,
                      false,
                      0.75,
                      4,
                      true,
                      -1,
                      0.25,
                      "",
                      "",
                      std::nullopt,
                      std::nullopt,
                      "UNAVAILABLE: failed"};
  // A reward-model oracle's row: the rewards of y_i and y_j.
  const JudgmentRow rm{1, 0, 2, true, 0.25, 4, true, 0.75, -1, "{}", "", -1.5, 0.5, std::nullopt};
  // index, ok, shown, order, scores, verdict
  const ScoreRow s{2, true, {0, 1}, {1, 0}, {6, std::nullopt, 5}, "{}", std::nullopt};
  // prompt, chosen, rejected, win rates, scores, p, finished flags, source index and round
  const PairRow p{"q", "a", "b", 1.0, 1.0 / 3, 6, 2, std::nullopt, true, false, 7, 2};
  AnsweredRow a{"q", "a", "b", 0.5, 0.25, 0.75, "A", "B", 0.5, -1.5};
  EvalAnswerRow e{9, "q", "a"};
  EXPECT_EQ(Dump(JudgmentRow::FromJson(j.ToJson())->ToJson()), Dump(j.ToJson()));
  EXPECT_EQ(Dump(JudgmentRow::FromJson(rm.ToJson())->ToJson()), Dump(rm.ToJson()));
  EXPECT_EQ(rm.ToJson()["reward_i"], -1.5);
  EXPECT_FALSE(j.ToJson().contains("reward_i"));  // a chat judge's row has none
  EXPECT_EQ(Dump(ScoreRow::FromJson(s.ToJson())->ToJson()), Dump(s.ToJson()));
  EXPECT_EQ(Dump(PairRow::FromJson(p.ToJson())->ToJson()), Dump(p.ToJson()));
  EXPECT_EQ(Dump(AnsweredRow::FromJson(a.ToJson())->ToJson()), Dump(a.ToJson()));
  EXPECT_EQ(Dump(EvalAnswerRow::FromJson(e.ToJson())->ToJson()), Dump(e.ToJson()));
  EXPECT_EQ(Dump(s.ToJson()),
            R"({"index":2,"ok":true,"order":[1,0],"scores":[6,null,5],"scoring":"side_by_side",)"
            R"("shown":[0,1],"verdict":"{}"})");
  EXPECT_EQ(Dump(p.ToJson()),
            R"({"chosen":"a","chosen_finished":true,"chosen_score":6,"chosen_win_rate":1.0,)"
            R"("prompt":"q","rejected":"b","rejected_finished":false,"rejected_score":2,)"
            R"("rejected_win_rate":0.3333333333333333,"source_index":7,"source_round":2})");
}

TEST(RoundRowsTest, GroupRowBytesAndRoundTrip) {
  GroupRow g;
  g.prompt = "1+1=";
  g.responses.push_back({"2", 0.875, -1.5, true});
  g.responses.push_back({"22", 0.375, std::nullopt, false});
  g.source_index = 4;
  g.source_round = 1;
  EXPECT_EQ(Dump(g.ToJson()),
            R"({"prompt":"1+1=","responses":[{"finished":true,"proposal_logprob":-1.5,)"
            R"("reward":0.875,"text":"2"},{"finished":false,"reward":0.375,"text":"22"}],)"
            R"("source_index":4,"source_round":1})");
  absl::StatusOr<GroupRow> back = GroupRow::FromJson(g.ToJson());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(Dump(back->ToJson()), Dump(g.ToJson()));
  absl::StatusOr<GroupRow> bad = GroupRow::FromJson(
      json::parse(R"({"prompt": "p", "responses": [{"text": "a", "reward": "1"}]})"));
  EXPECT_EQ(bad.status().message(),
            "field \"responses\": element 0: field \"reward\": not a number");
}

TEST(RoundRowsTest, ErrorsNameTheField) {
  absl::StatusOr<PairRow> missing = PairRow::FromJson(json::parse(R"({"prompt": "q"})"));
  EXPECT_TRUE(absl::IsDataLoss(missing.status()));
  EXPECT_EQ(missing.status().message(), "field \"chosen\": missing");
  absl::StatusOr<JudgmentRow> wrong =
      JudgmentRow::FromJson(json::parse(R"({"index": 0, "i": "0", "j": 1})"));
  EXPECT_EQ(wrong.status().message(), "field \"i\": not an integer");
  absl::StatusOr<SampleRow> sample = SampleRow::FromJson(
      json::parse(R"({"index": 0, "prompt": "p", "samples": [{"text": "a"}, {"text": 1}]})"));
  EXPECT_EQ(sample.status().message(),
            "field \"samples\": element 1: field \"text\": not a string");
  absl::StatusOr<ScoreRow> scores =
      ScoreRow::FromJson(json::parse(R"({"index": 0, "ok": true, "scores": [6, null, "6"]})"));
  EXPECT_EQ(scores.status().message(), "field \"scores\": element 2: not an integer or null");
  EXPECT_FALSE(EvalAnswerRow::FromJson(json::parse("[1, 2]")).ok());
}

TEST(RoundRowsTest, ReadRowsNamesTheFileAndRow) {
  char tmpl[] = "/tmp/spar_rows_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = JoinPath(dir, "eval_answers.jsonl");
  ASSERT_TRUE(WriteRows(path, std::vector<EvalAnswerRow>{{0, "p", "a"}, {1, "q", "b"}}).ok());
  EXPECT_EQ(*ReadFile(path),
            "{\"index\":0,\"prompt\":\"p\",\"text\":\"a\"}\n"
            "{\"index\":1,\"prompt\":\"q\",\"text\":\"b\"}\n");
  absl::StatusOr<std::vector<EvalAnswerRow>> rows = ReadRows<EvalAnswerRow>(path);
  ASSERT_THAT(rows, IsOk());
  EXPECT_EQ((*rows)[1].text, "b");
  ASSERT_TRUE(
      WriteFileAtomic(path, "{\"index\":0,\"prompt\":\"p\",\"text\":\"a\"}\n{\"index\":1}\n").ok());
  absl::Status st = ReadRows<EvalAnswerRow>(path).status();
  EXPECT_TRUE(absl::IsDataLoss(st));
  EXPECT_EQ(st.message(), path + ": row 2: field \"prompt\": missing");
  ASSERT_TRUE(RemoveAll(dir).ok());
}

}  // namespace
}  // namespace spar::orchestrator
