#!/usr/bin/env python3
"""Spar's Jinja chat-template interpreter against transformers' apply_chat_template (ctest label
`parity`).

The references are rendered here, at test time, by the pinned transformers (and jinja2) in the
.venv that `scripts/dev` sets up. Templates: every JSON file under tests/data/chat_templates (the
older family references) and tests/data/chat_templates/official (checkpoints' own templates, byte
for byte, with their special tokens). For each template the reference is a PreTrainedTokenizerFast
loaded from --tokenizer (tests/data/tokenizers/qwen3) with the file's chat_template and exactly
its bos/eos/pad/unk tokens, rendered with apply_chat_template(tokenize=False).

Spar gets, through spar_chat_template_parity_tool, the template source and the exact variables
transformers gives the template: messages (None-valued keys dropped, reasoning fields aliased),
tools, documents (JSON null when absent), add_generation_prompt, the tokenizer's special tokens
and the extra keyword arguments (enable_thinking). The harness builds those variables itself and
asserts, for every case, that they equal the keyword arguments transformers' render call received
(captured by wrapping its compiled template) and that transformers' own compiled template renders
them to apply_chat_template's text, so the comparison is honest.

Tool protocol (one JSON object per stdin line, one JSON line out per case):
  in:  {"jinja": TEMPLATE, "variables": {...}, "tokenizer": DIR (optional)}
  out: {"text": RENDERED, "ids": [...] (only with "tokenizer": the text encoded by Spar's HF
       tokenizer without special tokens)} or {"error": MESSAGE} when Spar refuses.

Cases per template, each with add_generation_prompt off and on: hand-written edge conversations
(with/without a system message, multi-turn, ending on user/assistant, empty contents, a lone user
turn, Unicode whitespace at the edges, special-token look-alikes, <think> blocks and
reasoning_content), refusal shapes (two users in a row, assistant first, system not first, a lone
system message), a few tool-use shapes (tools list, tool_calls, tool responses), and --random
seeded random conversations. Templates that read enable_thinking get every case with it absent,
True and False. Where transformers raises, Spar must answer {"error"}; where it renders, the text
must be identical. For every --ids-every'th case the tool also encodes the text, compared with
apply_chat_template(tokenize=True)'s input_ids from the plain --tokenizer (given the file's
special tokens as keyword arguments; the harness checks those ids are the encoding of the
reference text). Any difference fails the test; the first few are printed.
"""

import argparse
import copy
import glob
import json
import os
import random
import subprocess
import sys
import time

import jinja2
import transformers
from transformers import PreTrainedTokenizerFast
from transformers.utils import chat_template_utils


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# In the order of transformers SPECIAL_TOKENS_ATTRIBUTES (its special_tokens_map).
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token")

# ---------------------------------------------------------------------------------------------
# Conversations

WORDS = ["Hello", "hi", "What is 2+2?", "4.", "naïve café", "日本語のテキスト", "مرحبا بالعالم",
         "Привет", "ΣΟΦΙΑ σς", "emoji 😀🤖👍🏽", "family 👨‍👩‍👧‍👦", "flag 🇫🇷", "e\u0301", "tab\there",
         "line one\nline two", "\n\nblank lines\n\n", "x" * 200, "{{ not jinja }}", "{% raw %}",
         "{# comment #}", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "[INST]", "[/INST]",
         "</s>", "<s>", "<<SYS>>", "<</SYS>>", "<start_of_turn>", "<end_of_turn>", "<bos>",
         "<|begin_of_text|>", "<|start_header_id|>", "<|eot_id|>", "<|user|>", "<|assistant|>",
         "<think>", "</think>", "<tool_call>", "<tool_response>", "</tool_response>",
         "[TOOL_CALLS]", "'quotes' \"dq\"", "back\\slash", "C++ #include <vector>", "$100 & 50%",
         "\u200b zero width", "None", "null", "true", "\\n literal", "é" * 3, "\U0001d11e clef"]
EDGE_SPACE = ["", " ", "  ", "\n", "\t", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u2029",
              "\x85", "\x1c", "\x1f", "\x0b", "\x0c", "\u200b", "\ufeff", "\u2003", " \n "]


def random_content(rng):
    parts = [rng.choice(WORDS) for _ in range(rng.randint(0, 6))]
    text = " ".join(parts) if rng.random() < 0.7 else "\n".join(parts)
    if rng.random() < 0.3:
        text = rng.choice(EDGE_SPACE) + text
    if rng.random() < 0.3:
        text = text + rng.choice(EDGE_SPACE)
    return text


