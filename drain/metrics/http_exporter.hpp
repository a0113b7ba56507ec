// Serves a Registry over HTTP for Prometheus to scrape (SPEC D6).
//
//   GET /metrics   200, Content-Type: text/plain; version=0.0.4; charset=utf-8,
//                  the body Registry::render() returns at that moment
//   HEAD /metrics  the same headers, no body
//   anything else  404
//
// The server (cpp-httplib) runs on its own thread with a pool of two
// workers, so a scrape never blocks the drain's main loop beyond the
// registry's mutex while render() reads the series. Bind to loopback unless
// the user asks otherwise: the endpoint has no authentication.
//
// Side effects of cpp-httplib to know about: starting an exporter sets
// SIGPIPE to ignored for the whole process (a scraper that hangs up must not
// kill the drain), and the port is bound without SO_REUSEPORT, so a port
// another process listens on is an error rather than silently shared.
#ifndef SHMTRACE_DRAIN_METRICS_HTTP_EXPORTER_HPP
#define SHMTRACE_DRAIN_METRICS_HTTP_EXPORTER_HPP

#include <expected>
#include <memory>
#include <string>

#include "metrics/registry.hpp"

namespace shmtrace::drain::metrics {

inline constexpr const char* kExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

class HttpExporter {
 public:
  // Binds host:port (port 0: any free port, see port()) and starts serving.
  // The registry must outlive the exporter. Errors (an unresolvable host, a
  // port in use or out of range) come back as one line, e.g.
  //   "metrics endpoint 127.0.0.1:9464: cannot bind: Address already in use"
  static std::expected<std::unique_ptr<HttpExporter>, std::string> start(const Registry& registry,
                                                                         const std::string& host,
                                                                         int port);
  HttpExporter(const HttpExporter&) = delete;
  HttpExporter& operator=(const HttpExporter&) = delete;
  // Stops accepting, finishes the requests in flight and joins the threads.
  ~HttpExporter();

  // The port actually bound (the chosen one when started with port 0).
  int port() const noexcept { return port_; }

 private:
  struct Impl;
  HttpExporter(std::unique_ptr<Impl> impl, int port);

  std::unique_ptr<Impl> impl_;
  int port_;
};

}  // namespace shmtrace::drain::metrics

#endif  // SHMTRACE_DRAIN_METRICS_HTTP_EXPORTER_HPP
