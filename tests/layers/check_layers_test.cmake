# Tests cmake/check_layers.cmake on small trees written here: a tree that keeps its layers
# passes; an include that reaches up, one that reaches sideways (a layer not depended on) and a
# folder no component owns each fail, naming the file, the header and what is allowed.
#   cmake -DCHECKER=cmake/check_layers.cmake -DWORK=<scratch dir> -P check_layers_test.cmake
set(failures)

function(write_tree name)  # the files: pairs of "path" "text"
  set(root ${WORK}/${name}/btx)
  file(REMOVE_RECURSE ${WORK}/${name})
  set(args ${ARGN})
  list(LENGTH args n)
  math(EXPR last "${n} - 1")
  foreach(i RANGE 0 ${last} 2)
    math(EXPR j "${i} + 1")
    list(GET args ${i} path)
    list(GET args ${j} text)
    file(WRITE ${root}/${path} "${text}\n")
  endforeach()
  file(WRITE ${WORK}/${name}/layers.txt
       "low:low:low\nside:side:side,low\nhigh:high:high,low\n")
endfunction()

function(expect name want_ok want_text)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -DSPEC=${WORK}/${name}/layers.txt -DROOT=${WORK}/${name}/btx
            -P ${CHECKER}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  set(said "${out}${err}")  # the offences are preformatted lines: matched as they are
  if(want_ok AND NOT rc EQUAL 0)
    set(failures "${failures}\n${name}: expected to pass, failed: ${said}" PARENT_SCOPE)
  elseif(NOT want_ok AND rc EQUAL 0)
    set(failures "${failures}\n${name}: expected to fail, passed" PARENT_SCOPE)
  elseif(want_text)
    string(FIND "${said}" "${want_text}" at)
    if(at EQUAL -1)
      set(failures "${failures}\n${name}: message lacks '${want_text}': ${said}" PARENT_SCOPE)
    endif()
  endif()
endfunction()

write_tree(good
  low/a.h "#pragma once"
  low/a.cpp "#include \"btx/low/a.h\""
  side/s.h "#include \"btx/low/a.h\""
  high/b.cpp "#include <vector>\n#include \"btx/high/b.h\"\n  #  include \"btx/low/a.h\""
  high/b.h "// #include is only mentioned here")
expect(good TRUE "")

write_tree(upward
  low/a.h "#pragma once"
  low/a.cpp "#include \"btx/low/a.h\"\n#include \"btx/high/b.h\""
  high/b.h "#pragma once")
expect(upward FALSE "src/btx/low/a.cpp includes btx/high/b.h, but low may include only btx/{low}")

write_tree(sideways
  low/a.h "#pragma once"
  side/s.h "#pragma once"
  high/b.cpp "#include \"btx/side/s.h\"")
expect(sideways FALSE "src/btx/high/b.cpp includes btx/side/s.h, but high may include only btx/{high, low}")

write_tree(unowned
  low/a.h "#pragma once"
  stray/x.h "#pragma once")
expect(unowned FALSE "src/btx/stray/ belongs to no component")

if(failures)
  message(FATAL_ERROR "check_layers.cmake:${failures}")
endif()
message(STATUS "check_layers.cmake: 4 trees checked as expected")