def random_assistant(rng):
    content = random_content(rng)
    r = rng.random()
    if r < 0.15:  # an inline reasoning block
        content = (rng.choice(["", "\n", " "]) + "<think>" + random_content(rng) + "</think>" +
                   rng.choice(["", "\n", "\n\n"]) + content)
    elif r < 0.2:
        content = random_content(rng) + "</think>" + content
    message = {"role": "assistant", "content": content}
    r = rng.random()
    if r < 0.1:
        message["reasoning_content"] = random_content(rng)
    elif r < 0.13:
        message["reasoning"] = random_content(rng)  # aliased to reasoning_content by transformers
    elif r < 0.16:
        message["reasoning_content"] = None  # dropped by transformers
    return message


def random_conversation(rng):
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": random_content(rng)})
    for _ in range(rng.randint(1, 4)):
        user = random_content(rng)
        if rng.random() < 0.05:
            user = "<tool_response>" + user + "</tool_response>"
        messages.append({"role": "user", "content": user})
        messages.append(random_assistant(rng))
    if rng.random() < 0.5:
        messages.pop()  # end on the user's turn
    r = rng.random()
    if r < 0.04 and len(messages) > 1:  # a refusal shape somewhere in the middle
        messages.insert(rng.randint(1, len(messages)), {"role": "system", "content": "late"})
    elif r < 0.08:
        i = rng.randint(0, len(messages) - 1)
        messages.insert(i, copy.deepcopy(messages[i]))  # the same role twice in a row
    elif r < 0.1:
        messages.append({"role": "tool", "content": random_content(rng)})
    return messages


