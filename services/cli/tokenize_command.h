// `spar tokenize --model DIR [--chat] [--chat_template=NAME] [--add-special-tokens]`: reads one
// JSON string per line on stdin (with --chat, one JSON list of {"role", "content"} messages,
// rendered with the model's chat template, or the named one) and prints the token ids as a JSON
// array per line. A directory holding only tokenizer.json (+ tokenizer_config.json) is enough.
// A user's debugging tool and how the encoding is checked from outside.
#pragma once

#include <istream>
#include <ostream>

#include "absl/status/status.h"
#include "services/cli/args.h"

namespace spar::cli {

// Exit codes: 0 ok, 2 bad flags / bad input line (message names the line), 4 no tokenizer.
// Needs "chat" and "add-special-tokens" among Args::Parse's switches.
int RunTokenizeCommand(const Args& args);

// The loop behind it, on streams (for tests).
absl::Status TokenizeStream(const Args& args, std::istream& in, std::ostream& out);

}  // namespace spar::cli
