# The install_consumer test: install comet-net into a fresh prefix, then
# configure, build and run tests/consumer against that prefix alone.
#   cmake -DCOMET_BUILD_DIR=... -DWORK_DIR=... -DCONSUMER_SOURCE=...
#         -DGENERATOR=... -DCXX_COMPILER=... -P run.cmake
foreach(var COMET_BUILD_DIR WORK_DIR CONSUMER_SOURCE GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake needs -D${var}=...")
  endif()
endforeach()

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE status)
  if(NOT status EQUAL 0)
    message(FATAL_ERROR "install_consumer: ${what} failed (${status})")
  endif()
endfunction()

step("cmake --install" ${CMAKE_COMMAND} --install ${COMET_BUILD_DIR} --prefix ${prefix})
step("configuring the consumer" ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${consumer_build}
     -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release
     -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
step("building the consumer" ${CMAKE_COMMAND} --build ${consumer_build})
step("running the consumer" ${consumer_build}/consumer)
