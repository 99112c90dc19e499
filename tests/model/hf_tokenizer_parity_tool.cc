// Test helper for hf_tokenizer_parity.py (ctest label `parity`): loads the tokenizer directory
// given as the only argument and, for every line of stdin holding a JSON string, prints one JSON
// line with Spar's results: {"ids", "ids_special" (add_special_tokens), "decoded",
// "decoded_skip" (skip_special_tokens)}, or {"error"} when encoding fails. Exits 2 on usage or
// load errors, with the message on stderr.
#include <cstdio>
#include <iostream>
#include <string>

#include "model/hf_tokenizer.h"
#include "nlohmann/json.hpp"

namespace {

using nlohmann::json;
using spar::model::HfTokenizer;

json Process(const HfTokenizer& tok, const std::string& text) {
  json row;
  auto ids = tok.Encode(text);
  spar::model::EncodeOptions with_special;
  with_special.add_special_tokens = true;
  auto ids_special = tok.Encode(text, with_special);
  if (!ids.ok() || !ids_special.ok()) {
    row["error"] = std::string((ids.ok() ? ids_special.status() : ids.status()).message());
    return row;
  }
  row["ids"] = *ids;
  row["ids_special"] = *ids_special;
  auto decoded = tok.Decode(*ids);
  spar::model::DecodeOptions skip;
  skip.skip_special_tokens = true;
  auto decoded_skip = tok.Decode(*ids, skip);
  if (!decoded.ok() || !decoded_skip.ok()) {
    row["error"] = std::string((decoded.ok() ? decoded_skip.status() : decoded.status()).message());
    return row;
  }
  row["decoded"] = *decoded;
  row["decoded_skip"] = *decoded_skip;
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s TOKENIZER_DIR < lines.jsonl\n", argv[0]);
    return 2;
  }
  auto tok = HfTokenizer::Load(argv[1]);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 2;
  }
  std::ios::sync_with_stdio(false);
  std::string line;
  while (std::getline(std::cin, line)) {
    json in = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!in.is_string()) {
      std::fprintf(stderr, "stdin: expected a JSON string per line\n");
      return 2;
    }
    std::cout << Process(**tok, in.get<std::string>())
                     .dump(-1, ' ', false, json::error_handler_t::replace)
              << '\n';
  }
  return 0;
}
