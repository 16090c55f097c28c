# ElpipsImageTest.cmake: CTest image tests gated on the E-LPIPS distance (`elpips check`).
#
#   include(ElpipsImageTest)        # or find_package(elpips), which includes it
#   elpips_add_image_test(NAME cornell_denoised
#     REFERENCE ${CMAKE_SOURCE_DIR}/golden/cornell.png
#     CANDIDATE ${CMAKE_BINARY_DIR}/out/cornell.png
#     MAX_DISTANCE 0.015)
#
# adds a test running
#   elpips check REFERENCE CANDIDATE --max-distance T [options] --junit <NAME>.junit.xml
# which passes when the candidate's distance from the reference is at most T at the gate's error
# rate (exit 0), fails when it is above (exit 1) and fails on any error (exit 2: missing image,
# size mismatch, no runtime). Sampling stops as soon as the verdict is certain, so clear passes
# and clear failures are quick; see docs/renderer.md for the decision rule.
#
# Arguments (one value each unless noted):
#   NAME          test name (required)
#   REFERENCE     reference image (required)
#   CANDIDATE     candidate image (required; typically written by an earlier test or a build step:
#                 add DEPENDS / FIXTURES_REQUIRED through PROPERTIES)
#   MAX_DISTANCE  threshold T (required)
#   ERROR_RATE    chance of a wrong verdict on either side (elpips default 0.05)
#   MAX_SAMPLES   sample cap (elpips default 200); UNDECIDED estimate|pass|fail at the cap
#   METRIC        elpips-vgg (default), lpips-vgg, lpips-alex
#   SEED          seed of the E-LPIPS draws (elpips default 0)
#   HEATMAP       write a heatmap of the differences here (needs an elpips with --heatmap)
#   JUNIT         JUnit XML report (default: <binary dir>/elpips-junit/<NAME>.xml; OFF for none)
#   SUMMARY       JSON summary for `elpips check --merge` (default: none)
#   ARGS          further `elpips check` arguments (several)
#   LABELS        CTest labels (several; "elpips" is always added)
#   PROPERTIES    further test properties, as for set_tests_properties (several)
#
# The `elpips` program: ELPIPS_EXECUTABLE (cache variable), else `elpips` on PATH.

if(COMMAND elpips_add_image_test)
  return()
endif()

function(elpips_add_image_test)
  cmake_parse_arguments(PARSE_ARGV 0 E ""
    "NAME;REFERENCE;CANDIDATE;MAX_DISTANCE;ERROR_RATE;MAX_SAMPLES;UNDECIDED;METRIC;SEED;HEATMAP;JUNIT;SUMMARY"
    "ARGS;LABELS;PROPERTIES")
  if(E_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "elpips_add_image_test: unknown arguments: ${E_UNPARSED_ARGUMENTS}")
  endif()
  foreach(required NAME REFERENCE CANDIDATE MAX_DISTANCE)
    if(NOT DEFINED E_${required} OR "${E_${required}}" STREQUAL "")
      message(FATAL_ERROR "elpips_add_image_test: ${required} is required")
    endif()
  endforeach()
  if(NOT E_MAX_DISTANCE MATCHES "^[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?$")
    message(FATAL_ERROR "elpips_add_image_test(${E_NAME}): MAX_DISTANCE must be a non-negative number, not '${E_MAX_DISTANCE}'")
  endif()

  if(NOT ELPIPS_EXECUTABLE)
    find_program(ELPIPS_EXECUTABLE elpips)
  endif()
  if(NOT ELPIPS_EXECUTABLE)
    message(FATAL_ERROR "elpips_add_image_test: the `elpips` program was not found; put it on PATH or set ELPIPS_EXECUTABLE")
  endif()

  set(args check "${E_REFERENCE}" "${E_CANDIDATE}" --max-distance "${E_MAX_DISTANCE}")
  foreach(pair ERROR_RATE:--error-rate MAX_SAMPLES:--max-samples UNDECIDED:--undecided METRIC:--metric
               SEED:--seed HEATMAP:--heatmap SUMMARY:--summary)
    string(REPLACE ":" ";" pair "${pair}")
    list(GET pair 0 key)
    list(GET pair 1 flag)
    if(DEFINED E_${key} AND NOT "${E_${key}}" STREQUAL "")
      list(APPEND args ${flag} "${E_${key}}")
    endif()
  endforeach()
  if(NOT DEFINED E_JUNIT)
    set(E_JUNIT "${CMAKE_CURRENT_BINARY_DIR}/elpips-junit/${E_NAME}.xml")
  endif()
  if(E_JUNIT)
    get_filename_component(junit_dir "${E_JUNIT}" DIRECTORY)
    file(MAKE_DIRECTORY "${junit_dir}")
    list(APPEND args --junit "${E_JUNIT}")
  endif()
  list(APPEND args ${E_ARGS})

  add_test(NAME "${E_NAME}" COMMAND "${ELPIPS_EXECUTABLE}" ${args})
  set_tests_properties("${E_NAME}" PROPERTIES LABELS "elpips;${E_LABELS}")
  if(E_PROPERTIES)
    set_tests_properties("${E_NAME}" PROPERTIES ${E_PROPERTIES})
  endif()
endfunction()
