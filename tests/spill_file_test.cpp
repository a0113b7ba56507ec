// The spill file (SPEC D5): batches round-trip exactly, the bound is kept,
// a torn tail is cut at open, replay stops at the first failure and keeps
// everything, and empties the file once all is stored.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "store/spill_file.hpp"

namespace shmtrace::test {
namespace {

using drain::Batch;

Batch sample(int tag) {
  Batch b;
  b.records = 100 + static_cast<std::uint64_t>(tag);
  b.segments.resize(2);
  for (int s = 0; s < 2; ++s) {
    drain::SegmentRows& rows = b.segments[static_cast<std::size_t>(s)];
    rows.process.segment = "shmtrace." + std::to_string(tag) + "." + std::to_string(s);
    rows.process.pid = 7;
    rows.process.cmdline = "a b\nc";
    drain::SpanRow open;
    open.span_id = 1;
    open.name = "open";
    drain::SpanRow done = open;
    done.span_id = 2;
    done.duration_ns = -5;  // any value, also negative, comes back as it went
    rows.spans = {open, done};
    rows.span_data.push_back({.ring = drain::kOverflowRing, .position = 9, .kind = "arg", .value = std::string(300, 'v')});
    rows.events.push_back({.kind = "exit", .value = -1});
    rows.gaps.push_back({.dropped = 17, .first_ns = -3});
    rows.errors.push_back({.sequence = 4, .message = "boom", .frames = "0x1 0x2",
                           .symbols = "f+0x1 /src/a.c:3\n0x2 (is in none of the process's 1 modules)"});
    if (s == 1) {
      rows.cursor = drain::ErrorCursorRow{3, 64, 1ull << 40};
      rows.fate = drain::ProcessFate{"crashed", 11, 99, ""};
    }
  }
  return b;
}

bool same(const Batch& a, const Batch& b) { return drain::serialize(a) == drain::serialize(b); }

struct TempFile {
  TempFile() : path("/tmp/shmtrace-spill-test-" + std::to_string(::getpid())) { std::filesystem::remove(path); }
  ~TempFile() { std::filesystem::remove(path); }
  std::string path;
};

TEST(SpillFile, BatchesRoundTripExactly) {
  const Batch b = sample(1);
  const auto bytes = drain::serialize(b);
  auto back = drain::deserialize(bytes.data(), bytes.size());
  ASSERT_TRUE(back) << back.error();
  EXPECT_TRUE(same(b, *back));
  EXPECT_EQ(back->segments[1].fate->state, "crashed");
  EXPECT_EQ(*back->segments[0].spans[1].duration_ns, -5);
  EXPECT_FALSE(back->segments[0].spans[0].duration_ns.has_value());
  EXPECT_EQ(back->segments[1].cursor->spill_offset, 1ull << 40);
  // Every truncation of the bytes is refused, never misread.
  for (std::size_t cut = 0; cut < bytes.size(); cut += 7) {
    EXPECT_FALSE(drain::deserialize(bytes.data(), cut)) << cut;
  }
}

// A frame written by a drain before format 2 ("SPL1": no self time, no
// error symbols) still replays, its new fields empty.
TEST(SpillFile, AnOlderFormatFrameStillReplays) {
  const TempFile f;
  const Batch b = sample(5);
  const auto payload = drain::serialize(b, 1);
  std::uint64_t sum = 14695981039346656037ull;  // FNV-1a 64, as the frame header holds
  for (std::uint8_t byte : payload) sum = (sum ^ byte) * 1099511628211ull;
  std::vector<std::uint8_t> frame(16);
  const std::uint32_t magic = 0x53504c31, length = static_cast<std::uint32_t>(payload.size());  // "SPL1"
  std::memcpy(frame.data(), &magic, 4);
  std::memcpy(frame.data() + 4, &length, 4);
  std::memcpy(frame.data() + 8, &sum, 8);
  frame.insert(frame.end(), payload.begin(), payload.end());
  {
    const int fd = ::open(f.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
    ::close(fd);
  }
  auto spill = drain::SpillFile::open(f.path, 1 << 20);
  ASSERT_TRUE(spill) << spill.error();
  ASSERT_TRUE(spill->append(b));  // a format-2 frame after it
  EXPECT_EQ(spill->batches(), 2u);
  std::vector<Batch> replayed;
  auto done = spill->replay([&](const Batch& got) -> std::expected<void, std::string> {
    replayed.push_back(got);
    return {};
  });
  ASSERT_TRUE(done) << done.error();
  ASSERT_EQ(replayed.size(), 2u);
  EXPECT_EQ(replayed[0].segments[0].errors[0].message, "boom");
  EXPECT_EQ(replayed[0].segments[0].errors[0].symbols, "") << "format 1 had none";
  EXPECT_EQ(replayed[1].segments[0].errors[0].symbols, b.segments[0].errors[0].symbols);
  EXPECT_TRUE(same(replayed[1], b));
}

TEST(SpillFile, ReplaysInOrderThenEmpties) {
  const TempFile f;
  auto spill = drain::SpillFile::open(f.path, 1 << 20);
  ASSERT_TRUE(spill);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(spill->append(sample(i)));
  EXPECT_EQ(spill->batches(), 3u);
  // A failing store keeps everything.
  int calls = 0;
  auto failed = spill->replay([&](const Batch&) -> std::expected<void, std::string> {
    return ++calls == 2 ? std::expected<void, std::string>(std::unexpected(std::string("disk full")))
                        : std::expected<void, std::string>();
  });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), "disk full");
  EXPECT_EQ(spill->batches(), 3u);
  std::vector<std::uint64_t> seen;
  auto replayed = spill->replay([&](const Batch& b) -> std::expected<void, std::string> {
    seen.push_back(b.records);
    return {};
  });
  ASSERT_TRUE(replayed);
  EXPECT_EQ(*replayed, 3u);
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{100, 101, 102}));
  EXPECT_EQ(spill->bytes(), 0u);
  EXPECT_EQ(std::filesystem::file_size(f.path), 0u);
}

