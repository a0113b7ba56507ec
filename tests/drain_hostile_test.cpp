// shmtrace-drain against corrupted and hostile objects in /dev/shm (SPEC D1,
// §6): beside a real producer's segment lie objects named like segments whose
// headers, rings, size, owner or file type are wrong. The drain must store the
// good producer exactly, refuse each bad object with exactly one stderr line
// naming it, store nothing of them, leave them in place, never follow a
// symlink, and exit 0.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fcntl.h>
#include <functional>
#include <string>
#include <vector>

#include "support/drain_harness.hpp"
#include "support/test_database.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

namespace h = harness;

// Linux pids are below pid_max, which is at most 2^22: these never exist.
constexpr std::uint32_t kFirstFakePid = (1u << 22) + 100;

struct Hostile {
  std::string label;
  std::string name;
  std::uint32_t pid = 0;
  std::string reason;  // a substring the refusal line must carry ("" = any)
};

std::string shm_path(const std::string& name) { return "/dev/shm/" + name; }

// A segment name of the test's session (its drain takes no other).
std::string fake_name(const std::string& session, std::uint32_t pid, std::uint64_t nonce) {
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "shmtrace.%s.%u.%016llx", session.c_str(), pid,
                static_cast<unsigned long long>(nonce));
  return buffer;
}

// Removes every hostile object at scope exit (they must outlive the drain).
struct ObjectsGuard {
  std::vector<std::string> names;
  ~ObjectsGuard() {
    for (const std::string& n : names) ::unlink(shm_path(n).c_str());
  }
};

