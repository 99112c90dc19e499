// Spar's Jinja interpreter (model/jinja) and the checkpoint's own chat template
// (ChatTemplate::FromCheckpoint): expected texts are what Jinja2 3.1.6, configured as
// transformers 5 configures it, renders for the same source (checked by hand with the .venv;
// the parity.chat_template test compares whole templates with transformers at test time).
#include <string>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gtest/gtest.h"
#include "model/chat_template.h"
#include "model/chat_template_setting.h"
#include "model/jinja/template.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"

namespace spar::jinja {
namespace {

using nlohmann::ordered_json;
using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<std::string> RenderSource(const std::string& source, const ordered_json& vars = {}) {
  absl::StatusOr<Template> t = Template::Parse(source);
  if (!t.ok()) return t.status();
  return t->Render(vars.is_null() ? ordered_json::object() : vars);
}

std::string Ok(const std::string& source, const ordered_json& vars = {}) {
  absl::StatusOr<std::string> out = RenderSource(source, vars);
  EXPECT_THAT(out, IsOk()) << source;
  return out.ok() ? *out : "<error>";
}

TEST(JinjaTest, ScopesAsJinja) {
  // A set inside a loop lives for one iteration; a namespace carries state out.
  EXPECT_EQ(Ok("{% set x = 0 %}{% for i in range(3) %}{{ x }}{% set x = x + 1 %}{{x}}{% endfor %}"
               "{{x}}"),
            "0101010");
  EXPECT_EQ(Ok("{% set ns = namespace(a=1) %}{% for i in [1,2] %}{% set ns.a = ns.a + i %}"
               "{% endfor %}{{ ns.a }}"),
            "4");
  EXPECT_EQ(Ok("{% macro f(a, b='x') %}[{{a}}{{b}}]{% endmacro %}{{ f(1) }}{{ f(2, b='y') }}"),
            "[1x][2y]");
}

TEST(JinjaTest, WhitespaceControlAsTransformers) {
  // trim_blocks + lstrip_blocks, '-' and '+' markers, one trailing newline dropped.
  EXPECT_EQ(Ok("  {% if true %}\n  x\n  {% endif %}\n  {{ 1 }}\n"), "  x\n  1");
  EXPECT_EQ(Ok("{%- set a = 'q' -%}\n\n  {{- a -}}\n\n  {%+ if true %}z{% endif %}"), "qz");
  EXPECT_EQ(Ok("{% raw %}{{ x }}{% endraw %}{# c #}\n  {#- c -#}  y"), "{{ x }}y");
}

TEST(JinjaTest, ExpressionsAsPython) {
  EXPECT_EQ(Ok("{{ 'abc'[::-1] }}{{ 7/2 }}{{ 7//2 }}{{ -7 // 2 }}{{ -7 % 3 }}{{ 2**10 }}{{ 1e20 }}"
               "{{ 0.1+0.2 }}{{ 3.0 }}"),
            "cba3.53-4210241e+200.300000000000000043.0");
  EXPECT_EQ(Ok("{{ [1,'a',none,true,1.0] }}{{ {'a':1} }}{{ (1,2) }}{{ \"it's\" }}"),
            "[1, 'a', None, True, 1.0]{'a': 1}(1, 2)it's");
  EXPECT_EQ(Ok("{{ 'a' ~ 1 ~ none }}{{ 1 if false }}{{ not 1 in [1] }}{{ 1 not in [2] }}"),
            "a1NoneFalseTrue");
  EXPECT_EQ(Ok("{{ 'a b  c'.split() }}{{ ' x '.strip() }}{{ 'abc'.startswith(('x','a')) }}"),
            "['a', 'b', 'c']xTrue");
}

TEST(JinjaTest, FiltersAndTests) {
  const ordered_json vars = {
      {"messages",
       {{{"role", "system"}, {"content", " s "}}, {{"role", "user"}, {"content", "u"}}}},
      {"x", {{"b", {1, 2.5, nullptr, true, "é\"\n"}}, {"a", ordered_json::object()}}}};
  EXPECT_EQ(
      Ok("{{ messages|selectattr('role','equalto','user')|map(attribute='content')|join(',') }}",
         vars),
      "u");
  EXPECT_EQ(Ok("{{ x|tojson }}|{{ x.a|tojson(indent=2) }}", vars),
            "{\"b\": [1, 2.5, null, true, \"é\\\"\\n\"], \"a\": {}}|{}");
  EXPECT_EQ(Ok("{{ messages[0].content|trim }}{{ messages|length }}{{ foo is defined }}"
               "{{ foo|default('d') }}{{ messages[5] is defined }}",
               vars),
            "s2FalsedFalse");
  // Python's str.strip: Unicode whitespace goes too (U+200B is no space).
  EXPECT_EQ(Ok("{{ s|trim }}", {{"s", "\u3000\u00a0Hi\x1c\u2028\u200b"}}), "Hi\x1c\u2028\u200b");
}

TEST(JinjaTest, RefusalsAsJinja) {
  EXPECT_THAT(RenderSource("{{ raise_exception('no system role') }}"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("no system role")));
  EXPECT_THAT(RenderSource("{{ x.y.z }}", {{"x", ordered_json::object()}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("undefined")));
  EXPECT_THAT(RenderSource("{{ 'a' + 1 }}"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RenderSource("{% if %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1")));
  EXPECT_THAT(RenderSource("{{ x|nosuchfilter }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no filter named")));
}

// What the interpreter does not have is refused by name and line, never rendered otherwise.
TEST(JinjaTest, UnsupportedConstructsAreNamed) {
  EXPECT_THAT(RenderSource("a\n{% include 'x.jinja' %}"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("{% include %} (line 2)")));
  EXPECT_THAT(RenderSource("{{ x|dictsort }}"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("filter 'dictsort'")));
  EXPECT_THAT(RenderSource("{% for m in x recursive %}{% endfor %}"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("recursive")));
  EXPECT_THAT(RenderSource("{{ s.upper() }}", {{"s", "é"}}),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("str.upper of non-ASCII")));
  EXPECT_THAT(RenderSource("{{ '%s' % 1 }}"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("string formatting")));
}

TEST(JinjaTest, SandboxRefusesMutation) {
  EXPECT_THAT(RenderSource("{% set l = [] %}{{ l.append(1) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsafe")));
  EXPECT_THAT(RenderSource("{{ range(200000)|length }}"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Jinja's filters select/reject/map/unique/items return generators: lazy, consumed once, always
// true, never printed (Spar refuses to print one rather than invent its address).
TEST(JinjaTest, GeneratorsAsJinja) {
  const ordered_json vars = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}};
  EXPECT_EQ(Ok("{% set g = messages|selectattr('role','equalto','x') %}{{ 'T' if g else 'F' }}"
               "{{ g|list|length }}",
               vars),
            "T0");
  EXPECT_EQ(Ok("{% set g = [1,2]|map('string') %}{% for x in g %}{{x}}{% endfor %}"
               "{% for x in g %}{{x}}{% endfor %}"),
            "12");
  EXPECT_EQ(Ok("{{ ['b','A','a']|unique|list }}{{ 'FalseTrue'|min }}{{ (1, 2) == [1, 2] }}"),
            "['b', 'A']aFalse");
  EXPECT_THAT(RenderSource("{{ [1]|select }}"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("printing a generator")));
}

// A name the template sets at its top level is a template local from the start: a loop that
// reads it before the assignment sees undefined, not the variable the template was given.
TEST(JinjaTest, TopLevelAssignmentsScopeAsJinja) {
  EXPECT_EQ(Ok("{% for i in [1] %}{{ n }}{% endfor %}{% set n = 5 %}{{ n }}", {{"n", 4}}), "5");
  EXPECT_EQ(Ok("{{ n }}{% set n = 5 %}{{ n }}", {{"n", 4}}), "45");
  EXPECT_EQ(Ok("{% for i in [1] %}{{ n }}{% endfor %}{% if false %}{% set n = 5 %}{% endif %}",
               {{"n", 4}}),
            "4");
}

std::string Checkpoint(const std::string& name) {
  std::string dir = JoinPath(::testing::TempDir(), absl::StrCat("jinja_ckpt_", name));
  RemoveAll(dir).IgnoreError();
  EXPECT_THAT(MakeDirs(dir), IsOk());
  EXPECT_THAT(WriteFileAtomic(JoinPath(dir, "tokenizer.json"), "{}"), IsOk());
  return dir;
}

// chat_template.jinja (what transformers 5's save_pretrained writes) wins over
// tokenizer_config.json's chat_template, as transformers loads it; special tokens come from the
// config, as AddedToken objects too.
TEST(CheckpointTemplateTest, ChatTemplateJinjaFileWins) {
  const std::string dir = Checkpoint("file");
  ASSERT_THAT(WriteFileAtomic(JoinPath(dir, "tokenizer_config.json"),
                              R"({"chat_template": "config:{{ messages[0].content }}",
                            "bos_token": {"content": "<B>", "special": true}, "eos_token": "<E>"})"),
              IsOk());
  auto from_config = model::ResolveChatTemplateSetting("auto", dir);
  ASSERT_THAT(from_config, IsOk());
  ASSERT_TRUE(from_config->has_value());
  EXPECT_EQ(*(*from_config)->Render({{"user", "hi"}}), "config:hi");

