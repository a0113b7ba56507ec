// A traced program for the redaction test (SPEC §6): writes argument values,
// events and explicit errors carrying a fixed list of secrets and personal
// data, beside innocent values that must be stored byte for byte, and one
// value over 10 KiB. The test holds the same lists; keep them in step.
//
//   st_secrets    (prints "done <segment>")
#include <cstdio>
#include <string>

#include "shmtrace/shmtrace.h"

int main() {
  const shmtrace_span_t span = shmtrace_span_begin(SHMTRACE_NAME("handle_request"));
  // Secrets inside otherwise ordinary text.
  shmtrace_arg_str(SHMTRACE_NAME("aws"), "key AKIAIOSFODNN7EXAMPLE in use");
  shmtrace_arg_str(SHMTRACE_NAME("gh"), "token ghp_16C7e42F292c6912E7710c838347Ae178B4a here");
  shmtrace_arg_str(SHMTRACE_NAME("jwt"),
                   "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
                   "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U");
  shmtrace_arg_str(SHMTRACE_NAME("header"), "Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGci9f8a7b6c5d4e3");
  shmtrace_arg_str(SHMTRACE_NAME("query"), "user=bob password=hunter2secret&x=1");
  shmtrace_arg_str(SHMTRACE_NAME("contact"), "mail alice.smith@example.com please");
  shmtrace_arg_str(SHMTRACE_NAME("phone"), "call +44 20 7946 0958 today");
  shmtrace_arg_str(SHMTRACE_NAME("api_key"), "k3y-V4lue-Z9q8");
  shmtrace_result_strn(SHMTRACE_NAME("echo"), "ghp_16C7e42F292c6912E7710c838347Ae178B4a", 40);
  shmtrace_event(SHMTRACE_NAME("login"), "login by alice.smith@example.com with password=hunter2secret");
  // Innocent values: stored byte-identical.
  shmtrace_arg_str(SHMTRACE_NAME("path"), "/var/lib/app/data-2024-05-01.json");
  shmtrace_arg_str(SHMTRACE_NAME("version"), "v1.2.3 build 20240501 at 10.0.0.1:8080");
  shmtrace_arg_str(SHMTRACE_NAME("note"), "the bearer of bad news; order #123456789");
  shmtrace_arg_str(SHMTRACE_NAME("author"), "Jane Q. Public");
  shmtrace_event(SHMTRACE_NAME("progress"), "step 3 of 7 done in 12.5 ms");
  // Over 10 KiB, innocent text.
  std::string big(12 * 1024, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  shmtrace_arg_strn(SHMTRACE_NAME("big"), big.data(), big.size());
  // Errors whose message carries secrets, and an innocent one.
  shmtrace_error("AuthError", "rejected Bearer eyJ0eXAiOiJKV1QiLCJhbGci9f8a7b6c5d4e3 for AKIAIOSFODNN7EXAMPLE");
  shmtrace_error("ContactError", "cannot reach alice.smith@example.com or +44 20 7946 0958");
  shmtrace_error("PlainError", "disk quota 95% on /var/lib/app");
  shmtrace_span_end(span);
  std::printf("done %s\n", shmtrace_segment_name());
  return 0;
}
