# The one place that knows how each dependency is found. Everything else links spar::<dep>.
# Debian 12 packages: see scripts/install_deps.sh.

find_package(Threads REQUIRED)
# SPAR_TORCH_PARTS_ONLY (scripts/gpu-check) needs no pkg-config: a bare GPU host may lack it.
if(NOT SPAR_TORCH_PARTS_ONLY)
  find_package(PkgConfig REQUIRED)
endif()

# Abseil (20220623: no absl/log, no RETURN_IF_ERROR; common/ supplies those).
find_package(absl CONFIG REQUIRED)
add_library(spar_absl INTERFACE)
target_link_libraries(spar_absl INTERFACE absl::status absl::statusor absl::strings absl::str_format
  absl::time absl::synchronization absl::flat_hash_map absl::random_random absl::hash)
add_library(spar::absl ALIAS spar_absl)

# nlohmann/json (header only).
find_package(nlohmann_json 3.10 CONFIG REQUIRED)
add_library(spar_json INTERFACE)
target_link_libraries(spar_json INTERFACE nlohmann_json::nlohmann_json)
add_library(spar::json ALIAS spar_json)

# The services' dependencies; SPAR_TORCH_PARTS_ONLY builds nothing that needs them.
if(NOT SPAR_TORCH_PARTS_ONLY)
  # cpp-httplib: a .pc plus a shared library on Debian 12.
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
  add_library(spar_httplib INTERFACE)
  target_link_libraries(spar_httplib INTERFACE PkgConfig::HTTPLIB Threads::Threads)
  add_library(spar::httplib ALIAS spar_httplib)

  # gRPC + protobuf.
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_program(SPAR_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
  find_program(SPAR_PROTOC protoc REQUIRED)
  add_library(spar_grpcpp INTERFACE)
  target_link_libraries(spar_grpcpp INTERFACE gRPC::grpc++ gRPC::grpc++_reflection
                        protobuf::libprotobuf)
  add_library(spar::grpcpp ALIAS spar_grpcpp)

  # SQLite (judgment cache).
  find_package(SQLite3 REQUIRED)
  add_library(spar_sqlite INTERFACE)
  target_link_libraries(spar_sqlite INTERFACE SQLite::SQLite3)
  add_library(spar::sqlite ALIAS spar_sqlite)
endif()

# ICU (libicu-dev): Unicode normalization (NFC/NFKC) and Unicode-property regexes for the
# Hugging Face tokenizer (model/hf_tokenizer.cc). Chosen over PCRE2 because normalization needs ICU
# anyway, and ICU's regex engine covers the tokenizer.json patterns (\p{L}, lookahead, (?i:)).
# Only spar_model uses it, so only torch builds need it.
# SPAR_TORCH_PARTS_ONLY finds it with CMake's FindICU (no pkg-config), e.g. in a prefix of
# unpacked Debian packages named by CMAKE_PREFIX_PATH.
if(SPAR_WITH_TORCH)
  add_library(spar_icu INTERFACE)
  if(SPAR_TORCH_PARTS_ONLY)
    find_package(ICU REQUIRED COMPONENTS uc i18n)
    target_link_libraries(spar_icu INTERFACE ICU::uc ICU::i18n)
  else()
    pkg_check_modules(ICU REQUIRED IMPORTED_TARGET icu-uc icu-i18n)
    target_link_libraries(spar_icu INTERFACE PkgConfig::ICU)
  endif()
  add_library(spar::icu ALIAS spar_icu)
endif()

# The wheel's include/ carries an old protobuf's headers (include/google/protobuf); ahead of
# Debian's they break every file that includes gRPC too. Point LibTorch's imported targets at a
# view of include/ (symlinks, in the build dir) without google/.
function(spar_torch_include_without_protobuf include_dir)
  set(view "${CMAKE_BINARY_DIR}/torch-include")
  file(MAKE_DIRECTORY "${view}")
  file(GLOB entries RELATIVE "${include_dir}" "${include_dir}/*")
  foreach(e IN LISTS entries)
    if(NOT e STREQUAL "google" AND NOT EXISTS "${view}/${e}")
      file(CREATE_LINK "${include_dir}/${e}" "${view}/${e}" SYMBOLIC)
    endif()
  endforeach()
  get_property(targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(t IN LISTS targets)
    get_target_property(dirs ${t} INTERFACE_INCLUDE_DIRECTORIES)
    if(dirs)
      list(TRANSFORM dirs REPLACE "^${include_dir}" "${view}")
      set_target_properties(${t} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${dirs}")
    endif()
  endforeach()
  list(TRANSFORM TORCH_INCLUDE_DIRS REPLACE "^${include_dir}" "${view}")
  set(TORCH_INCLUDE_DIRS "${TORCH_INCLUDE_DIRS}" PARENT_SCOPE)
endfunction()

# LibTorch, one of two (SPAR_LIBTORCH):
#  - pypi (primary): LibTorch 2.x with CUDA from the pinned PyPI `torch` wheel in the project venv
#    (scripts/requirements-ref.txt); torch.utils.cmake_prefix_path names its CMake config. Its CUDA
#    runtime libraries come from the CUDA 13 toolkit, except the few the toolkit lacks, which are
#    nvidia-* wheels in the venv (found below and put on the RPATH).
#  - debian: Debian's libtorch-dev 1.13, CPU only (the CPU Docker image; CI compiles it too).
# find_package(Torch) yields ${TORCH_LIBRARIES}, not a target; wrap it.
if(SPAR_WITH_TORCH)
  if(SPAR_LIBTORCH STREQUAL "pypi")
    set(_spar_torch_cmake "${SPAR_TORCH_CMAKE_DIR}")
    if(NOT _spar_torch_cmake)
      execute_process(
        COMMAND "${SPAR_REF_PYTHON}" -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
        OUTPUT_VARIABLE _spar_torch_cmake OUTPUT_STRIP_TRAILING_WHITESPACE
        RESULT_VARIABLE _spar_torch_rc ERROR_VARIABLE _spar_torch_err)
      if(NOT _spar_torch_rc EQUAL 0)
        message(FATAL_ERROR "SPAR_LIBTORCH=pypi: no torch in ${SPAR_REF_PYTHON} "
                "(${_spar_torch_err}). Run scripts/dev build (it creates .venv), or configure "
                "with -DSPAR_LIBTORCH=debian.")
      endif()
    endif()
    get_filename_component(_spar_torch_root "${_spar_torch_cmake}/../.." ABSOLUTE)
    # The torch root first, so that its lib/ wins over a system libtorch (Debian's) in find_library.
    list(PREPEND CMAKE_PREFIX_PATH "${_spar_torch_root}" "${_spar_torch_cmake}")
    set(Torch_DIR "${_spar_torch_cmake}/Torch" CACHE PATH "LibTorch's CMake config" FORCE)
    if(NOT DEFINED TORCH_CUDA_ARCH_LIST)
      set(TORCH_CUDA_ARCH_LIST "8.0;9.0")  # Spar compiles no .cu; this only quiets the probe
    endif()
    file(GLOB _spar_nvidia_libs LIST_DIRECTORIES true "${_spar_torch_root}/../nvidia/*/lib")
  elseif(NOT SPAR_LIBTORCH STREQUAL "debian")
    message(FATAL_ERROR "SPAR_LIBTORCH must be pypi or debian, got '${SPAR_LIBTORCH}'")
  endif()
  find_package(Torch REQUIRED)
  # find_package caches what it found: a build dir configured for one LibTorch keeps it.
  if(SPAR_LIBTORCH STREQUAL "pypi" AND NOT TORCH_LIBRARY MATCHES "(site|dist)-packages/torch/lib/")
    message(FATAL_ERROR "SPAR_LIBTORCH=pypi found ${TORCH_LIBRARY}, not the venv's LibTorch: "
            "this build dir was configured for another LibTorch; use a fresh one")
  elseif(SPAR_LIBTORCH STREQUAL "debian" AND TORCH_LIBRARY MATCHES "(site|dist)-packages/torch/lib/")
    message(FATAL_ERROR "SPAR_LIBTORCH=debian found ${TORCH_LIBRARY}: this build dir was "
            "configured for the PyPI LibTorch; use a fresh one")
  endif()
  message(STATUS "spar: LibTorch ${Torch_VERSION} (${SPAR_LIBTORCH}) at ${TORCH_LIBRARY}")
  if(SPAR_LIBTORCH STREQUAL "pypi")
    spar_torch_include_without_protobuf("${_spar_torch_root}/include")
  endif()
  add_library(spar_torch INTERFACE)
  target_link_libraries(spar_torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(spar_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
  # TORCH_CXX_FLAGS may carry -D_GLIBCXX_USE_CXX11_ABI; apply it everywhere for ABI consistency.
  separate_arguments(_spar_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(spar_torch INTERFACE ${_spar_torch_flags})
  foreach(_dir IN LISTS _spar_nvidia_libs)
    target_link_options(spar_torch INTERFACE "LINKER:-rpath,${_dir}")
  endforeach()
  add_library(spar::torch ALIAS spar_torch)
  # pypi: nccl.h (c10d's NCCL headers include it) may be missing from the CUDA toolkit; the torch
  # wheel's nvidia-nccl dependency carries it next to torch.
  if(SPAR_LIBTORCH STREQUAL "pypi")
    file(GLOB _spar_nvidia_includes LIST_DIRECTORIES true "${_spar_torch_root}/../nvidia/*/include")
    find_path(SPAR_NCCL_INCLUDE_DIR nccl.h HINTS ${_spar_nvidia_includes} ${TORCH_INCLUDE_DIRS})
    if(SPAR_NCCL_INCLUDE_DIR)
      target_include_directories(spar_torch SYSTEM INTERFACE ${SPAR_NCCL_INCLUDE_DIR})
    endif()
  endif()
  find_file(SPAR_TORCH_NCCL_HEADER torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp
            PATHS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
  # Gloo (libgloo-dev): c10d's ProcessGroupGloo (compiled into libtorch_cpu) needs its headers
  # and USE_C10D_GLOO; only trainer/internal/distributed.cc includes them.
  find_path(SPAR_GLOO_INCLUDE_DIR gloo/algorithm.h REQUIRED)
  add_library(spar_gloo INTERFACE)
  target_include_directories(spar_gloo SYSTEM INTERFACE ${SPAR_GLOO_INCLUDE_DIR})
  target_link_libraries(spar_gloo INTERFACE spar::torch)
  # Debian's libtorch_cpu links the shared libgloo; the PyPI wheel's has gloo inside (and exports
  # it), so linking a second copy there would mix two gloo versions in one process.
  if(SPAR_LIBTORCH STREQUAL "debian")
    find_library(SPAR_GLOO_LIBRARY gloo REQUIRED)
    target_link_libraries(spar_gloo INTERFACE ${SPAR_GLOO_LIBRARY})
  endif()
  target_compile_definitions(spar_gloo INTERFACE USE_C10D_GLOO)
  # CUDA builds of LibTorch carry c10d's ProcessGroupNCCL: the trainer's Communicator all-reduces
  # gradients over NCCL there (USE_C10D_NCCL), Gloo otherwise. CPU-only builds (Debian's 1.13)
  # have no torch_cuda target.
  if(TARGET torch_cuda AND EXISTS "${SPAR_TORCH_NCCL_HEADER}")
    target_compile_definitions(spar_gloo INTERFACE USE_C10D_NCCL)
    message(STATUS "spar: c10d NCCL enabled for the trainer")
  endif()
  add_library(spar::gloo ALIAS spar_gloo)
endif()

if(SPAR_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
  include(GoogleTest)
endif()
if(SPAR_BUILD_BENCH AND NOT SPAR_TORCH_PARTS_ONLY)  # the torch benchmarks do not use it
  find_package(benchmark CONFIG REQUIRED)
endif()
