# ctest Install.LaminaRunsFromBin: `cmake --install` of this build into a fresh prefix puts a `lamina` that runs
# into <prefix>/bin and LICENSE, NOTICE and README.md into <prefix>/share/doc/lamina.
# cmake -DBUILD_DIR=<build dir> -DPREFIX=<empty folder to install into> -P install_test.cmake
foreach(var BUILD_DIR PREFIX)
  if(NOT ${var})
    message(FATAL_ERROR "install_test.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install ${BUILD_DIR} --prefix ${PREFIX} failed (${rc}):\n${out}")
endif()

foreach(f bin/lamina share/doc/lamina/LICENSE share/doc/lamina/NOTICE share/doc/lamina/README.md)
  if(NOT EXISTS "${PREFIX}/${f}")
    message(FATAL_ERROR "cmake --install did not write ${PREFIX}/${f}; it wrote:\n${out}")
  endif()
endforeach()

execute_process(COMMAND "${PREFIX}/bin/lamina" --help
                RESULT_VARIABLE rc OUTPUT_VARIABLE help ERROR_VARIABLE help)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PREFIX}/bin/lamina --help exited with ${rc}:\n${help}")
endif()
if(NOT help MATCHES "lamina")
  message(FATAL_ERROR "${PREFIX}/bin/lamina --help printed no usage:\n${help}")
endif()
file(REMOVE_RECURSE "${PREFIX}")
