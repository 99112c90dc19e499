# spar_add_library(<name> SRCS ... DEPS ...): library spar_<name> + alias spar::<name>.
function(spar_add_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_library(spar_${name} ${ARG_SRCS})
  add_library(spar::${name} ALIAS spar_${name})
  target_include_directories(spar_${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(spar_${name} PUBLIC ${ARG_DEPS})
  spar_set_warnings(spar_${name})
endfunction()

function(spar_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  if(SPAR_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(SPAR_ENABLE_ASAN)
    target_compile_options(${target} PRIVATE -fsanitize=address -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address)
  endif()
endfunction()

# spar_add_test(<name> LABEL <label> SRCS ... DEPS ...): one gtest executable, discovered by ctest.
function(spar_add_test name)
  cmake_parse_arguments(ARG "" "LABEL;TIMEOUT" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR})
  spar_set_warnings(${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  if(ARG_LABEL STREQUAL "gpu")
    set_property(GLOBAL APPEND PROPERTY SPAR_GPU_CHECK_TARGETS ${name})
  endif()
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    PROPERTIES LABELS ${ARG_LABEL} TIMEOUT ${ARG_TIMEOUT}
    DISCOVERY_TIMEOUT 60)
endfunction()
