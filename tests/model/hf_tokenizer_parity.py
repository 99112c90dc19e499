#!/usr/bin/env python3
"""Spar's tokenizer.json implementation against the `tokenizers` library (ctest label `parity`).

The references are computed here, at test time, by the pinned library in the .venv that
`scripts/dev` sets up. Tokenizers compared:
  * every directory under tests/data/tokenizers (real checkpoints' tokenizer.json), and
  * small BPE tokenizers built and trained here by the library, one per pre-tokenizer and
    normalizer configuration: Split with each behaviour with and without invert, a tiktoken-style
    converted tokenizer (cl100k regex, Split Removed + invert, ByteLevel without regex), ByteLevel,
    Metaspace, Digits, Punctuation, Whitespace, WhitespaceSplit, BertPreTokenizer,
    CharDelimiterSplit, Sequence, and the NFC/NFKC/NFD/NFKD, Lowercase, Strip, StripAccents,
    Replace, Prepend and Sequence normalizers; each with special and non-special added tokens and
    a template post-processor.
Lines: the golden texts, hand-written edge cases, and --lines seeded random Unicode lines. For
each line: encode without and with special tokens, and decode of the ids with and without
skip_special_tokens. Any difference fails the test; the first few are printed.
"""

import argparse
import json
import os
import random
import string
import subprocess
import sys
import time
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers as pre
from tokenizers import processors, trainers

CL100K = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
O200K = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
         r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
         r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
         r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
         r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
WORDS = r"'s|'t| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
BEHAVIORS = ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"]
SPECIALS = ["[UNK]", "<s>", "</s>", "<|endoftext|>"]

# ---------------------------------------------------------------------------------------------
# Lines


def _assigned(lo, hi):
    return [chr(c) for c in range(lo, hi) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]


POOLS = {
    "ascii": [chr(c) for c in range(0x20, 0x7F)],
    "latin": _assigned(0xC0, 0x250),
    "greek_cyrillic": _assigned(0x370, 0x530),
    "cjk": _assigned(0x4E00, 0x4F00) + _assigned(0x3040, 0x3100) + _assigned(0xAC00, 0xAD00),
    "rtl": _assigned(0x5D0, 0x5EB) + _assigned(0x600, 0x700) + ["\u200f", "\u200e", "\u202b"],
    "combining": _assigned(0x300, 0x370) + _assigned(0x1AB0, 0x1AC0) + ["\u20dd", "\u0e31"],
    "control": [chr(c) for c in range(0, 0x20)] + ["\x7f", "\x85", "\u200b", "\ufeff", "\u2028"],
    "space": [" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2009", "\x0b", "\x0c", "\u1680"],
    "digits": list("0123456789") + list("٠١٢٣٤٥٦٧٨٩") + list("０１２３") + ["½", "²", "Ⅻ"],
    "emoji": ["😀", "🤖", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "❤️", "🧑🏿‍💻", "☺", "✌️", "🫠"],
    "compat": list("ﬁﬂÅKſİıßẞΣςσǅ①ⓐ㎏ｶﾞＡａ™…‥¼") + ["e\u0301", "\u1e9b\u0323"],
    "bmp": _assigned(0x20, 0x3000) + _assigned(0xA000, 0xD7FF) + _assigned(0xF900, 0xFFFE),
    "astral": _assigned(0x10000, 0x10300) + _assigned(0x1F300, 0x1F700) + _assigned(0x20000, 0x20100),
}
WORDLIST = ["the", "don't", "I'll", "WE'RE", "it'S", "they've", "she'd", "I'm", "hello", "world",
            "Hello", "naïve", "café", "日本語", "مرحبا", "שלום", "Привет", "ΣΟΦΙΑ", "hello world",
            "<s>", "</s>", "<|endoftext|>", "<tag>", "Ok", "x_y", "foo.bar", "a-b", "$100",
            "3.14159", "2024-01-01", "e-mail@example.com", "C++", "#include", "    indent"]


