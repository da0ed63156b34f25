# install_package_test (see CMakeLists.txt): install, run, build a plugin against the install
# (find_package) and load it by bare name, build a tiny VMM with pkg-config and run it. Fails
# with the step that went wrong.
file(REMOVE_RECURSE ${WORK})
set(prefix ${WORK}/prefix)

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix})

# Only public headers: no *_internal.h, no tests.
file(GLOB_RECURSE internal ${prefix}/include/vdev/*_internal.h)
if(internal)
  message(FATAL_ERROR "internal headers installed: ${internal}")
endif()

# The installed vdev runs from the prefix with no LD_LIBRARY_PATH (its RPATH finds libvdev).
run("the installed vdev" ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH
    ${prefix}/bin/vdev -machine help)
if(NOT out MATCHES "pc")
  message(FATAL_ERROR "the installed vdev -machine help printed:\n${out}")
endif()

# A plugin built against the installed package, loaded by bare name.
run("configuring examples/plugins against the install"
    ${CMAKE_COMMAND} -S ${SRC}/examples/plugins -B ${WORK}/plugin -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_CXX_COMPILER=${CXX})
run("building examples/plugins" ${CMAKE_COMMAND} --build ${WORK}/plugin)
run("the installed vdev loading the plugin by name"
    ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH VDEV_PLUGIN_PATH=${WORK}/plugin
    ${prefix}/bin/vdev -plugin libvdev_example_plugin.so -device example-pci,help)
if(NOT out MATCHES "serial=<str>")
  message(FATAL_ERROR "-device example-pci,help printed:\n${out}")
endif()
# A tiny VMM (examples/vmm) built with pkg-config against the install, then run.
run("pkg-config vdev" ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${prefix}/${LIBDIR}/pkgconfig
    pkg-config --cflags --libs vdev)
separate_arguments(pc_flags UNIX_COMMAND "${out}")
run("building examples/vmm with pkg-config"
    ${CXX} -std=c++20 ${SRC}/examples/vmm/mini_vmm.cc ${pc_flags} -o ${WORK}/mini-vmm)
run("the tiny VMM" ${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${prefix}/${LIBDIR} ${WORK}/mini-vmm)
message(STATUS "installed, ran, built and loaded a plugin and a VMM from ${prefix}")
