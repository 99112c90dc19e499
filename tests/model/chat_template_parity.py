#!/usr/bin/env python3
"""Spar's built-in chat templates against transformers' apply_chat_template (ctest label `parity`).

The references are rendered here, at test time, by the pinned transformers in the .venv that
`scripts/dev` sets up: each real checkpoint template under tests/data/chat_templates (one file per
checkpoint, naming the Spar family that stands for it) is set on a tokenizer with that checkpoint's
BOS/EOS texts and rendered with apply_chat_template(tokenize=False). Spar renders the same
conversation with RenderChat(family) through spar_chat_template_parity_tool. Per template:
  * DetectChatTemplate must pick the file's family from the Jinja text;
  * every conversation, with and without add_generation_prompt: where transformers renders, Spar
    must render the same text; where the template refuses (raise_exception), Spar must refuse.
Conversations: hand-written edge cases and --random seeded random ones; an optional leading system
message, then 1-4 user/assistant exchanges ending on either role, with Unicode, emoji, newlines,
Unicode whitespace at the edges, empty contents and special-token look-alikes; Qwen3's reasoning
shapes (<think> blocks, tool-response look-alikes). Also refusal shapes (two user turns in a row,
an assistant first, a lone system message). Out of scope: a system message
after the first (Spar refuses it for every family; some templates render it) and roles other than
system/user/assistant.
Any difference fails the test; the first few are printed.
"""

import argparse
import glob
import json
import os
import random
import subprocess
import sys

import jinja2
import transformers
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

# ---------------------------------------------------------------------------------------------
# Conversations

WORDS = ["Hello", "hi", "What is 2+2?", "4.", "naïve café", "日本語のテキスト", "مرحبا بالعالم",
         "Привет", "ΣΟΦΙΑ σς", "emoji 😀🤖👍🏽", "family 👨‍👩‍👧‍👦", "flag 🇫🇷", "e\u0301", "tab\there",
         "line one\nline two", "\n\nblank lines\n\n", "x" * 200, "{{ not jinja }}", "{% raw %}",
         "<|im_start|>", "<|im_end|>", "[INST]", "[/INST]", "</s>", "<s>", "<<SYS>>",
         "<start_of_turn>", "<|eot_id|>", "<|user|>", "<think>", "</think>", "'quotes' \"dq\"",
         "back\\slash", "C++ #include <vector>", "$100 & 50%", "\u200b zero width"]
EDGE_SPACE = ["", " ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2028", "\x85", "\x1c",
              "\u200b", "\ufeff", " \n "]


def random_content(rng):
    parts = [rng.choice(WORDS) for _ in range(rng.randint(0, 6))]
    text = " ".join(parts) if rng.random() < 0.7 else "\n".join(parts)
    if rng.random() < 0.3:
        text = rng.choice(EDGE_SPACE) + text
    if rng.random() < 0.3:
        text = text + rng.choice(EDGE_SPACE)
    return text


def random_conversation(rng):
    messages = []
    if rng.random() < 0.5:
        messages.append({"role": "system", "content": random_content(rng)})
    for _ in range(rng.randint(1, 4)):
        messages.append({"role": "user", "content": random_content(rng)})
        messages.append({"role": "assistant", "content": random_content(rng)})
    if rng.random() < 0.5:
        messages.pop()  # end on the user's turn
    return messages


