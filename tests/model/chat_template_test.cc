#include "model/chat_template.h"

#include <fstream>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/builtin_chat_templates.h"
#include "model/chat_template_setting.h"
#include "model/hf_tokenizer.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace spar::model {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

const std::vector<ChatMessage> kChat = {
    {"system", "You are helpful."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "2+2?"}};

absl::StatusOr<std::string> RenderChat(ChatTemplateKind kind,
                                       const std::vector<ChatMessage>& messages,
                                       bool generation_prompt = true) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::Builtin(kind, {});
  if (!t.ok()) return t.status();
  return t->Render(messages, generation_prompt);
}

std::string Render(ChatTemplateKind kind, const std::vector<ChatMessage>& messages = kChat,
                   bool generation_prompt = true) {
  auto out = RenderChat(kind, messages, generation_prompt);
  EXPECT_THAT(out, IsOk());
  return out.ok() ? *out : "";
}

// The named templates are their reference checkpoints' Jinja, rendered by Spar's interpreter.
// Expected strings follow each family's documented prompt format (model cards / the
// tokenizer_config.json templates rendered by transformers' apply_chat_template).
TEST(ChatTemplateTest, ChatmlQwen) {
  EXPECT_EQ(Render(ChatTemplateKind::kChatml),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(Render(ChatTemplateKind::kChatml, {{"user", "Hi!"}}, false),
            "<|im_start|>user\nHi!<|im_end|>\n");
}

// Qwen3: ChatML; the final answer after the last user query gets a (here empty) think block,
// earlier answers lose theirs.
TEST(ChatTemplateTest, Qwen3) {
  EXPECT_EQ(Render(ChatTemplateKind::kQwen3),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n"
            "<|im_start|>user\nHi!<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(Render(ChatTemplateKind::kQwen3,
                   {{"user", "Hi!"},
                    {"assistant", "<think>greet</think>\n\nHello."},
                    {"user", "2+2?"},
                    {"assistant", "4"}},
                   false),
            "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\n\n</think>\n\n4<|im_end|>\n");
}

TEST(ChatTemplateTest, Llama3) {
  EXPECT_EQ(Render(ChatTemplateKind::kLlama3),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful."
            "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplateTest, Llama2) {
  EXPECT_EQ(Render(ChatTemplateKind::kLlama2),
            "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi! [/INST] Hello. </s>"
            "<s>[INST] 2+2? [/INST]");
}

TEST(ChatTemplateTest, Mistral) {
  EXPECT_EQ(Render(ChatTemplateKind::kMistral,
                   {{"user", "Hi!"}, {"assistant", "Hello."}, {"user", "2+2?"}}),
            "<s>[INST] Hi! [/INST]Hello.</s>[INST] 2+2? [/INST]");
  // The reference template (Mixtral-8x7B-Instruct-v0.1's, rendered by transformers) raises on a
  // system message: refused with the template's own message.
  EXPECT_THAT(RenderChat(ChatTemplateKind::kMistral, kChat),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::HasSubstr("user/assistant/user/assistant")));
}

TEST(ChatTemplateTest, Zephyr) {
  EXPECT_EQ(Render(ChatTemplateKind::kZephyr),
            "<|system|>\nYou are helpful.</s>\n<|user|>\nHi!</s>\n<|assistant|>\nHello.</s>\n"
            "<|user|>\n2+2?</s>\n<|assistant|>\n");
}

TEST(ChatTemplateTest, Gemma) {
  EXPECT_EQ(
      Render(ChatTemplateKind::kGemma,
             {{"user", "Hi!"}, {"assistant", "Hello."}, {"user", "2+2?"}}),
      "<bos><start_of_turn>user\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
      "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n");
}

