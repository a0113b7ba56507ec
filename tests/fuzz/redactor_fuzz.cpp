// Fuzz target: the redactor over arbitrary values. The prefilter never
// changes the outcome (redact() == redact_unfiltered()), the stored value is
// bounded, and a value redacted once has nothing more to redact... except
// what the bound cut, so only the first two are checked on every input.
#include <cstdint>
#include <string>

#include "fuzz_support.hpp"
#include "redact/redactor.hpp"

using namespace shmtrace::drain;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const Redactor redactor = [] {
    auto r = Redactor::create({"member_number"});
    if (!r) shmtrace::fuzz::broken("the redactor does not build");
    return *r;
  }();
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string filtered = input;
  std::string unfiltered = input;
  const Redaction a = redactor.redact(filtered);
  const Redaction b = redactor.redact_unfiltered(unfiltered);
  SHMTRACE_FUZZ_CHECK(filtered == unfiltered);
  SHMTRACE_FUZZ_CHECK(a.replaced == b.replaced);
  SHMTRACE_FUZZ_CHECK(filtered.size() <= kMaxPayloadBytes);
  std::string cut = input;
  redactor.redact_cut(cut);
  SHMTRACE_FUZZ_CHECK(cut.size() <= kMaxPayloadBytes);
  std::string named = input;
  redactor.redact_named(input.substr(0, 16), named);
  SHMTRACE_FUZZ_CHECK(named.size() <= kMaxPayloadBytes);
  return 0;
}