bool write_object(const std::string& name, const std::vector<std::uint8_t>& bytes) {
  const int fd = ::open(shm_path(name).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return false;
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return done == bytes.size();
}

bool object_present(const std::string& name) {
  struct stat st {};
  return ::lstat(shm_path(name).c_str(), &st) == 0;
}

TEST(DrainHostile, BadSegmentsAreRefusedOnceEachLeftInPlaceAndTheGoodOneIsStoredExactly) {
  const SessionScope session;  // its drains take only its producers' segments
  ASSERT_EQ(::geteuid(), 0u) << "this test needs root (it chowns an object to another uid); run it as root";
  constexpr long kPerThread = 3000;
  const TempDb db("hostile");
  const RunResult producer = run({program_path("st_producer"), "sequence", "2", std::to_string(kPerThread)});
  ASSERT_EQ(producer.exit_code, 0) << producer.err;
  const std::string good = find_segment(producer.pid, 0);
  ASSERT_NE(good, "") << "st_producer leaves its segment after exit";
  SegmentGuard good_guard(good);

  // The good segment's bytes are the template of most hostile objects: valid
  // but for one field, so each refusal is for the field the case names.
  const std::string image = h::read_file(shm_path(good));
  ASSERT_GE(image.size(), sizeof(abi::SegmentHeader));
  const std::vector<std::uint8_t> original(image.begin(), image.end());
  abi::SegmentHeader header{};
  std::memcpy(&header, original.data(), sizeof header);
  ASSERT_EQ(header.magic, abi::kSegmentMagic);

  // The ring to corrupt: the last one the producer wrote, with an earlier
  // ring holding records too, so a drain that kept the rows it read before
  // the bad ring would store them (under the fake pid) and be caught.
  std::uint32_t last_used = 0, used = 0;
  {
    auto segment = reader::Segment::attach(good, reader::Access::kReadOnly);
    ASSERT_TRUE(segment) << segment.error().message;
    for (std::uint32_t r = 0; r < segment->ring_count(); ++r) {
      auto info = segment->ring_info(r);
      ASSERT_TRUE(info) << info.error().message;
      if (info->written > 0) {
        last_used = r;
        ++used;
      }
    }
  }
  ASSERT_GE(used, 2u) << "two worker threads write into two rings";

  ObjectsGuard guard;
  std::vector<Hostile> hostiles;
  std::uint32_t next_pid = kFirstFakePid;
  // A copy of the good segment renamed (pid and nonce agree with the name, no
  // error chunks or spill file of its own), then changed by `mutate`.
  auto add_copy = [&](const std::string& label, const std::string& reason,
                      const std::function<void(std::vector<std::uint8_t>&, abi::SegmentHeader&)>& mutate) {
    const std::uint32_t pid = next_pid++;
    const std::uint64_t nonce = 0x5e5e'0000'0000'0000ull + pid;
    std::vector<std::uint8_t> bytes = original;
    abi::SegmentHeader hh{};
    std::memcpy(&hh, bytes.data(), sizeof hh);
    hh.pid = pid;
    hh.nonce = nonce;
    hh.error_chunk_count = 0;
    hh.errors_written = 0;
    hh.errors_spilled = 0;
    hh.spill_dir[0] = '\0';
    mutate(bytes, hh);
    std::memcpy(bytes.data(), &hh, sizeof hh);
    const std::string name = fake_name(session.id(), pid, nonce);
    guard.names.push_back(name);
    ASSERT_TRUE(write_object(name, bytes)) << name << ": " << std::strerror(errno);
    hostiles.push_back({label, name, pid, reason});
  };

  add_copy("bad magic", "bad magic", [](auto&, abi::SegmentHeader& hh) { hh.magic = 0x0bad'c0de'0bad'c0deull; });
  add_copy("abi major", "abi_major", [](auto&, abi::SegmentHeader& hh) { hh.abi_major = abi::kAbiMajor + 1; });
  add_copy("huge total size", "total_size", [](auto&, abi::SegmentHeader& hh) { hh.total_size = 1ull << 50; });
  add_copy("huge region size", "overflow", [](auto&, abi::SegmentHeader& hh) { hh.overflow_size = 1ull << 62; });
  add_copy("rings offset out of range", "rings_offset",
           [](auto&, abi::SegmentHeader& hh) { hh.rings_offset = hh.total_size + abi::kPageSize; });
  add_copy("string table inside the header", "strings_offset",
           [](auto&, abi::SegmentHeader& hh) { hh.strings_offset = 64; });
  add_copy("ring index out of range", "ring " + std::to_string(last_used),
           [&](std::vector<std::uint8_t>& bytes, abi::SegmentHeader& hh) {
             auto* control = reinterpret_cast<abi::RingControl*>(bytes.data() + hh.rings_offset +
                                                                 std::uint64_t{last_used} * hh.ring_stride);
             control->head = control->tail + 3ull * hh.ring_capacity;
           });
  // Named as a segment of this session, but its header says another: not
  // what its name claims, so not this drain's.
  add_copy("header of another session", "header session 'otherrun' does not match the name",
           [](auto&, abi::SegmentHeader& hh) {
             std::memset(hh.session, 0, sizeof hh.session);
             std::memcpy(hh.session, "otherrun", 8);
           });
  add_copy("tail past head", "ring 0", [](std::vector<std::uint8_t>& bytes, abi::SegmentHeader& hh) {
    auto* control = reinterpret_cast<abi::RingControl*>(bytes.data() + hh.rings_offset);
    control->tail = control->head + 1;
  });
  // Truncated: shorter than the header.
  {
    const std::uint32_t pid = next_pid++;
    const std::string name = fake_name(session.id(), pid, 0x7777'0000'0000'0000ull + pid);
    guard.names.push_back(name);
    ASSERT_TRUE(write_object(name, std::vector<std::uint8_t>(original.begin(), original.begin() + 1000)));
    hostiles.push_back({"truncated", name, pid, "smaller than"});
  }
  // Another owner: a perfectly valid segment, but not ours.
  add_copy("foreign owner", "uid 12345", [](auto&, abi::SegmentHeader&) {});
  ASSERT_EQ(::chown(shm_path(hostiles.back().name).c_str(), 12345, 12345), 0) << std::strerror(errno);
  // A symlink named like a segment, to the good one: never followed.
  const std::uint32_t link_pid = next_pid++;
  const std::string link = fake_name(session.id(), link_pid, header.nonce);
  guard.names.push_back(link);
  ASSERT_EQ(::symlink(shm_path(good).c_str(), shm_path(link).c_str()), 0) << std::strerror(errno);

  // A valid segment of another session: this drain never looks at it.
  const std::uint32_t other_pid = next_pid++;
  const std::string other_session = session.id() + "other";  // unique on the machine too
  const std::string other = fake_name(other_session, other_pid, 0x0707'0000'0000'0000ull + other_pid);
  guard.names.push_back(other);
  {
    std::vector<std::uint8_t> bytes = original;
    abi::SegmentHeader hh{};
    std::memcpy(&hh, bytes.data(), sizeof hh);
    hh.pid = other_pid;
    hh.nonce = 0x0707'0000'0000'0000ull + other_pid;
    hh.error_chunk_count = 0;
    hh.errors_written = 0;
    hh.errors_spilled = 0;
    hh.spill_dir[0] = '\0';
    std::memset(hh.session, 0, sizeof hh.session);
    std::memcpy(hh.session, other_session.data(), other_session.size());
    std::memcpy(bytes.data(), &hh, sizeof hh);
    ASSERT_TRUE(write_object(other, bytes)) << other << ": " << std::strerror(errno);
    auto readable = reader::Segment::attach(other, reader::Access::kReadOnly);
    ASSERT_TRUE(readable) << "a valid segment, only of another session: " << readable.error().message;
  }

  const RunResult drained = run(session.drain({"--db", db.path, "--once"}));
  ASSERT_TRUE(drained.exit_code == 0) << "exit " << drained.exit_code << " signal " << drained.signal << "\n"
                                      << drained.err;

  for (const Hostile& bad : hostiles) {
    SCOPED_TRACE(bad.label + " (" + bad.name + ")");
    const std::vector<std::string> lines = h::lines_with(drained.err, bad.name);
    ASSERT_EQ(lines.size(), 1u) << "exactly one line per refused object; stderr:\n" << drained.err;
    EXPECT_NE(lines[0].find(bad.reason), std::string::npos) << lines[0];
    EXPECT_TRUE(object_present(bad.name)) << "a refused object is left in place";
  }
  EXPECT_EQ(h::lines_with(drained.err, link).size(), 0u) << "the symlink is never opened; stderr:\n" << drained.err;
  EXPECT_TRUE(object_present(link));
  EXPECT_EQ(h::lines_with(drained.err, other).size(), 0u) << "another session's segment is not looked at:\n"
                                                          << drained.err;
  EXPECT_TRUE(object_present(other)) << "another session's segment is left to its own drain";

  Database d(db);
  ASSERT_EQ(d.error, "");
  const std::string pid = std::to_string(producer.pid);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid = " + pid), 1) << "stored once, not via the link";
  EXPECT_EQ(d.number("SELECT count(*)" + h::counters_of(producer.pid)), 2 * kPerThread);
  EXPECT_EQ(h::threads_with_exact_counters(d, producer.pid, kPerThread), 2);
  EXPECT_EQ(d.number("SELECT count(*) FROM span_data r JOIN processes p USING (process_key) WHERE p.pid = " + pid +
                     " AND r.kind = 'arg' AND r.name = 'text'"),
            2 * h::sequence_text_args(kPerThread));
  EXPECT_EQ(d.text("SELECT state FROM processes WHERE pid = " + pid), "exited");
  EXPECT_EQ(find_segment(producer.pid, 0), "") << "the good segment is drained and removed";
  // Nothing of a refused object reaches the database, not even the rows of
  // the rings read before the bad one.
  const std::string fake_range = " BETWEEN " + std::to_string(kFirstFakePid) + " AND " + std::to_string(next_pid);
  EXPECT_EQ(d.number("SELECT count(*) FROM processes WHERE pid" + fake_range), 0)
      << d.text("SELECT group_concat(pid || ' ' || segment || ' ' || state, '; ') FROM processes WHERE pid" + fake_range)
      << ", span_data rows of it: "
      << d.number("SELECT count(*) FROM span_data WHERE process_key IN (SELECT process_key FROM processes WHERE pid" +
                  fake_range + ")")
      << ", process_events rows: "
      << d.number("SELECT count(*) FROM process_events WHERE process_key IN (SELECT process_key FROM processes WHERE "
                  "pid" + fake_range + ")")
      << ", rings used " << used << ", corrupted ring " << last_used;
  EXPECT_EQ(d.number("SELECT count(*) FROM span_data r JOIN processes p USING (process_key) WHERE p.pid" + fake_range),
            0);
}

}  // namespace
}  // namespace shmtrace::test