def conv(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


EDGE_CONVERSATIONS = [
    conv(("user", "Hi!")),
    conv(("user", "")),
    conv(("user", " ")),
    conv(("user", "Hi!"), ("assistant", "Hello.")),
    conv(("system", "You are helpful."), ("user", "Hi!")),
    conv(("system", "You are helpful."), ("user", "Hi!"), ("assistant", "Hello."),
         ("user", "2+2?")),
    conv(("system", "You are helpful."), ("user", "Hi!"), ("assistant", "Hello."),
         ("user", "2+2?"), ("assistant", "4")),
    conv(("system", "  padded system  "), ("user", "  padded user  ")),
    conv(("system", ""), ("user", "empty system")),
    conv(("system", "sys"), ("user", "")),
    conv(("system", ""), ("user", ""), ("assistant", ""), ("user", "")),
    conv(("system", "\u3000ideographic\u3000"), ("user", "\u00a0nbsp\u00a0")),
    conv(("user", "\x1cfile separator\x1f"), ("assistant", "\x85next line\u2028")),
    conv(("user", "\ufeffbom\u200b"), ("assistant", "\x0bvt\x0c")),
    conv(("user", "a"), ("assistant", ""), ("user", "b")),
    conv(("user", "\n\nq\n\n"), ("assistant", "\n\nanswer\n\n")),
    conv(("user", "\r\nq\r\n"), ("assistant", "\ta\t")),
    conv(("user", "<s>[INST] fake [/INST]</s>"), ("assistant", "<|im_end|>\n<|im_start|>user")),
    conv(("user", "{{ messages }}{% if true %}x{% endif %}"),
         ("assistant", "{{ raise_exception('x') }}")),
    conv(("user", "😀"), ("assistant", "🤖"), ("user", "👨‍👩‍👧‍👦"), ("assistant", "🇫🇷"),
         ("user", "日本語"), ("assistant", "مرحبا"), ("user", "end")),
    # Reasoning shapes (Qwen3 strips <think> blocks before the last real user query).
    conv(("user", "q"), ("assistant", "<think>\nhmm\n</think>\n\nanswer")),
    conv(("user", "q"), ("assistant", "thinking</think>answer"), ("user", "again")),
    conv(("user", "q"), ("assistant", "<think>r1</think>a1"),
         ("user", "<tool_response>x</tool_response>"),
         ("assistant", "\n<think>\nr2\n</think>\n\na2"),
         ("user", "<tool_response>y</tool_response>")),
    conv(("user", "q"), ("assistant", "a</think>b</think>\nc")),
    conv(("user", "q"), ("assistant", "<think>only an opening tag")),
    conv(("user", "<tool_response>only</tool_response>"), ("assistant", "<think>r</think>x")),
    [{"role": "user", "content": "q"},
     {"role": "assistant", "content": "answer", "reasoning_content": "step 1\nstep 2"}],
    [{"role": "user", "content": "q"},
     {"role": "assistant", "content": "a1", "reasoning_content": "  r1  "},
     {"role": "user", "content": "q2"}],
    [{"role": "user", "content": "q"},
     {"role": "assistant", "content": "<think>inline</think>a", "reasoning_content": "field"},
     {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2",
                                         "reasoning_content": ""}],
    [{"role": "user", "content": "q"},
     {"role": "assistant", "content": "a", "reasoning": "old-style name"}],
    [{"role": "user", "content": "q"},
     {"role": "assistant", "content": "a", "thinking": "gpt-oss name"}],
    [{"role": "system", "content": "s", "name": None},
     {"role": "user", "content": "q", "reasoning_content": None}],
    # Shapes the [INST] and Gemma templates refuse; the others render them.
    conv(("system", "only a system message")),
    conv(("user", "one"), ("user", "two")),
    conv(("assistant", "first")),
    conv(("assistant", "first"), ("user", "then")),
    conv(("system", "s"), ("assistant", "a"), ("user", "u")),
    conv(("user", "u"), ("assistant", "a"), ("assistant", "b")),
    conv(("user", "u"), ("system", "late system"), ("user", "v")),
    conv(("system", "s1"), ("system", "s2"), ("user", "u")),
    conv(("user", "u"), ("narrator", "unknown role"), ("user", "v")),
]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city (°C).",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Zürich"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
CALL = {"type": "function", "id": "call0",
        "function": {"name": "get_weather", "arguments": {"city": "東京", "unit": "celsius"}}}

# (messages, tools)
TOOL_CASES = [
    (conv(("user", "Weather in Tokyo?")), [WEATHER_TOOL]),
    (conv(("system", "Use tools."), ("user", "Weather in Tokyo?")), [WEATHER_TOOL]),
    ([{"role": "user", "content": "Weather in Tokyo?"},
      {"role": "assistant", "content": "", "tool_calls": [CALL]},
      {"role": "tool", "content": "21 °C", "tool_call_id": "call0", "name": "get_weather"},
      {"role": "assistant", "content": "It is 21 °C."}], [WEATHER_TOOL]),
    ([{"role": "user", "content": "Weather in Tokyo?"},
      {"role": "assistant", "content": None, "tool_calls": [CALL]},
      {"role": "tool", "content": "21 °C", "tool_call_id": "call0"}], None),
]

# ---------------------------------------------------------------------------------------------
# Variables exactly as transformers passes them to the template


def template_messages(messages):
    """transformers' _normalize_chat_messages (None-valued keys dropped) then
    _alias_reasoning_fields (reasoning_content/thinking filled from any of the three names)."""
    out = []
    for message in messages:
        message = {k: v for k, v in message.items() if v is not None}
        reasoning = next((message[k] for k in ("reasoning_content", "thinking", "reasoning")
                          if message.get(k) is not None), None)
        if reasoning is not None:
            message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
        out.append(message)
    return out


def template_variables(specials, messages, add_generation_prompt, kwargs, tools=None):
    """apply_chat_template: template_kwargs = {**special_tokens_map, **kwargs};
    render_jinja_template renders messages=, tools=, documents=, add_generation_prompt=,
    **template_kwargs."""
    return {"messages": template_messages(messages), "tools": copy.deepcopy(tools),
            "documents": None, "add_generation_prompt": add_generation_prompt,
            **specials, **kwargs}


class RenderRecorder:
    """Wraps transformers' compiled template to capture the keyword arguments of each render."""
    calls = []

    def __init__(self, compiled):
        self.compiled = compiled

    def render(self, **kwargs):
        RenderRecorder.calls.append(copy.deepcopy(kwargs))
        return self.compiled.render(**kwargs)


_compile = chat_template_utils._compile_jinja_template
chat_template_utils._compile_jinja_template = lambda src: RenderRecorder(_compile(src))

# Errors a template can raise while transformers renders it (raise_exception, undefined
# attributes, a str + list, ...): the case is then a refusal that Spar must match.
TEMPLATE_ERRORS = (jinja2.exceptions.TemplateError, TypeError, ValueError, KeyError, IndexError,
                   AttributeError, ZeroDivisionError)

# ---------------------------------------------------------------------------------------------
# Templates and references


def load_templates(data_dir, only):
    out = []
    for path in sorted(glob.glob(os.path.join(data_dir, "*.json")) +
                       glob.glob(os.path.join(data_dir, "official", "*.json"))):
        rel = os.path.relpath(path, data_dir)[:-len(".json")]
        if only and only not in rel:
            continue
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        for key in ("source", "chat_template"):
            if key not in spec:
                sys.exit(f"{path}: missing field {key!r}")
        # The older family files write a missing token as "" (Qwen's bos); official/ omits it.
        specials = {k: spec[k] for k in SPECIAL_KEYS if spec.get(k)}
        out.append((rel, spec["chat_template"], specials))
    return out


class Reference:
    def __init__(self, tokenizer_dir, src, specials, plain):
        self.src, self.specials, self.plain = src, specials, plain
        self.tok = PreTrainedTokenizerFast.from_pretrained(
            tokenizer_dir, chat_template=src, **{k: specials.get(k) for k in SPECIAL_KEYS})
        assert self.tok.special_tokens_map == specials, (self.tok.special_tokens_map, specials)
        self.compile_error = None
        try:
            _compile(src)
        except TEMPLATE_ERRORS as e:
            self.compile_error = f"{type(e).__name__}: {e}"

    def render(self, messages, gen, kwargs, tools, variables):
        """apply_chat_template's text (or error), checked against the variables Spar is sent."""
        RenderRecorder.calls = []
        try:
            want = {"text": self.tok.apply_chat_template(
                messages, tools=tools, tokenize=False, add_generation_prompt=gen, **kwargs)}
        except TEMPLATE_ERRORS as e:
            want = {"error": f"{type(e).__name__}: {e}"}
            if type(e) is jinja2.exceptions.TemplateError:  # the template's raise_exception(MSG)
                want["raised"] = str(e)
        if self.compile_error is None:
            calls = RenderRecorder.calls
            assert len(calls) == 1, f"transformers rendered {len(calls)} times"
            assert calls[0] == variables and json.dumps(calls[0]) == json.dumps(variables), (
                f"variables differ from transformers':\n{calls[0]!r}\n{variables!r}")
            try:
                direct = {"text": _compile(self.src).render(**copy.deepcopy(variables))}
            except TEMPLATE_ERRORS as e:
                direct = {"error": f"{type(e).__name__}: {e}"}
            assert ("error" in direct) == ("error" in want), (direct, want)
            assert direct.get("text") == want.get("text"), (direct, want)
        return want

    def ids(self, messages, gen, kwargs, tools, text):
        """input_ids of apply_chat_template(tokenize=True) on the plain tokenizer, with the
        template's special tokens as keyword arguments (loading them into the tokenizer would add
        them to its vocabulary, which Spar's tokenizer from the directory does not have)."""
        out = self.plain.apply_chat_template(
            messages, tools=tools, chat_template=self.src, tokenize=True,
            add_generation_prompt=gen, **{**self.specials, **kwargs})
        ids = list(out["input_ids"] if hasattr(out, "keys") else out)
        assert ids == self.plain(text, add_special_tokens=False)["input_ids"], (
            "apply_chat_template(tokenize=True) did not encode the reference text")
        return ids


def build_cases(src, conversations):
    """(label, messages, add_generation_prompt, kwargs, tools) for one template."""
    kwarg_sets = [{}]
    if "enable_thinking" in src:
        kwarg_sets += [{"enable_thinking": True}, {"enable_thinking": False}]
    cases = []
    for label, messages, tools in conversations:
        for kwargs in kwarg_sets:
            for gen in (False, True):
                cases.append((label, messages, gen, kwargs, tools))
    return cases


# ---------------------------------------------------------------------------------------------
# Comparison


def run_tool(tool, lines):
    payload = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in lines).encode("utf-8")
    res = subprocess.run([tool], input=payload, capture_output=True, check=False)
    if res.returncode != 0:
        stderr = res.stderr.decode("utf-8", "replace")[-2000:]
        return None, f"{tool} exited {res.returncode}: {stderr}"
    got = [json.loads(line) for line in res.stdout.decode("utf-8").split("\n") if line]
    if len(got) != len(lines):
        return None, f"{tool}: {len(got)} results for {len(lines)} cases"
    return got, None