def conv(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


EDGE_CONVERSATIONS = [
    conv(("user", "Hi!")),
    conv(("system", "You are helpful."), ("user", "Hi!"), ("assistant", "Hello."),
         ("user", "2+2?")),
    conv(("system", "  padded system  "), ("user", "  padded user  ")),
    conv(("system", ""), ("user", "empty system")),
    conv(("system", "sys"), ("user", "")),
    conv(("system", "\u3000ideographic\u3000"), ("user", "\u00a0nbsp\u00a0")),
    conv(("user", "\x1cfile separator\x1f"), ("assistant", "\x85next line\u2028")),
    conv(("user", "a"), ("assistant", ""), ("user", "b")),
    conv(("user", "\n\nq\n\n"), ("assistant", "\n\nanswer\n\n")),
    conv(("user", "q"), ("assistant", "<think>\nhmm\n</think>\n\nanswer")),
    conv(("user", "q"), ("assistant", "thinking</think>answer"), ("user", "again")),
    conv(("user", "😀"), ("assistant", "🤖"), ("user", "👨‍👩‍👧‍👦"), ("assistant", "🇫🇷"),
         ("user", "日本語"), ("assistant", "مرحبا"), ("user", "end")),
    conv(("system", "only a system message")),
    # Qwen3's reasoning handling: think blocks after the last real user query, tool responses.
    conv(("user", "q"), ("assistant", "<think>r1</think>a1"),
         ("user", "<tool_response>x</tool_response>"),
         ("assistant", "\n<think>\nr2\n</think>\n\na2"),
         ("user", "<tool_response>y</tool_response>")),
    conv(("user", "q"), ("assistant", "a</think>b</think>\nc")),
    conv(("user", "q"), ("assistant", "<think>only an opening tag")),
    conv(("user", "<tool_response>only</tool_response>"), ("assistant", "<think>r</think>x")),
    # Shapes the [INST] and Gemma templates refuse; the others render them.
    conv(("user", "one"), ("user", "two")),
    conv(("assistant", "first")),
    conv(("system", "s"), ("assistant", "a"), ("user", "u")),
    conv(("user", "u"), ("assistant", "a"), ("assistant", "b")),
]

# ---------------------------------------------------------------------------------------------
# Rendering


def load_templates(data_dir):
    out = []
    for path in sorted(glob.glob(os.path.join(data_dir, "*.json"))):
        with open(path, encoding="utf-8") as f:
            spec = json.load(f)
        for key in ("family", "source", "chat_template", "bos_token", "eos_token"):
            if key not in spec:
                sys.exit(f"{path}: missing field {key!r}")
        out.append((os.path.splitext(os.path.basename(path))[0], spec))
    return out


def reference_tokenizer(spec):
    """A tokenizer carrying only the checkpoint's template and BOS/EOS texts: rendering with
    tokenize=False reads nothing else."""
    model = models.WordLevel({"<unk>": 0}, unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(model),
                                   bos_token=spec["bos_token"] or None,
                                   eos_token=spec["eos_token"] or None,
                                   chat_template=spec["chat_template"])


def reference(tok, messages, add_generation_prompt):
    try:
        return {"text": tok.apply_chat_template(messages, tokenize=False,
                                                add_generation_prompt=add_generation_prompt)}
    except jinja2.exceptions.TemplateError as e:
        return {"error": str(e)}


def run_tool(tool, cases):
    payload = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases).encode("utf-8")
    res = subprocess.run([tool], input=payload, capture_output=True, check=False)
    if res.returncode != 0:
        sys.exit(f"{tool} failed ({res.returncode}): {res.stderr.decode('utf-8', 'replace')}")
    got = [json.loads(line) for line in res.stdout.decode("utf-8").split("\n") if line]
    if len(got) != len(cases):
        sys.exit(f"{tool}: {len(got)} results for {len(cases)} cases")
    return got


def agrees(want, got):
    if "error" in want:
        return "error" in got  # both refuse; the messages are each implementation's own
    return got.get("text") == want["text"]


def compare_template(name, spec, tool, conversations, show):
    tok = reference_tokenizer(spec)
    cases, wants = [{"detect": spec["chat_template"]}], [{"detected": spec["family"]}]
    for messages in conversations:
        for gen in (False, True):
            cases.append({"template": spec["family"], "messages": messages,
                          "add_generation_prompt": gen, "bos_token": spec["bos_token"],
                          "eos_token": spec["eos_token"]})
            wants.append(reference(tok, messages, gen))
    got = run_tool(tool, cases)
    mismatches = refusals = 0
    for case, want, g in zip(cases, wants, got):
        refusals += "error" in want
        if want == g or ("detect" not in case and agrees(want, g)):
            continue
        mismatches += 1
        if mismatches <= show:
            what = {k: case[k] for k in ("messages", "add_generation_prompt") if k in case}
            print(f"  {name}: {json.dumps(what, ensure_ascii=False)[:400]}")
            print(f"    spar={json.dumps(g, ensure_ascii=False)[:400]}")
            print(f"    ref ={json.dumps(want, ensure_ascii=False)[:400]}")
    print(f"{'ok  ' if mismatches == 0 else 'FAIL'} {name} ({spec['family']}): {len(cases)} cases "
          f"({refusals} refused by the template), {mismatches} mismatches")
    return len(cases), mismatches


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", required=True, help="spar_chat_template_parity_tool")
    ap.add_argument("--data", default="tests/data/chat_templates")
    ap.add_argument("--random", type=int, default=60, help="random conversations")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--only", default="", help="substring of the template file names to run")
    ap.add_argument("--show", type=int, default=5, help="mismatches printed per template")
    args = ap.parse_args()

    templates = [t for t in load_templates(args.data) if args.only in t[0]]
    if not templates:
        sys.exit(f"no templates under {args.data} match {args.only!r}")
    rng = random.Random(args.seed)
    conversations = EDGE_CONVERSATIONS + [random_conversation(rng) for _ in range(args.random)]
    total = failed = bad = 0
    for name, spec in templates:
        n, m = compare_template(name, spec, args.tool, conversations, args.show)
        total += n
        failed += m
        bad += m > 0
    print(f"transformers {transformers.__version__}: {len(templates)} templates x "
          f"{len(conversations)} conversations ({args.random} random, seed {args.seed}) x 2 "
          f"add_generation_prompt, + detection = {total} cases, {failed} mismatches in {bad} "
          f"templates")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
