# btx's library layers. btx_component(NAME FOLDERS f... [DEPS components...] [LIBS targets...])
# makes one static library of src/btx/<f>/*.cpp that links its DEPS and LIBS. A component may
# name only components defined before it, so the layers cannot form a cycle; it may include the
# headers of its own folders and of every component below it that it depends on, directly or
# not. btx_check_layers() then adds the build step that enforces this (cmake/check_layers.cmake):
# an include of a header from any other folder of src/btx fails the build, naming the file, the
# line and what that component may include.

function(btx_component name)
  cmake_parse_arguments(ARG "" "" "FOLDERS;DEPS;LIBS" ${ARGN})
  if(NOT ARG_FOLDERS)
    message(FATAL_ERROR "btx_component(${name}): FOLDERS is required")
  endif()
  set(sources)
  set(allowed ${ARG_FOLDERS})
  foreach(folder ${ARG_FOLDERS})
    file(GLOB found CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/btx/${folder}/*.cpp)
    list(FILTER found EXCLUDE REGEX "/pch\\.cpp$")
    list(APPEND sources ${found})
  endforeach()
  foreach(dep ${ARG_DEPS})
    get_property(dep_allowed GLOBAL PROPERTY BTX_LAYER_ALLOWED_${dep})
    if(NOT dep_allowed)
      message(FATAL_ERROR "btx_component(${name}): DEPS names '${dep}', which is not a btx "
                          "component defined before it (components link only downward)")
    endif()
    list(APPEND allowed ${dep_allowed})
  endforeach()
  list(REMOVE_DUPLICATES allowed)
  if(NOT sources)  # a component not written yet still links
    set(sources ${PROJECT_SOURCE_DIR}/src/btx/util/pch.cpp)
  endif()
  add_library(${name} STATIC ${sources})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC btx_pch ${ARG_DEPS} ${ARG_LIBS})
  target_precompile_headers(${name} REUSE_FROM btx_pch)
  set_property(GLOBAL PROPERTY BTX_LAYER_ALLOWED_${name} ${allowed})
  list(JOIN ARG_FOLDERS "," folders_csv)
  list(JOIN allowed "," allowed_csv)
  set_property(GLOBAL APPEND PROPERTY BTX_LAYERS "${name}:${folders_csv}:${allowed_csv}")
endfunction()

# The build step that checks every include of src/btx against the layers declared so far. It
# runs before any component compiles, and again whenever a source of src/btx changes.
function(btx_check_layers)
  get_property(layers GLOBAL PROPERTY BTX_LAYERS)
  set(spec ${PROJECT_BINARY_DIR}/layers.txt)
  list(JOIN layers "\n" text)
  file(CONFIGURE OUTPUT ${spec} CONTENT "${text}\n")
  file(GLOB_RECURSE checked CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/btx/*.h
       ${PROJECT_SOURCE_DIR}/src/btx/*.cpp)
  set(stamp ${PROJECT_BINARY_DIR}/layers.stamp)
  add_custom_command(
    OUTPUT ${stamp}
    COMMAND ${CMAKE_COMMAND} -DSPEC=${spec} -DROOT=${PROJECT_SOURCE_DIR}/src/btx
            -DSTAMP=${stamp} -P ${PROJECT_SOURCE_DIR}/cmake/check_layers.cmake
    DEPENDS ${checked} ${spec} ${PROJECT_SOURCE_DIR}/cmake/check_layers.cmake
    COMMENT "Checking that each layer of src/btx includes only the layers below it"
    VERBATIM)
  add_custom_target(btx_layers DEPENDS ${stamp})
  foreach(layer ${layers})
    string(REPLACE ":" ";" parts "${layer}")
    list(GET parts 0 name)
    add_dependencies(${name} btx_layers)
  endforeach()
endfunction()
