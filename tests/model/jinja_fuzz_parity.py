#!/usr/bin/env python3
"""Spar's Jinja interpreter against Jinja2 as transformers 5 configures it, on seeded random
templates (ctest label `parity`, test parity.jinja_fuzz).

Each template is built from a small grammar over the constructs chat templates use: literals,
variables (messages, a message dict, str, list, dict, int, a namespace), filters with arguments,
tests, binary and boolean operators, conditional expressions, str / dict / list methods,
subscripts and slices, {% if %}, {% for %} (nested, loop.index, loops over str / dict / items /
range), {% set %} and namespace attribute sets, mixed with text and newlines. The reference is
transformers' own compiled template (`_compile_jinja_template`, the sandboxed environment with
trim_blocks, lstrip_blocks and its globals) rendering a fresh copy of the variables. Spar renders
through spar_chat_template_parity_tool. A case passes when both render the same text, or both
refuse (an error on each side), or Spar refuses with UNIMPLEMENTED (a construct it names rather
than renders another way, e.g. printing a generator object). Anything else fails the test: Spar
rendering where Jinja raises, raising where Jinja renders, or rendering different text.
"""

import argparse
import copy
import json
import random
import subprocess
import sys

from transformers.utils.chat_template_utils import _compile_jinja_template

ATOMS = ["1", "0", "-3", "2.5", "'ab c'", "''", "' x\\n '", "none", "true", "false", "[1, 2, 3]",
         "[]", "{'a': 1, 'b': 'z'}", "m", "m.role", "m['content']", "messages", "messages[0]",
         "messages[-1].content", "ns.v", "(1, 'a')", "'é日😀'", "n", "s", "l", "d", "s", "l",
         "m.content", "missing"]
FILTERS = ["trim", "length", "string", "lower", "upper", "first", "last", "list", "tojson",
           "reverse", "default('D')", "default('D', true)", "join(',')", "items", "int", "float",
           "abs", "unique", "sort", "indent(2)", "replace('a','X')", "count", "capitalize", "safe",
           "e", "min", "max", "sum", "selectattr('role','equalto','user')",
           "map(attribute='role')", "select('odd')", "reject('none')", "tojson(indent=2)",
           "tojson(sort_keys=true)"]
TESTS = ["defined", "undefined", "none", "string", "number", "integer", "float", "mapping",
         "iterable", "sequence", "boolean", "true", "false", "odd", "even", "divisibleby(2)",
         "eq(1)", "in([1,2])", "lower", "upper"]
BINOPS = ["+", "-", "*", "/", "//", "%", "~", "==", "!=", "<", ">", "<=", ">=", "in", "not in",
          "and", "or"]
METHODS = ["strip()", "lstrip()", "rstrip('x ')", "split()", "split(' ')", "upper()", "lower()",
           "startswith('a')", "endswith(('c', 'x'))", "replace(' ', '_')", "find('b')",
           "count('a')", "title()", "splitlines()", "items()", "keys()", "values()", "get('a')",
           "get('zz', 5)", "removeprefix('a')"]
VARIABLES = {"messages": [{"role": "system", "content": " Sys "},
                          {"role": "user", "content": "abc ab"}],
             "m": {"role": "user", "content": "a b\nc"}, "s": "  abc ABC a  ", "l": [3, 1, 2, 2],
             "d": {"b": 2, "a": 1}, "n": 4}


def make_template(rng):
    def expr(depth=0):
        r = rng.random()
        if depth > 3 or r < 0.3:
            return rng.choice(ATOMS)
        if r < 0.45:
            return f"({expr(depth + 1)} | {rng.choice(FILTERS)})"
        if r < 0.55:
            negate = "not " if rng.random() < 0.3 else ""
            return f"({expr(depth + 1)} is {negate}{rng.choice(TESTS)})"
        if r < 0.75:
            return f"({expr(depth + 1)} {rng.choice(BINOPS)} {expr(depth + 1)})"
        if r < 0.82:
            return f"({expr(depth + 1)} if {expr(depth + 1)} else {expr(depth + 1)})"
        if r < 0.88:
            return f"not {expr(depth + 1)}"
        if r < 0.94:
            return f"{rng.choice(['s', 'l', 'm.content'])}.{rng.choice(METHODS)}"
        index = rng.choice(["1:", ":-1", "::-1", "::2", "-2:", "0", "-1", "5"])
        return f"{rng.choice(['s', 'l', 'messages'])}[{index}]"

    def stmt(depth=0):
        r = rng.random()
        if depth > 2 or r < 0.4:
            return "{{ " + expr() + " }}" + rng.choice(["", "\n", " ", "|"])
        if r < 0.6:
            return ("{% if " + expr() + " %}" + stmt(depth + 1) + "{% else %}" + stmt(depth + 1) +
                    "{% endif %}")
        if r < 0.8:
            seq = rng.choice(["l", "messages", "s", "d", "range(3)", "d.items()"])
            return ("{%- for loop_var in " + seq + " %}{{ loop_var }}" + stmt(depth + 1) +
                    "{{ loop.index }}{% endfor -%}")
        if r < 0.9:
            return "{% set n = " + expr() + " %}" + stmt(depth + 1)
        return "{% set ns.v = " + expr() + " %}" + stmt(depth + 1)

    return ("{% set ns = namespace(v=0) %}" +
            "".join(stmt() for _ in range(rng.randint(1, 3))))


def reference(src):
    try:
        return {"text": _compile_jinja_template(src).render(**copy.deepcopy(VARIABLES))}
    except Exception as e:  # any Jinja refusal: TemplateError, TypeError, UndefinedError, ...
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", required=True, help="spar_chat_template_parity_tool")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--cases", type=int, default=1500, help="templates per seed")
    args = ap.parse_args()
    totals = dict.fromkeys(("cases", "equal", "refused_both", "unimplemented", "bad"), 0)
    shown = 0
    for seed in (int(s) for s in args.seeds.split(",")):
        rng = random.Random(seed)
        templates = [make_template(rng) for _ in range(args.cases)]
        stdin = "".join(json.dumps({"jinja": t, "variables": VARIABLES}) + "\n"
                        for t in templates)
        out = subprocess.run([args.tool], input=stdin, capture_output=True, text=True,
                             check=True).stdout.split("\n")
        if len(out) != len(templates) + 1:
            sys.exit(f"the tool answered {len(out) - 1} lines for {len(templates)} cases")
        for src, line in zip(templates, out):
            ref, got = reference(src), json.loads(line)
            totals["cases"] += 1
            if "text" in ref and got.get("text") == ref["text"]:
                totals["equal"] += 1
            elif "error" in ref and "error" in got:
                totals["refused_both"] += 1
            elif got.get("code") == "UNIMPLEMENTED":
                totals["unimplemented"] += 1
            else:
                totals["bad"] += 1
                if shown < 8:
                    shown += 1
                    print(f"seed {seed}: {src!r}\n  jinja2: {ref!r}\n  spar:   {got!r}")
    print(f"{totals['cases']} random templates (seeds {args.seeds}): {totals['equal']} rendered "
          f"equal, {totals['refused_both']} refused by both, {totals['unimplemented']} refused by "
          f"Spar as unsupported, {totals['bad']} mismatches")
    return 1 if totals["bad"] else 0


if __name__ == "__main__":
    sys.exit(main())
