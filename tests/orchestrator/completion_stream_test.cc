// The engine port's reader of streamed /v1/completions answers (orchestrator/internal/
// completion_stream.h) on hand-written event streams: choices split over events and arriving in
// any order, token ids from choice.token_ids or vLLM's "token_id:<id>" log-prob tokens, \r\n
// framing, error events as status codes, and malformed input refused.
#include "orchestrator/internal/completion_stream.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "tests/testing/status_matchers.h"

namespace spar::orchestrator::internal {
namespace {

using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

struct Collected {
  std::vector<v1::GenerateResponse> out;
  CompletionStream Stream(int prompts, int64_t first, int n) {
    std::vector<std::string> p;
    for (int i = 0; i < prompts; ++i) p.push_back("p" + std::to_string(i));
    return CompletionStream(p, first, n, [this](v1::GenerateResponse r) {
      out.push_back(std::move(r));
      return absl::OkStatus();
    });
  }
};

absl::Status Feed(CompletionStream& s, const std::string& text) {
  return s.Feed(text.data(), text.size());
}

TEST(CompletionStreamTest, AssemblesChoicesSplitOverEventsInAnyOrder) {
  Collected c;
  CompletionStream s = c.Stream(/*prompts=*/2, /*first=*/10, /*n=*/2);
  // Prompt 1's choices (indexes 2, 3) finish first; choice 0 arrives in two deltas.
  ASSERT_TRUE(Feed(s,
                   "data: {\"choices\":[{\"index\":2,\"text\":\"x\",\"finish_reason\":\"stop\","
                   "\"logprobs\":{\"tokens\":[\"token_id:7\"],\"token_logprobs\":[-0.5]}}]}\n\n")
                  .ok());
  ASSERT_TRUE(Feed(s,
                   "data: {\"choices\":[{\"index\":0,\"text\":\"ab\",\"token_ids\":[1,2],"
                   "\"logprobs\":{\"token_logprobs\":[-1,-2]}}]}\n\ndata: {\"choices\":[{\"ind")
                  .ok());
  ASSERT_TRUE(Feed(s,
                   "ex\":3,\"text\":\"y\",\"logprobs\":{\"token_logprobs\":[-0.25]},"
                   "\"finish_reason\":\"length\"}]}\n\n")
                  .ok());
  ASSERT_EQ(c.out.size(), 1u);  // prompt 1 is complete
  EXPECT_EQ(c.out[0].index(), 11);
  EXPECT_EQ(c.out[0].prompt(), "p1");
  EXPECT_EQ(c.out[0].samples(0).token_ids(0), 7);
  EXPECT_TRUE(c.out[0].samples(0).finished());
  EXPECT_FALSE(c.out[0].samples(1).finished());
  EXPECT_EQ(s.Pending(), std::vector<int64_t>{0});
  ASSERT_TRUE(Feed(s,
                   "data: {\"choices\":[{\"index\":0,\"text\":\"c\",\"token_ids\":[3],"
                   "\"logprobs\":{\"token_logprobs\":[-3]},\"finish_reason\":\"stop\"}]}\r\n\r\n"
                   "data: {\"choices\":[{\"index\":1,\"text\":\"\",\"finish_reason\":\"stop\"}]}"
                   "\n\n: keep-alive\n\ndata: [DONE]\n\n")
                  .ok());
  ASSERT_EQ(c.out.size(), 2u);
  const v1::Sample& first = c.out[1].samples(0);
  EXPECT_EQ(c.out[1].index(), 10);
  EXPECT_EQ(first.text(), "abc");
  EXPECT_EQ(std::vector<int32_t>(first.token_ids().begin(), first.token_ids().end()),
            (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(first.logprob(), -6.0);
  EXPECT_EQ(first.token_logprobs_size(), 3);
  EXPECT_TRUE(s.done());
  EXPECT_TRUE(s.Pending().empty());
}

TEST(CompletionStreamTest, ErrorEventsCarryTheirCode) {
  Collected c;
  CompletionStream s = c.Stream(1, 0, 1);
  absl::Status st = Feed(s,
                         "data: {\"error\":{\"message\":\"model: no\",\"type\":"
                         "\"invalid_request_error\",\"code\":\"INVALID_ARGUMENT\"}}\n\n");
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model: no")));
  EXPECT_EQ(s.status(), st);  // sticky
  CompletionStream u = c.Stream(1, 0, 1);
  EXPECT_THAT(Feed(u, "data: {\"error\":{\"message\":\"busy\",\"code\":\"UNAVAILABLE\"}}\n\n"),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST(CompletionStreamTest, RefusesMalformedOrOutOfRangeChoices) {
  Collected c;
  CompletionStream a = c.Stream(1, 0, 2);
  EXPECT_THAT(Feed(a, "data: {not json\n\n").message(), HasSubstr("malformed event"));
  CompletionStream b = c.Stream(1, 0, 2);
  EXPECT_THAT(Feed(b, "data: {\"choices\":[{\"index\":2,\"text\":\"x\"}]}\n\n").message(),
              HasSubstr("choice index 2 of 2"));
  CompletionStream d = c.Stream(1, 0, 1);
  ASSERT_TRUE(Feed(d, "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}\n\n").ok());
  EXPECT_THAT(Feed(d, "data: {\"choices\":[{\"index\":0,\"text\":\"late\"}]}\n\n").message(),
              HasSubstr("after it finished"));
}

TEST(CompletionStreamTest, FieldsOfTheWrongTypeAreAnErrorNotAnException) {
  Collected c;
  CompletionStream a = c.Stream(1, 0, 1);
  EXPECT_THAT(Feed(a, "data: {\"choices\":[{\"index\":\"0\"}]}\n\n").message(),
              HasSubstr("unexpected event"));
  CompletionStream b = c.Stream(1, 0, 1);
  EXPECT_THAT(Feed(b, "data: {\"choices\":[{\"index\":0,\"token_ids\":[\"7\"]}]}\n\n"),
              StatusIs(absl::StatusCode::kInternal));
}

TEST(CompletionStreamTest, TheCallersErrorStopsTheStream) {
  CompletionStream s({"p"}, 0, 1,
                     [](v1::GenerateResponse) { return absl::CancelledError("enough"); });
  EXPECT_THAT(Feed(s, "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}\n\n"),
              StatusIs(absl::StatusCode::kCancelled));
}

// One choice event: index, text, finish_reason ("" = still streaming), with one log-prob per
// character unless `logprobs` is false.
std::string ChoiceEvent(int index, const std::string& text, const std::string& finish,
                        bool logprobs = true) {
  std::string lp;
  for (size_t i = 0; i < text.size(); ++i) lp += (i ? ",-1" : "-1");
  return "data: {\"choices\":[{\"index\":" + std::to_string(index) + ",\"text\":\"" + text + "\"" +
         (logprobs ? ",\"logprobs\":{\"token_logprobs\":[" + lp + "]}" : ",\"logprobs\":null") +
         (finish.empty() ? "" : ",\"finish_reason\":\"" + finish + "\"") + "}]}\n\n";
}

// Issue 27: an engine that answers "logprobs": null where they were asked for is refused (it
// used to become samples with logprob 0 and no token log-probs).
TEST(CompletionStreamTest, AChoiceWithoutTheAskedLogProbsIsRefused) {
  Collected c;
  CompletionStream s = c.Stream(1, 5, 1);
  EXPECT_THAT(Feed(s, ChoiceEvent(0, "42", "stop", /*logprobs=*/false)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("prompt 5 without the per-token log-probs")));
  EXPECT_TRUE(c.out.empty());
  // Token ids and log-probs must agree in number.
  CompletionStream t = c.Stream(1, 0, 1);
  EXPECT_THAT(Feed(t,
                   "data: {\"choices\":[{\"index\":0,\"text\":\"ab\",\"token_ids\":[1,2],"
                   "\"logprobs\":{\"token_logprobs\":[-1]},\"finish_reason\":\"stop\"}]}\n\n"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("2 token ids but 1")));
  EXPECT_TRUE(c.out.empty());
}

// SGLang's finish_reason "abort": the half-written text is never kept; the prompt stays pending
// (the port asks it again) while the others are delivered.
TEST(CompletionStreamTest, AnAbortedChoiceLeavesItsPromptPendingAndIsNeverKept) {
  Collected c;
  CompletionStream s = c.Stream(/*prompts=*/2, /*first=*/0, /*n=*/2);
  ASSERT_TRUE(Feed(s, ChoiceEvent(0, "1", "stop")).ok());
  ASSERT_TRUE(Feed(s, ChoiceEvent(1, "12", "abort")).ok());
  ASSERT_TRUE(Feed(s, ChoiceEvent(2, "7", "stop")).ok());
  ASSERT_TRUE(Feed(s, ChoiceEvent(3, "8", "length")).ok());
  ASSERT_TRUE(Feed(s, "data: [DONE]\n\n").ok());
  ASSERT_EQ(c.out.size(), 1u);
  EXPECT_EQ(c.out[0].prompt(), "p1");
  EXPECT_EQ(s.Pending(), std::vector<int64_t>{0});
  EXPECT_EQ(s.aborted(), 1);
}

// An engine that ignores n numbers one choice per prompt: nothing is handed on (the choices of
// prompts 0 and 1 would have passed for prompt 0's two samples) and [DONE] names the cause.
TEST(CompletionStreamTest, AnEngineThatIgnoresNIsNamedAndNothingIsKept) {
  Collected c;
  CompletionStream s = c.Stream(/*prompts=*/2, /*first=*/0, /*n=*/2);
  ASSERT_TRUE(Feed(s, ChoiceEvent(0, "2", "stop")).ok());
  ASSERT_TRUE(Feed(s, ChoiceEvent(1, "4", "stop")).ok());
  EXPECT_TRUE(c.out.empty());  // held: prompt 0 looks complete, but n is not shown honoured yet
  EXPECT_THAT(Feed(s, "data: [DONE]\n\n"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("2 choices for 2 prompts where n = 2 per prompt")));
  EXPECT_TRUE(c.out.empty());
  // An engine that honours n: the held prompt goes out once an index past the prompts appears.
  Collected d;
  CompletionStream h = d.Stream(2, 0, 2);
  ASSERT_TRUE(Feed(h, ChoiceEvent(0, "2", "stop")).ok());
  ASSERT_TRUE(Feed(h, ChoiceEvent(1, "3", "stop")).ok());
  EXPECT_TRUE(d.out.empty());
  ASSERT_TRUE(Feed(h, ChoiceEvent(2, "4", "")).ok());
  ASSERT_EQ(d.out.size(), 1u);
  EXPECT_EQ(d.out[0].prompt(), "p0");
}

}  // namespace
}  // namespace spar::orchestrator::internal
