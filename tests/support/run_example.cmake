# Runs an example in smoke form: it must exit 0 and, when EXPECT is given, print a match for
# it. (ctest's PASS_REGULAR_EXPRESSION alone ignores the exit status.)
#   cmake -DCOMMAND="<program>;<args>" [-DEXPECT=<regex>] -P run_example.cmake
# Echoed as it comes (a test that times out still shows how far it got); EXPECT is matched
# against standard output only.
execute_process(COMMAND ${COMMAND} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
                ECHO_OUTPUT_VARIABLE ECHO_ERROR_VARIABLE)
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "${COMMAND} ended with ${rc}")
endif()
if(DEFINED EXPECT AND NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "${COMMAND} did not print a match for: ${EXPECT}")
endif()