def random_line(rng):
    parts = []
    for _ in range(rng.randint(1, 24)):
        kind = rng.random()
        if kind < 0.30:
            parts.append(rng.choice(WORDLIST))
        elif kind < 0.40:
            parts.append(rng.choice(POOLS["space"]) * rng.randint(1, 4))
        elif kind < 0.47:
            parts.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 12))))
        elif kind < 0.49:  # a very long word
            alphabet = rng.choice([POOLS["ascii"][33:], POOLS["latin"], POOLS["cjk"], ["a"]])
            parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(100, 1500))))
        else:
            pool = POOLS[rng.choice(list(POOLS))]
            parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 8))))
        if rng.random() < 0.5:
            parts.append(" ")
    return "".join(parts)


EDGE_LINES = [
    "", " ", "  ", "\n", " \n ", "\t\t", "a", "don't", "DON'T stop", "I'll've", "hello  world",
    "hello world", "<s>hello</s>", " <s> x", "<tag>  spaced  <tag>", "Ok Ok, OkOk", "▁already▁",
    "   leading", "trailing   ", "١٢٣ and 123", "x" * 3000, "👨‍👩‍👧‍👦👨‍👩‍👧‍👦", "é" * 50,
    "e\u0301\u0301\u0301", "\u0301starts with a mark", "\x00\x01\x02", "ΟΔΟΣ Σ σς", "İstanbul",
    "ﬁnance ﬂow", "<|endoftext|><|endoftext|>", "a<|endoftext|>b", "tab\there", "\r\n\r\n",
]


def library_unicode_lag():
    """Characters whose normalization or punctuation class the library takes from tables older
    than Python's (and ICU's): e.g. combining marks of Unicode 11-14 that it takes for starters. Kept out of the random
    lines, since matching them would mean matching an outdated Unicode version."""
    lag = set()
    punctuation = pre.Punctuation(behavior="removed")
    for c in sorted(set(c for pool in POOLS.values() for c in pool)):
        s = "a" + c + "\u0316\u0301" + c
        for form in ("NFC", "NFD", "NFKC", "NFKD"):
            if getattr(normalizers, form)().normalize_str(s) != unicodedata.normalize(form, s):
                lag.add(c)
        is_mark = len(c) == 1 and unicodedata.category(c).startswith("M")
        if (normalizers.StripAccents().normalize_str("a" + c) == "a") != is_mark:
            lag.add(c)
        is_punct = len(c) == 1 and (unicodedata.category(c).startswith("P") or
                                    c in string.punctuation)
        if len(c) == 1 and (punctuation.pre_tokenize_str(c) == []) != is_punct:
            lag.add(c)
    return lag


def make_lines(data_dir, count, seed):
    lag = library_unicode_lag()
    for name in POOLS:
        POOLS[name] = [c for c in POOLS[name] if c not in lag]
    print(f"{len(lag)} characters left out of the random lines (library's Unicode tables lag): "
          + " ".join(f"U+{ord(c):04X}" for c in sorted(lag)))
    lines = list(EDGE_LINES)
    for name in sorted(os.listdir(data_dir)):
        golden = os.path.join(data_dir, name, "golden.jsonl")
        if os.path.exists(golden):
            with open(golden, encoding="utf-8") as f:
                lines += [json.loads(line)["text"] for line in f if line.strip()]
    rng = random.Random(seed)
    lines += [random_line(rng) for _ in range(count)]
    return lines


# ---------------------------------------------------------------------------------------------
# Tokenizers built with the library


def byte_level_parts(add_prefix_space=False, use_regex=True):
    return (pre.ByteLevel(add_prefix_space=add_prefix_space, use_regex=use_regex),
            decoders.ByteLevel(), pre.ByteLevel.alphabet())


