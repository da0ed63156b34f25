# Small helpers in the spirit of absl_cc_library: one call per library or test.

# Abseil components that vdev's public headers use.
set(VDEV_ABSL_DEPS
  absl::status absl::statusor absl::strings absl::str_format absl::synchronization
  absl::flat_hash_map absl::flat_hash_set absl::span absl::optional absl::time
  CACHE INTERNAL "")
set(VDEV_LAYER_TARGETS "" CACHE INTERNAL "")

# vdev_cc_library(NAME n SRCS ... DEPS ...): an OBJECT library that becomes part of libvdev.so.
#
# The library's headers are reachable only through its own include root,
# <build>/include/<n>/<folder> -> <source>/<folder> (a symlink), and a library sees exactly its
# own root and those of its DEPS (transitively: usage requirements are PUBLIC). So an include of a
# layer that is not a declared dependency is "No such file or directory": DEPS are enforced by the
# compiler, not by convention. The repo root is never on a library's include path.
function(vdev_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;LIBS" ${ARGN})
  file(RELATIVE_PATH folder ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  set(root ${PROJECT_BINARY_DIR}/include/${ARG_NAME})
  get_filename_component(parent ${root}/${folder} DIRECTORY)
  file(MAKE_DIRECTORY ${parent})
  if(NOT EXISTS ${root}/${folder})
    file(CREATE_LINK ${CMAKE_CURRENT_SOURCE_DIR} ${root}/${folder} SYMBOLIC)
  endif()
  add_library(${ARG_NAME} OBJECT ${ARG_SRCS})
  target_include_directories(${ARG_NAME} PUBLIC $<BUILD_INTERFACE:${root}>)
  target_link_libraries(${ARG_NAME} PUBLIC ${VDEV_ABSL_DEPS} ${ARG_DEPS} PRIVATE ${ARG_LIBS})
  target_compile_definitions(${ARG_NAME} PUBLIC VDEV_VERSION_STRING="${PROJECT_VERSION}")
  set(VDEV_LAYER_TARGETS ${VDEV_LAYER_TARGETS} ${ARG_NAME} CACHE INTERNAL "")
  set_property(GLOBAL APPEND PROPERTY VDEV_LAYER_FOLDERS "${ARG_NAME}=${folder}")
endfunction()

# vdev_cc_test(NAME n SRCS ... [DEPS ...] [LABELS ...]): a GoogleTest binary registered with ctest.
function(vdev_cc_test)
  cmake_parse_arguments(ARG "" "NAME;TIMEOUT;RESOURCE_LOCK" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE vdev vdev_testing GTest::gmock GTest::gtest_main
                        ${ARG_DEPS})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  set(props TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
  if(ARG_RESOURCE_LOCK)  # tests sharing something (e.g. testpmd's CPUs) never run together
    list(APPEND props RESOURCE_LOCK ${ARG_RESOURCE_LOCK})
  endif()
  gtest_discover_tests(${ARG_NAME} DISCOVERY_TIMEOUT 60 PROPERTIES ${props})
endfunction()