def first_difference(a, b):
    i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return (f"first difference at character {i} (lengths {len(a)} vs {len(b)}): "
            f"want ...{a[max(0, i - 40):i + 40]!r}... got ...{b[max(0, i - 40):i + 40]!r}...")


def compare_template(name, src, specials, args, plain, conversations, report):
    ref = Reference(args.tokenizer, src, specials, plain)
    if ref.compile_error:
        print(f"NOTE {name}: transformers cannot compile this template: {ref.compile_error}")
    cases = build_cases(src, conversations)
    lines, wants = [], []
    for n, (label, messages, gen, kwargs, tools) in enumerate(cases):
        variables = template_variables(specials, messages, gen, kwargs, tools)
        want = ref.render(messages, gen, kwargs, tools, variables)
        line = {"jinja": src, "variables": variables}
        if "text" in want and n % args.ids_every == 0:
            want["ids"] = ref.ids(messages, gen, kwargs, tools, want["text"])
            line["tokenizer"] = args.tokenizer
        lines.append(line)
        wants.append(want)
    got, err = run_tool(args.tool, lines)
    stats = dict.fromkeys(("cases", "equal", "refused", "raised", "raised_same", "ids",
                           "mismatches"), 0)
    stats["cases"] = len(cases)
    if err:
        print(f"FAIL {name}: {err}")
        stats["mismatches"] = len(cases)
        return stats
    for case, line, want, g in zip(cases, lines, wants, got):
        problem = None
        if "error" in want:
            if "error" in g:
                stats["refused"] += 1
                if "raised" in want:  # informational: does Spar report the template's own message?
                    stats["raised"] += 1
                    stats["raised_same"] += want["raised"] in g["error"]
            else:
                problem = "transformers refuses, Spar renders"
        elif "error" in g:
            problem = "transformers renders, Spar refuses"
        elif g.get("text") != want["text"]:
            problem = "texts differ; " + first_difference(want["text"], g.get("text") or "")
        else:
            stats["equal"] += 1
            if "ids" in want:
                if g.get("ids") != want["ids"]:
                    problem = "ids differ"
                else:
                    stats["ids"] += 1
        if problem:
            stats["mismatches"] += 1
            report.append((name, case[0], problem, line, want, g))
    print(f"{'ok  ' if stats['mismatches'] == 0 else 'FAIL'} {name}: {stats['cases']} cases, "
          f"{stats['equal']} rendered equal, {stats['refused']} refused by both ("
          f"{stats['raised_same']}/{stats['raised']} raise_exception messages carried), "
          f"{stats['ids']} token-id lists equal, {stats['mismatches']} mismatches")
    return stats


