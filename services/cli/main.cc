// `spar`: the CLI and the all-in-one server. Everything lives in the spar_cli library.
#include "common/blas_kernel.h"
#include "services/cli/cli.h"

int main(int argc, char** argv) {
  // Off OpenBLAS's generic fallback kernel onto the CPU's best (re-executes; see blas_kernel.h).
  spar::MaybeUpgradeBlasKernel(argv);
  return spar::cli::RunCli(argc, argv);
}
