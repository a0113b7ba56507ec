// Fuzz target: the alert rules file (TOML through toml++, then the rules'
// own checks). Any text gives rules or one error line, never a crash.
#include <cstdint>
#include <string>
#include <string_view>

#include "alerts/alert_rules.hpp"
#include "fuzz_support.hpp"

using namespace shmtrace::drain;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto rules = alerts::parse_rules(text, "fuzz.toml");
  if (!rules) {
    SHMTRACE_FUZZ_CHECK(rules.error().find('\n') == std::string::npos);
    SHMTRACE_FUZZ_CHECK(rules.error().rfind("fuzz.toml", 0) == 0);
  }
  return 0;
}
