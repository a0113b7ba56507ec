// POSTs OTLP/JSON ExportTraceServiceRequest bodies to a collector's
// /v1/traces (OTLP/HTTP), with the specification's retry rules: 429, 502,
// 503 and 504 and failed connections are retried with exponential backoff
// (250 ms doubling to 8 s), waiting what a Retry-After header asks instead
// when there is one; any other status is final (a 400 is a batch the
// collector will never take). One batch, retries included, takes at most
// the timeout.
#ifndef SHMTRACE_TOOLS_EXPORT_OTLP_HTTP_HPP
#define SHMTRACE_TOOLS_EXPORT_OTLP_HTTP_HPP

#include <expected>
#include <memory>
#include <string>

namespace shmtrace::cli::exporting {

class OtlpSender {
 public:
  // endpoint: http://host[:port][/path]; the request goes to path + /v1/traces.
  static std::expected<OtlpSender, std::string> make(const std::string& endpoint, double timeout_s);
  OtlpSender(OtlpSender&&) noexcept;
  ~OtlpSender();
  // Errors are one line naming the URL.
  std::expected<void, std::string> send(const std::string& body);
  std::uint64_t requests() const;

 private:
  struct Impl;
  explicit OtlpSender(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shmtrace::cli::exporting

#endif
