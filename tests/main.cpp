// The doctest runner. All other tests/*.cpp are compiled into the same binary.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