def variants():
    """(name, normalizer, pre_tokenizer, decoder, initial_alphabet)"""
    out = []
    for behavior in BEHAVIORS:
        for invert in (False, True):
            out.append((f"split-{behavior}{'-invert' if invert else ''}", None,
                        pre.Split(Regex(WORDS), behavior=behavior, invert=invert), None, []))
    out.append(("split-string-merged_with_next", None,
                pre.Split(" ", behavior="merged_with_next"), None, []))
    out.append(("split-string-contiguous-invert", None,
                pre.Split("ab", behavior="contiguous", invert=True), None, []))
    # tiktoken conversions: the regex keeps its matches (Removed + invert), bytes mapped after.
    for name, regex in (("tiktoken-cl100k", CL100K), ("tiktoken-o200k", O200K)):
        out.append((name, None,
                    pre.Sequence([pre.Split(Regex(regex), behavior="removed", invert=True),
                                  pre.ByteLevel(add_prefix_space=False, use_regex=False)]),
                    decoders.ByteLevel(), pre.ByteLevel.alphabet()))
    out.append(("llama3-isolated", None,
                pre.Sequence([pre.Split(Regex(CL100K), behavior="isolated"),
                              pre.ByteLevel(add_prefix_space=False, use_regex=False)]),
                decoders.ByteLevel(), pre.ByteLevel.alphabet()))
    for prefix in (False, True):
        for use_regex in (False, True):
            p, d, alphabet = byte_level_parts(prefix, use_regex)
            out.append((f"bytelevel-prefix{int(prefix)}-regex{int(use_regex)}", None, p, d,
                        alphabet))
    for scheme in ("always", "first", "never"):
        for split in (True, False):
            out.append((f"metaspace-{scheme}-split{int(split)}", None,
                        pre.Metaspace(prepend_scheme=scheme, split=split),
                        decoders.Metaspace(prepend_scheme=scheme, split=split), []))
    out.append(("metaspace-after-split", None,
                pre.Sequence([pre.Split(Regex(r"\p{N}"), behavior="isolated"),
                              pre.Metaspace(prepend_scheme="first")]),
                decoders.Metaspace(prepend_scheme="first"), []))
    out.append(("digits-individual", None, pre.Digits(individual_digits=True), None, []))
    out.append(("digits-contiguous", None, pre.Digits(individual_digits=False), None, []))
    for behavior in BEHAVIORS:
        out.append((f"punctuation-{behavior}", None, pre.Punctuation(behavior=behavior), None, []))
    out.append(("whitespace", None, pre.Whitespace(), None, []))
    out.append(("whitespace-split", None, pre.WhitespaceSplit(), None, []))
    out.append(("bert", None, pre.BertPreTokenizer(), None, []))
    out.append(("char-delimiter", None, pre.CharDelimiterSplit("a"), None, []))
    out.append(("sequence", None,
                pre.Sequence([pre.WhitespaceSplit(), pre.Digits(individual_digits=True),
                              pre.Punctuation(behavior="merged_with_previous")]), None, []))
    p, d, alphabet = byte_level_parts()
    for name, norm in (("nfc", normalizers.NFC()), ("nfkc", normalizers.NFKC()),
                       ("nfd", normalizers.NFD()), ("nfkd", normalizers.NFKD()),
                       ("lowercase", normalizers.Lowercase()),
                       ("strip", normalizers.Strip()),
                       ("strip-left", normalizers.Strip(left=True, right=False)),
                       ("strip-accents", normalizers.Sequence([normalizers.NFD(),
                                                               normalizers.StripAccents()])),
                       ("replace-string", normalizers.Replace("o", "0")),
                       ("replace-regex", normalizers.Replace(Regex(r"\s+"), " ")),
                       ("replace-regex-delete", normalizers.Replace(Regex(r"\p{M}"), "")),
                       ("prepend", normalizers.Prepend("▁")),
                       ("sequence", normalizers.Sequence([normalizers.NFKC(),
                                                          normalizers.Lowercase(),
                                                          normalizers.Strip()]))):
        out.append((f"normalizer-{name}", norm, p, d, alphabet))
    # SentencePiece style (Llama 2 / Mistral) as the converters write it.
    out.append(("spm-style", normalizers.Sequence([normalizers.Prepend("▁"),
                                                   normalizers.Replace(" ", "▁")]), None,
                decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                   decoders.Fuse(), decoders.Strip(" ", 1, 0)]), []))
    return out