TEST(SpillFile, TheBoundIsKeptAndATornTailIsCutAtOpen) {
  const TempFile f;
  const std::size_t one = drain::serialize(sample(0)).size() + 16;
  {
    auto spill = drain::SpillFile::open(f.path, 2 * one + 10);
    ASSERT_TRUE(spill);
    ASSERT_TRUE(spill->append(sample(0)));
    ASSERT_TRUE(spill->append(sample(1)));
    auto full = spill->append(sample(2));
    ASSERT_FALSE(full);
    EXPECT_NE(full.error().find("is full"), std::string::npos) << full.error();
    EXPECT_EQ(std::filesystem::file_size(f.path), 2 * one);
  }
  // A drain killed in the middle of its third append: half a frame.
  const auto third = drain::serialize(sample(2));
  const int fd = ::open(f.path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "1LPS\xff\xff\x00\x00", 8), 8);
  ASSERT_EQ(::write(fd, third.data(), 40), 40);
  ::close(fd);
  auto spill = drain::SpillFile::open(f.path, 1 << 20);
  ASSERT_TRUE(spill);
  EXPECT_EQ(spill->batches(), 2u);
  EXPECT_EQ(std::filesystem::file_size(f.path), 2 * one);
  std::uint64_t n = 0;
  ASSERT_TRUE(spill->replay([&](const Batch& b) -> std::expected<void, std::string> {
    EXPECT_TRUE(same(b, sample(static_cast<int>(n++))));
    return {};
  }));
  EXPECT_EQ(n, 2u);
}

// A whole frame (checksum right) whose payload this drain cannot read (an
// older drain's format): kept aside in <spill>.rejected, reported, passed
// over; the batches around it are stored and the spill emptied.
TEST(SpillFile, AnUnreadableWholeFrameIsKeptAsideAndDoesNotBlockTheRest) {
  const TempFile f;
  const std::string rejected_path = f.path + ".rejected";
  std::filesystem::remove(rejected_path);
  {
    auto spill = drain::SpillFile::open(f.path, 1 << 20);
    ASSERT_TRUE(spill);
    ASSERT_TRUE(spill->append(sample(0)));
  }
  // The frame: "SPL1", length, FNV-1a of the payload, payload.
  const std::string payload = "not a batch of this format";
  std::uint64_t sum = 14695981039346656037ull;
  for (unsigned char c : payload) sum = (sum ^ c) * 1099511628211ull;
  std::string frame(16, '\0');
  const std::uint32_t magic = 0x53504c31, length = static_cast<std::uint32_t>(payload.size());
  std::memcpy(frame.data(), &magic, 4);
  std::memcpy(frame.data() + 4, &length, 4);
  std::memcpy(frame.data() + 8, &sum, 8);
  frame += payload;
  const int fd = ::open(f.path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, frame.data(), frame.size()), static_cast<ssize_t>(frame.size()));
  ::close(fd);
  auto spill = drain::SpillFile::open(f.path, 1 << 20);
  ASSERT_TRUE(spill);
  ASSERT_EQ(spill->batches(), 2u) << "a whole frame is kept at open";
  ASSERT_TRUE(spill->append(sample(2)));
  std::vector<std::uint64_t> seen;
  std::vector<std::string> reports;
  auto replayed = spill->replay(
      [&](const Batch& b) -> std::expected<void, std::string> {
        seen.push_back(b.records);
        return {};
      },
      [&](const std::string& why) { reports.push_back(why); });
  ASSERT_TRUE(replayed) << replayed.error();
  EXPECT_EQ(*replayed, 2u);
  EXPECT_EQ(seen, (std::vector<std::uint64_t>{100, 102}));
  ASSERT_EQ(reports.size(), 1u);
  const std::size_t offset = drain::serialize(sample(0)).size() + 16;
  EXPECT_EQ(reports[0], f.path + ": the batch at offset " + std::to_string(offset) +
                            " is unreadable (malformed spilled batch): kept in " + rejected_path);
  EXPECT_EQ(std::filesystem::file_size(rejected_path), frame.size());
  EXPECT_EQ(spill->bytes(), 0u);
  std::filesystem::remove(rejected_path);
}

}  // namespace
}  // namespace shmtrace::test
