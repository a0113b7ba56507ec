#include "metrics/http_exporter.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <httplib.h>

namespace shmtrace::drain::metrics {

namespace {
// httplib serves each connection on a worker for as long as the client takes:
// a client that connects and sends nothing holds its worker until the read
// timeout. Enough workers that a few such clients leave scrapes served, a
// short timeout so each is let go soon, and one request per connection so a
// kept-alive client holds nothing between requests.
constexpr std::size_t kWorkerThreads = 8;
constexpr int kIoTimeoutSeconds = 1;
}  // namespace

struct HttpExporter::Impl {
  httplib::Server server;
  std::thread thread;
  // Set by the server thread when listen_after_bind() returned; release
  // pairs with the acquire load in start()'s wait.
  std::atomic<bool> listen_returned{false};
};

HttpExporter::HttpExporter(std::unique_ptr<Impl> impl, int port) : impl_(std::move(impl)), port_(port) {}

HttpExporter::~HttpExporter() {
  impl_->server.stop();
  impl_->thread.join();
}

std::expected<std::unique_ptr<HttpExporter>, std::string> HttpExporter::start(const Registry& registry,
                                                                              const std::string& host,
                                                                              int port) {
  const std::string where = "metrics endpoint " + host + ":" + std::to_string(port) + ": ";
  if (port < 0 || port > 65535) return std::unexpected(where + "port must be 0 to 65535");

  // httplib reports only "failed"; resolving first gives the user the reason.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* resolved = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &resolved); rc != 0) {
    return std::unexpected(where + "cannot resolve host: " + ::gai_strerror(rc));
  }
  ::freeaddrinfo(resolved);

  auto impl = std::make_unique<Impl>();
  httplib::Server& server = impl->server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  server.set_read_timeout(kIoTimeoutSeconds, 0);
  server.set_write_timeout(kIoTimeoutSeconds, 0);
  server.set_keep_alive_max_count(1);
  // httplib's default also sets SO_REUSEPORT, with which a second drain
  // would bind the same port and share the scrapes: SO_REUSEADDR only (a
  // restart need not wait out TIME_WAIT), so a taken port is an error.
  server.set_socket_options([](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.Get("/metrics", [&registry](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry.render(), kExpositionContentType);
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& response) {
    if (response.status == 404) {
      response.set_content("404 not found: metrics are served at /metrics\n", "text/plain; charset=utf-8");
    }
  });

  errno = 0;
  int bound = -1;
  if (port == 0) {
    bound = server.bind_to_any_port(host);
  } else if (server.bind_to_port(host, port)) {
    bound = port;
  }
  if (bound < 0) {
    const int error = errno;  // left by the failed bind() or listen() inside httplib
    return std::unexpected(where + "cannot bind: " + (error != 0 ? std::strerror(error) : "unknown error"));
  }

  Impl* raw = impl.get();
  raw->thread = std::thread([raw] {
    raw->server.listen_after_bind();
    raw->listen_returned.store(true, std::memory_order_release);  // pairs with the wait below
  });
  // stop() does nothing until the server runs, so the destructor could not
  // end a server that had not started yet: return only once it runs.
  // Acquire pairs with the server thread's release store.
  while (!raw->server.is_running() && !raw->listen_returned.load(std::memory_order_acquire)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!raw->server.is_running()) {
    raw->thread.join();
    return std::unexpected(where + "the server stopped as it started");
  }
  return std::unique_ptr<HttpExporter>(new HttpExporter(std::move(impl), bound));
}

}  // namespace shmtrace::drain::metrics