def show(report, limit):
    for name, label, problem, line, want, got in report[:limit]:
        variables = json.dumps(line["variables"], ensure_ascii=False)
        print(f"\n--- {name} [{label}]: {problem}")
        print(f"  variables: {variables[:1500]}{' ...' if len(variables) > 1500 else ''}")
        for key, value in (("want", want), ("got ", got)):
            if "error" in value:
                print(f"  {key}: error {value['error'][:500]!r}")
            else:
                print(f"  {key}: {value.get('text')!r}")
                if "ids" in want:
                    print(f"  {key} ids: {value.get('ids')}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", required=True, help="spar_chat_template_parity_tool")
    ap.add_argument("--data", default=os.path.join(ROOT, "tests/data/chat_templates"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "tests/data/tokenizers/qwen3"),
                    help="HF tokenizer directory for the reference tokenizer and token-id checks")
    ap.add_argument("--random", type=int, default=60, help="random conversations per template")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--ids-every", type=int, default=5, help="compare token ids every Nth case")
    ap.add_argument("--only", default="", help="substring of the template file names to run")
    ap.add_argument("--show", type=int, default=8, help="mismatches printed in all")
    args = ap.parse_args()
    args.tokenizer = os.path.abspath(args.tokenizer)

    start = time.time()
    templates = load_templates(args.data, args.only)
    if not templates:
        sys.exit(f"no templates under {args.data} match {args.only!r}")
    rng = random.Random(args.seed)
    conversations = ([("edge", m, None) for m in EDGE_CONVERSATIONS] +
                     [("tools", m, t) for m, t in TOOL_CASES] +
                     [(f"random {i}", random_conversation(rng), None) for i in range(args.random)])
    plain = PreTrainedTokenizerFast.from_pretrained(args.tokenizer)
    report, totals = [], dict.fromkeys(("cases", "equal", "refused", "raised", "raised_same", "ids",
                                        "mismatches"), 0)
    for name, src, specials in templates:
        stats = compare_template(name, src, specials, args, plain, conversations, report)
        for k in totals:
            totals[k] += stats[k]
    show(report, args.show)
    print(f"\ntransformers {transformers.__version__}, jinja2 {jinja2.__version__}: "
          f"{len(templates)} templates x {len(conversations)} conversations "
          f"({len(EDGE_CONVERSATIONS)} edge, {len(TOOL_CASES)} tool, {args.random} random, seed "
          f"{args.seed}) x 2 add_generation_prompt (x3 enable_thinking where read) = "
          f"{totals['cases']} cases: {totals['equal']} rendered equal, {totals['refused']} refused "
          f"by both ({totals['raised_same']}/{totals['raised']} raise_exception messages carried), "
          f"{totals['ids']} token-id lists equal, {totals['mismatches']} mismatches "
          f"({time.time() - start:.1f} s)")
    return 1 if totals["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
