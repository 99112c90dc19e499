#include "model/chat_template.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/hf_tokenizer.h"
#include "tests/testing/status_matchers.h"

namespace spar::model {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;

const std::vector<ChatMessage> kChat = {
    {"system", "You are helpful."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "2+2?"}};

std::string Render(ChatTemplateKind kind, const std::vector<ChatMessage>& messages = kChat,
                   bool generation_prompt = true) {
  ChatRenderOptions options;
  options.add_generation_prompt = generation_prompt;
  auto out = RenderChat(kind, messages, options);
  EXPECT_THAT(out, IsOk());
  return out.ok() ? *out : "";
}

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
  // system message; Spar used to fold it into the first user turn.
  EXPECT_THAT(RenderChat(ChatTemplateKind::kMistral, kChat),
              StatusIs(absl::StatusCode::kInvalidArgument));
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

  auto qwen = HfTokenizer::Load("tests/data/tokenizers/qwen3");
  ASSERT_TRUE(qwen.ok());
  EXPECT_EQ(*DetectChatTemplate((*qwen)->chat_template()), ChatTemplateKind::kQwen3);
  EXPECT_EQ(*DetectChatTemplate("{{'<|im_start|>' + message['role'] }}"),
            ChatTemplateKind::kChatml);
  EXPECT_EQ(*DetectChatTemplate("{{ bos_token }}{% for m in messages %}<|start_header_id|>"),
            ChatTemplateKind::kLlama3);
  EXPECT_EQ(*DetectChatTemplate("{{ '[INST] ' + m['content'] + ' [/INST]' }}"),
            ChatTemplateKind::kMistral);
  EXPECT_EQ(*DetectChatTemplate("<<SYS>>\\n [INST]"), ChatTemplateKind::kLlama2);
  EXPECT_EQ(*DetectChatTemplate("<start_of_turn>"), ChatTemplateKind::kGemma);
  EXPECT_EQ(*DetectChatTemplate("<|user|>\\n ... <|assistant|>"), ChatTemplateKind::kZephyr);
  EXPECT_THAT(DetectChatTemplate("{{ messages }}"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(ChatTemplateTest, RejectsBadRoles) {
  EXPECT_THAT(RenderChat(ChatTemplateKind::kChatml, {{"robot", "x"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RenderChat(ChatTemplateKind::kChatml, {{"user", "x"}, {"system", "y"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RenderChat(ChatTemplateKind::kLlama2, {{"user", "x"}, {"user", "y"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // Gemma's template has no system role and wants user/assistant turns, as transformers renders it.
  EXPECT_THAT(RenderChat(ChatTemplateKind::kGemma, kChat),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RenderChat(ChatTemplateKind::kGemma, {{"assistant", "x"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
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