def build_tokenizer(spec, corpus, out_dir):
    name, norm, pre_tok, dec, alphabet = spec
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    if norm is not None:
        tok.normalizer = norm
    if pre_tok is not None:
        tok.pre_tokenizer = pre_tok
    if dec is not None:
        tok.decoder = dec
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=SPECIALS,
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_tokens([AddedToken("hello world", normalized=True),
                    AddedToken("<tag>", lstrip=True, rstrip=True, normalized=False),
                    AddedToken("Ok", single_word=True, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    path = os.path.join(out_dir, name)
    os.makedirs(path, exist_ok=True)
    tok.save(os.path.join(path, "tokenizer.json"))
    return path


# ---------------------------------------------------------------------------------------------
# Comparison


def reference(tok_dir, lines):
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    ids = [e.ids for e in tok.encode_batch(lines, add_special_tokens=False)]
    ids_special = [e.ids for e in tok.encode_batch(lines, add_special_tokens=True)]
    decoded = tok.decode_batch(ids, skip_special_tokens=False)
    decoded_skip = tok.decode_batch(ids, skip_special_tokens=True)
    return [{"ids": a, "ids_special": b, "decoded": c, "decoded_skip": d}
            for a, b, c, d in zip(ids, ids_special, decoded, decoded_skip)]


def spar(tool, tok_dir, lines_path):
    with open(lines_path, "rb") as f:
        res = subprocess.run([tool, tok_dir], stdin=f, capture_output=True, check=False)
    if res.returncode != 0:
        return None, res.stderr.decode("utf-8", "replace").strip()
    return [json.loads(line) for line in res.stdout.decode("utf-8").split("\n") if line], None


def compare(name, tool, tok_dir, lines, lines_path, show):
    want = reference(tok_dir, lines)
    got, error = spar(tool, tok_dir, lines_path)
    if got is None:
        print(f"FAIL {name}: Spar cannot load it: {error}")
        return len(lines), len(lines)
    mismatches = 0
    for i, (w, g) in enumerate(zip(want, got)):
        diff = [k for k in w if g.get(k) != w[k]]
        if not diff:
            continue
        mismatches += 1
        if mismatches <= show:
            print(f"  {name} line {i}: {json.dumps(lines[i], ensure_ascii=False)[:200]}")
            for k in diff:
                print(f"    {k}: spar={str(g.get(k, g.get('error')))[:300]}")
                print(f"    {k}: lib ={str(w[k])[:300]}")
    print(f"{'ok  ' if mismatches == 0 else 'FAIL'} {name}: {len(lines)} lines, "
          f"{mismatches} mismatches")
    return len(lines), mismatches


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tool", required=True, help="spar_hf_tokenizer_parity_tool")
    ap.add_argument("--work", required=True, help="scratch folder (rewritten)")
    ap.add_argument("--data", default="tests/data/tokenizers")
    ap.add_argument("--lines", type=int, default=5000, help="random lines")
    ap.add_argument("--variant-lines", type=int, default=2000,
                    help="lines compared on the built tokenizers (all on tests/data's)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--only", default="", help="substring of the tokenizer names to run")
    ap.add_argument("--show", type=int, default=5, help="mismatches printed per tokenizer")
    args = ap.parse_args()

    start = time.time()
    import tokenizers
    os.makedirs(args.work, exist_ok=True)
    lines = make_lines(args.data, args.lines, args.seed)
    lines_path = os.path.join(args.work, "lines.jsonl")
    with open(lines_path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    corpus = lines[len(EDGE_LINES):][:400]  # mostly the golden texts; training time grows fast

    targets = [(name, os.path.join(args.data, name)) for name in sorted(os.listdir(args.data))
               if os.path.exists(os.path.join(args.data, name, "tokenizer.json"))]
    built = os.path.join(args.work, "built")
    for spec in variants():
        if args.only in spec[0]:
            targets.append((spec[0], build_tokenizer(spec, corpus, built)))
    targets = [t for t in targets if args.only in t[0]]

    variant_lines = lines[:args.variant_lines]
    variant_path = os.path.join(args.work, "variant_lines.jsonl")
    with open(variant_path, "w", encoding="utf-8") as f:
        for line in variant_lines:
            f.write(json.dumps(line) + "\n")
    total = failed = bad = 0
    for name, tok_dir in targets:
        if tok_dir.startswith(built):
            n, m = compare(name, args.tool, tok_dir, variant_lines, variant_path, args.show)
        else:
            n, m = compare(name, args.tool, tok_dir, lines, lines_path, args.show)
        total += n
        failed += m
        bad += m > 0
    print(f"tokenizers {tokenizers.__version__}: {len(targets)} tokenizers ({len(lines)} lines "
          f"each for tests/data's, {len(variant_lines)} for the built ones; {args.lines} random, "
          f"seed {args.seed}) = {total} encodings compared, {failed} mismatches in {bad} "
          f"tokenizers, {time.time() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
