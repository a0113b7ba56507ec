#include "export_otlp_http.hpp"

#include <httplib.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>

namespace shmtrace::cli::exporting {
namespace {

using Clock = std::chrono::steady_clock;

bool retryable(int status) { return status == 429 || status == 502 || status == 503 || status == 504; }

// Retry-After as delay-seconds; an HTTP-date (or garbage) gives nullopt and
// the backoff applies.
std::optional<std::chrono::milliseconds> retry_after(const httplib::Response& r) {
  if (!r.has_header("Retry-After")) return std::nullopt;
  const std::string v = r.get_header_value("Retry-After");
  unsigned long seconds = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  if (ec != std::errc{} || end != v.data() + v.size()) return std::nullopt;
  return std::chrono::milliseconds(std::min<unsigned long>(seconds, 3600) * 1000);
}

std::string one_line(std::string text, std::size_t limit = 200) {
  if (text.size() > limit) text = text.substr(0, limit) + "...";
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

}  // namespace

struct OtlpSender::Impl {
  std::string url;
  std::string path;
  std::chrono::milliseconds timeout{};
  httplib::Client client;
  std::uint64_t requests = 0;
  Impl(const std::string& origin, std::string p, std::chrono::milliseconds t)
      : url(origin + p), path(std::move(p)), timeout(t), client(origin) {}
};

OtlpSender::OtlpSender(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OtlpSender::OtlpSender(OtlpSender&&) noexcept = default;
OtlpSender::~OtlpSender() = default;
std::uint64_t OtlpSender::requests() const { return impl_->requests; }

std::expected<OtlpSender, std::string> OtlpSender::make(const std::string& endpoint, double timeout_s) {
  const std::string scheme = "http://";
  if (endpoint.rfind(scheme, 0) != 0) {
    return std::unexpected(endpoint + ": only http:// endpoints are supported (this build has no TLS)");
  }
  const auto slash = endpoint.find('/', scheme.size());
  const std::string origin = endpoint.substr(0, slash);
  std::string base = slash == std::string::npos ? std::string() : endpoint.substr(slash);
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (origin.size() == scheme.size()) return std::unexpected(endpoint + ": no host");
  auto impl = std::make_unique<Impl>(origin, base + "/v1/traces",
                                     std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000)));
  if (!impl->client.is_valid()) return std::unexpected(endpoint + ": not a usable URL");
  impl->client.set_keep_alive(true);
  return OtlpSender(std::move(impl));
}

std::expected<void, std::string> OtlpSender::send(const std::string& body) {
  Impl& s = *impl_;
  const auto deadline = Clock::now() + s.timeout;
  std::chrono::milliseconds backoff(250);
  std::string last;
  int tries = 0;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    // No single request outlives the batch's deadline.
    const auto limit = std::max<std::chrono::milliseconds>(left, std::chrono::milliseconds(1));
    s.client.set_connection_timeout(std::chrono::duration_cast<std::chrono::microseconds>(limit));
    s.client.set_read_timeout(std::chrono::duration_cast<std::chrono::microseconds>(limit));
    s.client.set_write_timeout(std::chrono::duration_cast<std::chrono::microseconds>(limit));
    ++s.requests;
    ++tries;
    const httplib::Result r = s.client.Post(s.path, body, "application/json");
    std::optional<std::chrono::milliseconds> wait;
    if (!r) {
      last = "no answer (" + httplib::to_string(r.error()) + ")";
      s.client.stop();
    } else if (r->status >= 200 && r->status < 300) {
      return {};
    } else if (!retryable(r->status)) {
      return std::unexpected(s.url + ": the collector refused the batch: HTTP " + std::to_string(r->status) +
                             (r->body.empty() ? std::string() : ": " + one_line(r->body)));
    } else {
      last = "HTTP " + std::to_string(r->status);
      wait = retry_after(*r);
    }
    const auto pause = wait.value_or(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
    const auto now = Clock::now();
    if (now + pause >= deadline) break;  // the wait alone would pass the timeout
    std::this_thread::sleep_for(pause);
  }
  char limit[32];
  std::snprintf(limit, sizeof limit, "%.3g", static_cast<double>(s.timeout.count()) / 1000.0);
  return std::unexpected(s.url + ": gave up after " + std::to_string(tries) + " tries within " + limit +
                         " s (--timeout): last " +
                         (last.empty() ? std::string("nothing") : last));
}

}  // namespace shmtrace::cli::exporting
