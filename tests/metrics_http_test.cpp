// The metrics endpoint (drain/metrics/http_exporter.hpp), scraped over a
// plain socket as Prometheus would, its body checked value by value and by
// `promtool check metrics`.
#include "metrics/http_exporter.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

using shmtrace::drain::metrics::HttpExporter;
using shmtrace::drain::metrics::Registry;

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// One HTTP/1.1 request on a fresh connection to 127.0.0.1:port, read until
// the server closes it. Returns status 0 if the connection failed.
Response http_get(int port, const std::string& path, int receive_timeout_s = 0) {
  Response response;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return response;
  if (receive_timeout_s > 0) {
    timeval tv{receive_timeout_s, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return response;
  }
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return response;
  }
  std::string raw;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) raw.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);

  const std::size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos || !raw.starts_with("HTTP/1.1 ")) return response;
  response.status = std::atoi(raw.c_str() + 9);
  std::istringstream head(raw.substr(0, head_end));
  std::string line;
  std::getline(head, line);  // the status line
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    response.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
  }
  response.body = raw.substr(head_end + 4);
  return response;
}

// "name{labels}" -> value, for every sample line of an exposition body.
std::map<std::string, std::string> samples_of(const std::string& body) {
  std::map<std::string, std::string> samples;
  std::istringstream in(body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.starts_with("#")) continue;
    const std::size_t space = line.rfind(' ');
    samples[line.substr(0, space)] = line.substr(space + 1);
  }
  return samples;
}

void fill(Registry& registry) {
  registry.declare_counter("shmtrace_records_drained_total", "Records drained from shared memory, by process.");
  registry.declare_counter("shmtrace_drain_errors_total", "Errors the drain met.");
  registry.declare_gauge("shmtrace_ring_fill_ratio", "Fill of a ring, 0 to 1 \\ sampled\nat each pass.");
  registry.declare_histogram("shmtrace_batch_commit_seconds", "Time to commit one batch.", {0.001, 0.01, 0.1, 1});
  registry.counter("shmtrace_records_drained_total", {{"pid", "42"}, {"exe", "/opt/\"odd\" \\ name\n"}}).add(1234);
  registry.counter("shmtrace_records_drained_total", {{"pid", "7"}, {"exe", "/bin/true"}}).set_total(5e6);
  registry.counter("shmtrace_drain_errors_total").add(0);
  registry.gauge("shmtrace_ring_fill_ratio", {{"pid", "42"}, {"ring", "0"}}).set(0.125);
  auto& commits = registry.histogram("shmtrace_batch_commit_seconds");
  for (const double v : {0.0005, 0.002, 0.002, 0.5, 3.0}) commits.observe(v);
}

