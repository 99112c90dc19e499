# The steps of scripts/gpu_check/run.sh (sourced; uses its variables and step()).

check_host() {
  if [ ! -f "$deps/MANIFEST" ]; then
    echo "gpu-check: no prepared prefix at $deps: run scripts/gpu-check --prepare on a" \
         "Debian 12 machine with network first (it travels with the checkout)" >&2
    return 1
  fi
  local need have
  need=$(awk '$1 == "glibc" {print $2}' "$deps/MANIFEST")
  have=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
  if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
    echo "gpu-check: the prefix's libraries need glibc >= $need, this host has $have" >&2
    return 1
  fi
  local flag=""
  [ $dry -eq 1 ] && flag="--allow-no-gpu"
  "$py" "$here/env.py" $flag >"$out/env.json" || return 1
  echo "[gpu-check] host: $(cat "$out/env.json")"
}

# The Debian multiarch folders are named explicitly: a host whose CMake does not set
# CMAKE_LIBRARY_ARCHITECTURE (lib64 distributions) would not look into lib/x86_64-linux-gnu.
configure() {
  local torch_cmake libdir="$deps/usr/lib/x86_64-linux-gnu"
  torch_cmake=$("$py" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')
  step configure 120 "torch $torch_cmake, prefix $deps" \
    cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DSPAR_TORCH_PARTS_ONLY=ON -DSPAR_LIBTORCH=pypi -DSPAR_TORCH_CMAKE_DIR="$torch_cmake" \
      -DSPAR_REF_PYTHON="$(command -v "$py")" -DCMAKE_PREFIX_PATH="$deps/usr" \
      -DCMAKE_LIBRARY_PATH="$libdir" -DCMAKE_INCLUDE_PATH="$deps/usr/include" \
      -Dabsl_DIR="$libdir/cmake/absl" -DGTest_DIR="$libdir/cmake/GTest" \
      -DCMAKE_CUDA_COMPILER="$(command -v nvcc)"
}

build_parts() {
  step build "${SPAR_BUILD_BUDGET:-270}" "ninja gpu_check -j$jobs" \
    cmake --build "$build" --target gpu_check -- -j"$jobs"
}

gpu_tests() {
  # '^gpu$': ctest's -L is a regex, and a bare "gpu" also matches the `gpucheck` label.
  step gpu-tests 120 "ctest -L ^gpu$" \
    ctest --test-dir "$build" -L '^gpu$' --no-tests=error --output-on-failure --timeout 110 \
      --output-junit "$out/ctest-junit.xml"
}

# The GPU logits parity with transformers lives in tests/model/hf_model_parity.py (its `logits`
# suite); it runs here when the script is present and takes --device.
logits_parity() {
  local script="$repo/tests/model/hf_model_parity.py"
  if [ ! -f "$script" ]; then
    skip_step logits-parity "not present" "no tests/model/hf_model_parity.py"; return 0
  fi
  if ! "$py" "$script" --help 2>/dev/null | grep -q -- --device; then
    skip_step logits-parity "not present" "hf_model_parity.py has no --device"; return 0
  fi
  if ! "$py" -c 'import transformers' 2>/dev/null; then
    skip_step logits-parity "not present" "transformers is not importable"; return 0
  fi
  local device=cuda
  [ $dry -eq 1 ] && device=cpu
  step logits-parity 120 "hf_model_parity.py logits --device $device" \
    "$py" "$script" logits --device "$device" \
      --tool "$build/tests/model/spar_hf_model_parity_tool" \
      --trainer "$build/tests/trainer/spar_trainer_test_helper" --work "$out/parity-work"
}

benchmarks() {
  local args=(--size=1b --device=cuda)
  # The dry run exercises the program and the table on a tiny model on CPU.
  [ $dry -eq 1 ] && args=(--size=tiny --device=cpu --train_steps=2 --decode_steps=4 --batches=1,4)
  step bench 180 "spar_gpu_bench ${args[*]}" \
    sh -c '"$0" "$@" >"'"$out"'/bench.jsonl"' "$build/bench/spar_gpu_bench" "${args[@]}"
}
