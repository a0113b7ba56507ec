// Throws a C++ exception at a known line, for the symbolization tests (built
// with -g, see tests/CMakeLists.txt): throw_here() throws std::runtime_error
// ("thrown on purpose") out of its span "throw_here" (so the runtime records
// it as an error), main catches it and exits 0. The test finds the throw's
// and the call's lines by the marker comments.
#include <cstdio>
#include <stdexcept>

#include "shmtrace/shmtrace.hpp"

__attribute__((noinline)) int throw_here(int value) {
  const shmtrace::Scope scope(shmtrace_intern("throw_here"));
  if (value > 0) throw std::runtime_error("thrown on purpose");  // THROW-LINE
  return value;
}

int main(int argc, char**) {
  try {
    const int result = throw_here(argc);  // CALL-LINE
    std::printf("not thrown %d\n", result);
    return 1;
  } catch (const std::exception&) {
    return 0;
  }
}