TEST(MetricsHttp, ServesTheRegistryOnMetrics) {
  Registry registry;
  fill(registry);
  auto exporter = HttpExporter::start(registry, "127.0.0.1", 0);
  ASSERT_TRUE(exporter.has_value()) << exporter.error();
  const int port = (*exporter)->port();
  ASSERT_GT(port, 0);

  Response response = http_get(port, "/metrics");
  ASSERT_EQ(response.status, 200);
  EXPECT_EQ(response.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(response.body, registry.render());
  std::map<std::string, std::string> samples = samples_of(response.body);
  EXPECT_EQ(samples["shmtrace_records_drained_total{pid=\"42\",exe=\"/opt/\\\"odd\\\" \\\\ name\\n\"}"], "1234");
  EXPECT_EQ(samples["shmtrace_records_drained_total{pid=\"7\",exe=\"/bin/true\"}"], "5e+06");
  EXPECT_EQ(samples["shmtrace_drain_errors_total"], "0");
  EXPECT_EQ(samples["shmtrace_ring_fill_ratio{pid=\"42\",ring=\"0\"}"], "0.125");
  EXPECT_EQ(samples["shmtrace_batch_commit_seconds_bucket{le=\"0.001\"}"], "1");
  EXPECT_EQ(samples["shmtrace_batch_commit_seconds_bucket{le=\"0.01\"}"], "3");
  EXPECT_EQ(samples["shmtrace_batch_commit_seconds_bucket{le=\"0.1\"}"], "3");
  EXPECT_EQ(samples["shmtrace_batch_commit_seconds_bucket{le=\"1\"}"], "4");
  EXPECT_EQ(samples["shmtrace_batch_commit_seconds_bucket{le=\"+Inf\"}"], "5");
  EXPECT_EQ(samples["shmtrace_batch_commit_seconds_count"], "5");
  EXPECT_EQ(samples.size(), 11u);

  // Each scrape renders anew.
  registry.counter("shmtrace_drain_errors_total").add(3);
  registry.remove("pid", "42");
  response = http_get(port, "/metrics");
  ASSERT_EQ(response.status, 200);
  samples = samples_of(response.body);
  EXPECT_EQ(samples["shmtrace_drain_errors_total"], "3");
  EXPECT_EQ(samples.count("shmtrace_ring_fill_ratio{pid=\"42\",ring=\"0\"}"), 0u);
  EXPECT_EQ(samples.size(), 9u);
}

// Clients that connect and never send a request hold a worker each until
// the read timeout: six of them at once still leave a scrape served (it
// waited behind them for seconds with two workers and a 5 s timeout).
TEST(MetricsHttp, SlowClientsDoNotBlockScrapes) {
  Registry registry;
  fill(registry);
  auto exporter = HttpExporter::start(registry, "127.0.0.1", 0);
  ASSERT_TRUE(exporter.has_value()) << exporter.error();
  const int port = (*exporter)->port();
  std::vector<int> idle;
  for (int i = 0; i < 6; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    idle.push_back(fd);
  }
  for (int scrape = 0; scrape < 3; ++scrape) {
    const Response response = http_get(port, "/metrics", 3);
    EXPECT_EQ(response.status, 200) << "scrape " << scrape;
    EXPECT_EQ(response.body, registry.render());
  }
  for (int fd : idle) ::close(fd);
}

TEST(MetricsHttp, AnswersOtherPathsWith404) {
  Registry registry;
  fill(registry);
  auto exporter = HttpExporter::start(registry, "127.0.0.1", 0);
  ASSERT_TRUE(exporter.has_value()) << exporter.error();
  for (const char* path : {"/", "/other", "/metrics/x", "/metricsx"}) {
    const Response response = http_get((*exporter)->port(), path);
    EXPECT_EQ(response.status, 404) << path;
    EXPECT_EQ(response.body.find("shmtrace_"), std::string::npos) << path;
  }
}

// The absolute path of `program` on PATH, or "" if it is not there.
std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

TEST(MetricsHttp, BodyPassesPromtoolLint) {
  const std::string promtool = find_on_path("promtool");
  ASSERT_FALSE(promtool.empty())
      << "promtool is not on PATH: this test needs it to validate the exposition "
         "(Debian: apt-get install prometheus, which installs /usr/bin/promtool)";

  Registry registry;
  fill(registry);
  auto exporter = HttpExporter::start(registry, "127.0.0.1", 0);
  ASSERT_TRUE(exporter.has_value()) << exporter.error();
  const Response response = http_get((*exporter)->port(), "/metrics");
  ASSERT_EQ(response.status, 200);

  const std::filesystem::path dir = std::filesystem::temp_directory_path();
  const std::string stem = "shmtrace_metrics_http_test_" + std::to_string(::getpid());
  const std::filesystem::path body_file = dir / (stem + ".prom");
  const std::filesystem::path output_file = dir / (stem + ".out");
  {
    std::ofstream out(body_file, std::ios::binary);
    out << response.body;
  }
  const std::string command =
      "'" + promtool + "' check metrics < '" + body_file.string() + "' > '" + output_file.string() + "' 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream in(output_file);
  const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::filesystem::remove(body_file);
  std::filesystem::remove(output_file);

  ASSERT_TRUE(WIFEXITED(status)) << command;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "promtool check metrics said:\n" << output << "\nof:\n" << response.body;
  EXPECT_EQ(output, "") << "promtool lint complaints about:\n" << response.body;
}

TEST(MetricsHttp, ReportsBindErrorsAsOneLine) {
  Registry registry;
  auto first = HttpExporter::start(registry, "127.0.0.1", 0);
  ASSERT_TRUE(first.has_value()) << first.error();
  const int port = (*first)->port();

  auto same_port = HttpExporter::start(registry, "127.0.0.1", port);
  ASSERT_FALSE(same_port.has_value());
  EXPECT_EQ(same_port.error(),
            "metrics endpoint 127.0.0.1:" + std::to_string(port) + ": cannot bind: Address already in use");

  auto bad_host = HttpExporter::start(registry, "no-such-host.invalid", 0);
  ASSERT_FALSE(bad_host.has_value());
  EXPECT_NE(bad_host.error().find("metrics endpoint no-such-host.invalid:0: cannot resolve host: "), std::string::npos)
      << bad_host.error();

  auto bad_port = HttpExporter::start(registry, "127.0.0.1", 70000);
  ASSERT_FALSE(bad_port.has_value());
  EXPECT_EQ(bad_port.error(), "metrics endpoint 127.0.0.1:70000: port must be 0 to 65535");

  for (const std::string& error : {same_port.error(), bad_host.error(), bad_port.error()}) {
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
}

TEST(MetricsHttp, DestructionStopsServing) {
  Registry registry;
  fill(registry);
  int port = 0;
  {
    auto exporter = HttpExporter::start(registry, "127.0.0.1", 0);
    ASSERT_TRUE(exporter.has_value()) << exporter.error();
    port = (*exporter)->port();
    EXPECT_EQ(http_get(port, "/metrics").status, 200);
  }
  EXPECT_EQ(http_get(port, "/metrics").status, 0);  // connection refused
  // And the port is free again.
  auto again = HttpExporter::start(registry, "127.0.0.1", port);
  ASSERT_TRUE(again.has_value()) << again.error();
  EXPECT_EQ(http_get(port, "/metrics").status, 200);
}

}  // namespace