TEST(ChatTemplateTest, NamesAndDetection) {
  for (auto kind : {ChatTemplateKind::kChatml, ChatTemplateKind::kQwen3, ChatTemplateKind::kLlama3,
                    ChatTemplateKind::kLlama2, ChatTemplateKind::kMistral,
                    ChatTemplateKind::kZephyr, ChatTemplateKind::kGemma}) {
    EXPECT_EQ(*ParseChatTemplateName(ChatTemplateName(kind)), kind);
  }
  EXPECT_EQ(*ParseChatTemplateName("qwen"), ChatTemplateKind::kChatml);
  EXPECT_THAT(ParseChatTemplateName("vicuna"), StatusIs(absl::StatusCode::kInvalidArgument));
}

// The named templates are byte for byte the reference templates under tests/data/chat_templates.
TEST(ChatTemplateTest, BuiltinTextsAreTheReferenceTemplates) {
  for (auto kind : {ChatTemplateKind::kChatml, ChatTemplateKind::kQwen3, ChatTemplateKind::kLlama3,
                    ChatTemplateKind::kLlama2, ChatTemplateKind::kMistral,
                    ChatTemplateKind::kZephyr, ChatTemplateKind::kGemma}) {
    const BuiltinChatTemplate& b = GetBuiltinChatTemplate(kind);
    auto text = ReadFile("tests/data/chat_templates/" + std::string(b.name) + ".json");
    ASSERT_THAT(text, IsOk());
    const nlohmann::json ref = nlohmann::json::parse(*text);
    EXPECT_EQ(b.jinja, ref["chat_template"].get<std::string>()) << b.name;
    EXPECT_EQ(b.bos_token, ref.value("bos_token", "")) << b.name;
    EXPECT_EQ(b.eos_token, ref.value("eos_token", "")) << b.name;
  }
}

// Where a reference template raises (raise_exception), the conversation is refused with its
// message; where it renders, Spar renders too (no roles checked beyond the template's own).
TEST(ChatTemplateTest, TheTemplateDecidesWhatItRefuses) {
  EXPECT_THAT(RenderChat(ChatTemplateKind::kLlama2, {{"user", "x"}, {"user", "y"}}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(RenderChat(ChatTemplateKind::kGemma, kChat),
              StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::HasSubstr("System role")));
  EXPECT_THAT(RenderChat(ChatTemplateKind::kGemma, {{"assistant", "x"}}),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(Render(ChatTemplateKind::kChatml, {{"robot", "x"}}, false),
            "<|im_start|>robot\nx<|im_end|>\n");
}

// The templates' `| trim` and .strip() are Python's: Unicode whitespace goes too.
TEST(ChatTemplateTest, TrimsUnicodeWhitespaceLikePython) {
  EXPECT_EQ(Render(ChatTemplateKind::kLlama3, {{"user", "\u3000\u00a0Hi\x1c\u2028"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  EXPECT_EQ(Render(ChatTemplateKind::kGemma, {{"user", "\u200bHi "}}, false),
            "<bos><start_of_turn>user\n\u200bHi<end_of_turn>\n");  // U+200B is no space
}

// Llama-2's template strips the system block and the first user message as one text, and keeps
// the block for an empty system message.
TEST(ChatTemplateTest, Llama2SystemBlockAsTheTemplate) {
  EXPECT_EQ(Render(ChatTemplateKind::kLlama2, {{"system", " s "}, {"user", " u "}}),
            "<s>[INST] <<SYS>>\n s \n<</SYS>>\n\n u [/INST]");
  EXPECT_EQ(Render(ChatTemplateKind::kLlama2, {{"system", ""}, {"user", "u"}}),
            "<s>[INST] <<SYS>>\n\n<</SYS>>\n\nu [/INST]");
}

// Rendered ChatML encodes with the special tokens as single ids.
TEST(ChatTemplateTest, RenderedChatmlTokenizes) {
  auto qwen = HfTokenizer::Load("tests/data/tokenizers/qwen3");
  ASSERT_TRUE(qwen.ok());
  auto ids = (*qwen)->Encode(Render(ChatTemplateKind::kChatml, {{"user", "Hi!"}}));
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), 151644);  // <|im_start|>
  EXPECT_EQ(ids->at(ids->size() - 3), 151644);
}

}  // namespace
}  // namespace spar::model
