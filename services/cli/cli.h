// The `spar` command line: servers (up, serve), the job client (submit, list, status, watch,
// cancel, resume), health and the demo. RunCli returns the process exit code:
// 0 ok, 1 the job or call failed, 2 bad usage or invalid input, 3 server unreachable,
// 4 not found.
#pragma once

namespace spar::cli {

int RunCli(int argc, char** argv);

}  // namespace spar::cli
