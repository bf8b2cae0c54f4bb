// doctest_main.cpp: doctest's test runner (its main), in a file of its own. It never changes, so
// an edit of the unit tests recompiles test_lab.cpp alone. It is built without optimisation (see
// tests/CMakeLists.txt): the runner's own speed does not matter, its compile time does.
//
// See also: doctest's "main() entry point" documentation (DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