  ASSERT_THAT(
      WriteFileAtomic(JoinPath(dir, "chat_template.jinja"),
                      "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}"
                      "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}>{% endif %}\n"),
      IsOk());
  auto from_file = model::ResolveChatTemplateSetting("auto", dir);
  ASSERT_THAT(from_file, IsOk());
  EXPECT_EQ((*from_file)->name(), "checkpoint chat_template.jinja");
  EXPECT_EQ(*(*from_file)->Render({{"user", "hi"}}), "<B>[user]hi<E>>");
}

// A checkpoint whose template uses what the interpreter lacks is refused when the template is
// resolved (CreateJob does so), naming the construct; "none" still works.
TEST(CheckpointTemplateTest, UnsupportedTemplateIsRefusedByName) {
  const std::string dir = Checkpoint("unsupported");
  ASSERT_THAT(WriteFileAtomic(JoinPath(dir, "chat_template.jinja"),
                              "{% for m in messages %}{{ m.content|wordwrap(10) }}{% endfor %}"),
              IsOk());
  EXPECT_THAT(model::ResolveChatTemplateSetting("auto", dir),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("filter 'wordwrap'")));
  EXPECT_THAT(model::ResolveChatTemplateSetting("none", dir), IsOk());
  ASSERT_THAT(WriteFileAtomic(JoinPath(dir, "chat_template.jinja"),
                              "{% for m in messages %}{{ m.content.format(1) }}{% endfor %}"),
              IsOk());
  EXPECT_THAT(model::ResolveChatTemplateSetting("auto", dir),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("str.format")));
}

}  // namespace
}  // namespace spar::jinja
