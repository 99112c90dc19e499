# CMake options of the CPU image's Spar build: deploy/Dockerfile's build-cpu stage runs
# `cmake -C deploy/cmake/image-cpu.cmake`, and tests/deploy/docker_stack_test.py configures the
# image's source tree (its `sources` stage) with this same file on every CI run, so a directory
# the build needs that the build context lacks fails CI. tests/deploy/compose_config_test.py
# reads it too: a top-level add_subdirectory the context leaves out must sit under an option
# set OFF here.
set(CMAKE_BUILD_TYPE Release CACHE STRING "")
set(SPAR_LIBTORCH debian CACHE STRING "")   # Debian 12's LibTorch 1.13, CPU only
set(SPAR_WITH_TORCH ON CACHE BOOL "")
set(SPAR_BUILD_TESTS OFF CACHE BOOL "")
set(SPAR_BUILD_BENCH OFF CACHE BOOL "")
