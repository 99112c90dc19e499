// `spar`: the CLI and the all-in-one server. Everything lives in the spar_cli library.
#include "services/cli/cli.h"

int main(int argc, char** argv) { return spar::cli::RunCli(argc, argv); }
