# CMake options of the CUDA image's Spar build: deploy/Dockerfile's build-cuda stage runs
# `cmake -C deploy/cmake/image-cuda.cmake`. LibTorch is the PyPI torch wheel the stage installs
# in /opt/torch (the version scripts/requirements-ref.txt pins). Like image-cpu.cmake, read by
# tests/deploy/compose_config_test.py: an add_subdirectory the build context leaves out must sit
# under an option set OFF here.
set(CMAKE_BUILD_TYPE Release CACHE STRING "")
set(SPAR_LIBTORCH pypi CACHE STRING "")
set(SPAR_TORCH_CMAKE_DIR /opt/torch/site/torch/share/cmake CACHE PATH "")
set(SPAR_WITH_TORCH ON CACHE BOOL "")
set(SPAR_BUILD_TESTS OFF CACHE BOOL "")
set(SPAR_BUILD_BENCH OFF CACHE BOOL "")
