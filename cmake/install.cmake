# Install rules (STYLE point 15, after fmt's shape): the public headers,
# libshmtrace.so exported as shmtrace::shmtrace, the command-line tools, a CMake
# package config so `find_package(shmtrace)` works, and a pkg-config file.
#
# Only libshmtrace.so is exported. It links the static shmtrace_runtime_core
# privately through $<BUILD_INTERFACE:...>, so the core is neither installed
# nor part of the exported interface; test and reader libraries stay in-tree.

option(SHMTRACE_INSTALL "Generate the install rules" ${SHMTRACE_TOP_LEVEL})
if(NOT SHMTRACE_INSTALL)
  return()
endif()

include(CMakePackageConfigHelpers)

set(SHMTRACE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/shmtrace" CACHE STRING
    "Where shmtraceConfig.cmake goes, relative to CMAKE_INSTALL_PREFIX")
set(SHMTRACE_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig" CACHE STRING
    "Where shmtrace.pc goes, relative to CMAKE_INSTALL_PREFIX")

# Public headers only (STYLE point 1): the C API, the C++ API, the ABI.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/shmtrace"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}"
  COMPONENT shmtrace_development
  FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")

install(TARGETS shmtrace EXPORT shmtraceTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
    COMPONENT shmtrace_runtime
    NAMELINK_COMPONENT shmtrace_development)

# Tools, as they land. An installed tool finds libshmtrace.so next to it in
# <prefix>/<libdir> whatever the prefix, through a relative RUNPATH.
file(RELATIVE_PATH _shmtrace_bin_to_lib
  "${CMAKE_INSTALL_FULL_BINDIR}" "${CMAKE_INSTALL_FULL_LIBDIR}")
foreach(_shmtrace_tool IN ITEMS shmtrace-cli shmtrace-demo-workload shmtrace-demo-check shmtrace-drain)
  if(TARGET ${_shmtrace_tool})
    set_target_properties(${_shmtrace_tool} PROPERTIES
      INSTALL_RPATH "$ORIGIN/${_shmtrace_bin_to_lib}")
    install(TARGETS ${_shmtrace_tool}
      RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}" COMPONENT shmtrace_runtime)
  endif()
endforeach()

# The SQL functions over call-site statistics, loadable into the sqlite3 shell
# or any SQLite program (`.load <libdir>/libshmtrace_sqlite`).
if(TARGET shmtrace_sqlite)
  install(TARGETS shmtrace_sqlite LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}" COMPONENT shmtrace_runtime)
endif()

# CMake package: shmtraceConfig.cmake, its version file and the targets file.
# The build tree gets the same three files, so a consumer can also point
# shmtrace_DIR at an uninstalled build.
configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/shmtraceConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/shmtraceConfig.cmake"
  INSTALL_DESTINATION "${SHMTRACE_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/shmtraceConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion)
install(FILES
    "${PROJECT_BINARY_DIR}/shmtraceConfig.cmake"
    "${PROJECT_BINARY_DIR}/shmtraceConfigVersion.cmake"
  DESTINATION "${SHMTRACE_INSTALL_CMAKEDIR}"
  COMPONENT shmtrace_development)
install(EXPORT shmtraceTargets
  NAMESPACE shmtrace::
  DESTINATION "${SHMTRACE_INSTALL_CMAKEDIR}"
  COMPONENT shmtrace_development)
export(EXPORT shmtraceTargets
  NAMESPACE shmtrace::
  FILE "${PROJECT_BINARY_DIR}/shmtraceTargets.cmake")

# pkg-config. The prefix is the one in force at install time, so that
# `cmake --install build --prefix DIR` writes DIR, not the configured prefix:
# the file is configured twice, now for everything else and at install time
# for @CMAKE_INSTALL_PREFIX@ (which install scripts set to the real prefix).
set(SHMTRACE_PC_PREFIX "@CMAKE_INSTALL_PREFIX@")
foreach(_shmtrace_dir IN ITEMS LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_shmtrace_dir}}")
    set(SHMTRACE_PC_${_shmtrace_dir} "${CMAKE_INSTALL_${_shmtrace_dir}}")
  else()
    set(SHMTRACE_PC_${_shmtrace_dir} "\${prefix}/${CMAKE_INSTALL_${_shmtrace_dir}}")
  endif()
endforeach()
configure_file("${CMAKE_CURRENT_LIST_DIR}/shmtrace.pc.in"
  "${PROJECT_BINARY_DIR}/shmtrace.pc.in" @ONLY)
install(CODE "configure_file(\"${PROJECT_BINARY_DIR}/shmtrace.pc.in\" \"${PROJECT_BINARY_DIR}/shmtrace.pc\" @ONLY)"
  COMPONENT shmtrace_development)
install(FILES "${PROJECT_BINARY_DIR}/shmtrace.pc"
  DESTINATION "${SHMTRACE_INSTALL_PKGCONFIGDIR}"
  COMPONENT shmtrace_development)

# shmtrace-dump: `shmtrace dump` under the dump utility's own name.
if(TARGET shmtrace-cli)
  install(CODE "execute_process(COMMAND \${CMAKE_COMMAND} -E create_symlink shmtrace
                \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}/shmtrace-dump\")"
          COMPONENT shmtrace_runtime)
endif()
