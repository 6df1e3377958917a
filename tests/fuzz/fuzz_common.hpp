#pragma once
// Shared by the fuzz harnesses: the libFuzzer entry point's declaration and a
// check that aborts, so a broken invariant is a finding (libFuzzer saves the
// input; the replay tests fail) rather than an exception a caller could catch.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#define NQ_FUZZ_CHECK(cond, what)                                                                \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                                   \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)

namespace nqfuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return size ? std::string_view(reinterpret_cast<const char*>(data), size) : std::string_view();
}

}  // namespace nqfuzz
