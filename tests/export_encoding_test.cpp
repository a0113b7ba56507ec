// The export's two encoders on their own: the protobuf wire writer, decoded
// back by protoc --decode_raw at every length-width boundary of a nested
// message, and the JSON escaping, parsed back by nlohmann::json whatever the
// bytes (not UTF-8, controls, quotes) and numbers kept exact.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "../tools/shmtrace/export_json.hpp"
#include "../tools/shmtrace/export_protobuf.hpp"
#include "support/drain_harness.hpp"
#include "support/test_support.hpp"

namespace shmtrace::test {
namespace {

using cli::exporting::ProtoWriter;

std::string decode_raw(const std::string& bytes) {
  const std::string file = "/tmp/shmtrace-encoding-test-" + std::to_string(::getpid()) + ".pb";
  {
    std::ofstream(file, std::ios::binary) << bytes;
  }
  const RunResult r = run({"/bin/sh", "-c", "protoc --decode_raw < " + file});
  std::remove(file.c_str());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.out;
}

TEST(ExportProtobuf, NestedMessagesOfEveryLengthWidthDecode) {
  for (const std::size_t size : {2ul, 3ul, 127ul, 128ul, 129ul, 16383ul, 16384ul, 16385ul, 70000ul}) {
    SCOPED_TRACE(size);
    ProtoWriter w;
    const std::size_t outer = w.begin(1);
    w.varint(2, 150);
    const std::size_t inner = w.begin(3);
    // The inner message's own bytes: a tag, a length and the text, which
    // starts with a byte no message can (wire type 7), so protoc prints it
    // as a string rather than guess it is a message.
    // Sized so that the inner message is exactly `size` bytes long.
    std::size_t n = 0;
    while (size >= 2 && 1 + (n < 128 ? 1 : n < 16384 ? 2 : 3) + n < size) ++n;
    const std::string text = n == 0 ? std::string() : "\x07" + std::string(n - 1, 'x');
    w.bytes(4, text);
    w.end(inner);
    ASSERT_EQ(w.size() - inner - (size < 128 ? 1 : size < 16384 ? 2 : 4), size) << "the inner message's length";
    w.int64(5, -2);
    w.fixed_double(6, 2.5);
    w.end(outer);
    w.varint(7, 0xFFFFFFFFFFFFFFFFull);
    const std::string out = decode_raw(w.data());
    const std::string printed = text.empty() ? "" : "\\007" + text.substr(1);
    EXPECT_NE(out.find("1 {\n  2: 150\n  3 {\n    4: \"" + printed + "\"\n  }\n  5: 18446744073709551614\n"
                       "  6: 0x4004000000000000\n}\n7: 18446744073709551615\n"),
              std::string::npos)
        << out.substr(0, 300);
  }
}

TEST(ExportProtobuf, ShortMessagesTakeTheirMinimalEncoding) {
  ProtoWriter w;
  const std::size_t m = w.begin(1);
  w.varint(2, 1);
  w.end(m);
  EXPECT_EQ(w.data(), std::string("\x0a\x02\x10\x01", 4));
}

TEST(ExportJson, AnyBytesBecomeAStringThatParsesBack) {
  const std::string tricky = std::string("quote\" back\\ nl\n tab\t nul") + '\0' + " ctl\x01 utf8 \xC3\xA9 \xE2\x82\xAC " +
                             "bad \xFF \xC3 overlong \xC0\xAF surrogate \xED\xA0\x80 end";
  std::string out;
  cli::exporting::json_string(out, tricky);
  const auto parsed = nlohmann::json::parse(out);
  EXPECT_EQ(parsed.get<std::string>(),
            std::string("quote\" back\\ nl\n tab\t nul") + '\0' +
                " ctl\x01 utf8 \xC3\xA9 \xE2\x82\xAC bad \xEF\xBF\xBD \xEF\xBF\xBD overlong \xEF\xBF\xBD\xEF\xBF\xBD "
                "surrogate \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD end");
}

TEST(ExportJson, ValuesAreNumbersOnlyWhereAReaderKeepsThemExact) {
  const auto value = [](const std::string& v, const std::string& type) {
    std::string out;
    cli::exporting::json_value(out, v, type);
    return out;
  };
  EXPECT_EQ(value("-42", "int"), "-42");
  EXPECT_EQ(value("9007199254740992", "uint"), "9007199254740992");
  EXPECT_EQ(value("9007199254740993", "uint"), "\"9007199254740993\"");
  EXPECT_EQ(value("2.5", "double"), "2.5");
  EXPECT_EQ(value("nan", "double"), "\"nan\"");
  EXPECT_EQ(value("inf", "double"), "\"inf\"");
  EXPECT_EQ(value("true", "bool"), "true");
  EXPECT_EQ(value("12", "string"), "\"12\"");
  EXPECT_EQ(value("12abc", "int"), "\"12abc\"");
  std::string micros;
  cli::exporting::json_micros(micros, 1234567);
  EXPECT_EQ(micros, "1234.567");
  micros.clear();
  cli::exporting::json_micros(micros, -5);
  EXPECT_EQ(micros, "-0.005");
}

}  // namespace
}  // namespace shmtrace::test
