#include "model/safetensors.h"

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace spar::model {
namespace {

using ::spar::testing::IsOk;
using ::spar::testing::StatusIs;
using ::testing::HasSubstr;

std::string Le64(uint64_t n) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return s;
}

template <typename T>
std::string Bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// header text (unpadded) + buffer -> file bytes with the header padded to 8.
std::string MakeFile(std::string header, const std::string& buffer) {
  header.append((8 - header.size() % 8) % 8, ' ');
  return Le64(header.size()) + header + buffer;
}

TEST(SafetensorsTest, ParsesHandMadeFile) {
  const std::string data = Bytes(std::vector<float>{1.5f, -2.0f}) + Bytes(std::vector<int64_t>{7});
  const std::string file = MakeFile(
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("step":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})",
      data);
  absl::StatusOr<SafetensorsFile> parsed = SafetensorsFile::Parse(file);
  ASSERT_THAT(parsed, IsOk());
  ASSERT_EQ(parsed->tensors().size(), 2u);
  EXPECT_EQ(parsed->metadata().at("format"), "pt");
  const SafetensorsEntry& w = parsed->tensors().at("w");
  EXPECT_EQ(w.dtype, SafetensorsDType::kF32);
  EXPECT_EQ(w.shape, std::vector<int64_t>({2}));
  std::string_view wd = parsed->Data(w);
  ASSERT_EQ(wd.size(), 8u);
  float f[2];
  std::memcpy(f, wd.data(), 8);
  EXPECT_EQ(f[0], 1.5f);
  EXPECT_EQ(f[1], -2.0f);
  const SafetensorsEntry& step = parsed->tensors().at("step");
  EXPECT_TRUE(step.shape.empty());
  int64_t s;
  std::memcpy(&s, parsed->Data(step).data(), 8);
  EXPECT_EQ(s, 7);
}

TEST(SafetensorsTest, SerializesExactBytes) {
  const std::vector<float> a = {1.0f, 2.0f};
  const std::string a_bytes = Bytes(a);
  absl::StatusOr<std::string> out =
      SerializeSafetensors({{"a", SafetensorsDType::kF32, {2}, a_bytes}}, {{"format", "pt"}});
  ASSERT_THAT(out, IsOk());
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
  // 85 chars -> padded with 3 spaces to 88.
  ASSERT_EQ(header.size(), 85u);
  const std::string expected = Le64(88) + header + "   " + Bytes(a);
  EXPECT_EQ(*out, expected);
  EXPECT_EQ((out->size() - 8 - 8) % 8, 0u);
}

TEST(SafetensorsTest, RoundTripsDtypesAndShapes) {
  const std::vector<float> f32 = {1, 2, 3, 4, 5, 6};
  const std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x7bff};  // 1, -2, 65504
  const std::vector<uint16_t> bf16 = {0x3f80, 0x4000};         // 1, 2
  const std::vector<int64_t> i64 = {-1, 1LL << 40};
  const std::vector<int32_t> i32 = {42};
  const std::vector<float> scalar = {3.25f};
  // Owned bytes: SafetensorsTensorRef only views them.
  const std::string b_f32 = Bytes(f32), b_f16 = Bytes(f16), b_bf16 = Bytes(bf16),
                    b_i64 = Bytes(i64), b_i32 = Bytes(i32), b_scalar = Bytes(scalar);
  std::vector<SafetensorsTensorRef> tensors = {
      {"f32", SafetensorsDType::kF32, {2, 3}, b_f32},
      {"f16", SafetensorsDType::kF16, {3}, b_f16},
      {"bf16", SafetensorsDType::kBF16, {1, 2}, b_bf16},
      {"i64", SafetensorsDType::kI64, {2}, b_i64},
      {"i32", SafetensorsDType::kI32, {1, 1, 1}, b_i32},
      {"scalar", SafetensorsDType::kF32, {}, b_scalar},
      {"empty", SafetensorsDType::kF32, {0, 4}, std::string_view()},
  };
  absl::StatusOr<std::string> bytes = SerializeSafetensors(tensors);
  ASSERT_THAT(bytes, IsOk());
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Parse(*bytes);
  ASSERT_THAT(file, IsOk());
  ASSERT_EQ(file->tensors().size(), tensors.size());
  EXPECT_TRUE(file->metadata().empty());
  for (const auto& t : tensors) {
    SCOPED_TRACE(t.name);
    const SafetensorsEntry& e = file->tensors().at(t.name);
    EXPECT_EQ(e.dtype, t.dtype);
    EXPECT_EQ(e.shape, t.shape);
    EXPECT_EQ(file->Data(e), t.data);
  }
}

TEST(SafetensorsTest, DtypeNames) {
  for (const char* name : {"F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"}) {
    absl::StatusOr<SafetensorsDType> d = ParseSafetensorsDType(name);
    ASSERT_TRUE(d.ok()) << name;
    EXPECT_EQ(SafetensorsDTypeName(*d), name);
  }
  EXPECT_EQ(SafetensorsDTypeSize(SafetensorsDType::kBF16), 2u);
  EXPECT_FALSE(ParseSafetensorsDType("F8").ok());
}

void ExpectRejected(const std::string& bytes, const std::string& needle) {
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Parse(bytes);
  ASSERT_FALSE(file.ok()) << "expected an error containing: " << needle;
  EXPECT_THAT(file, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(needle)));
}

TEST(SafetensorsTest, RejectsCorruptFiles) {
  const std::string eight(8, 'x');
  ExpectRejected("abc", "too short");
  ExpectRejected(Le64(1000) + "{}", "bad header length");
  ExpectRejected(Le64(200'000'000) + "{}", "bad header length");
  ExpectRejected(MakeFile("{not json", ""), "not valid JSON");
  ExpectRejected(MakeFile("[1,2]", ""), "not a JSON object");
  ExpectRejected(MakeFile(R"({"a":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", eight),
                 "unknown dtype");
  ExpectRejected(MakeFile(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight),
                 "size mismatch");
  ExpectRejected(MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight),
                 "gap");
  ExpectRejected(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          eight),
                 "overlap");
  ExpectRejected(MakeFile(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight),
                 "size mismatch");  // trailing bytes not covered
  ExpectRejected(MakeFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight),
                 "end before begin");
  ExpectRejected(MakeFile(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight),
                 "non-negative");
  ExpectRejected(MakeFile(R"({"a":{"dtype":"F32","shape":[2]}})", eight), "data_offsets");
  ExpectRejected(MakeFile(R"({"__metadata__":{"k":1}})", ""), "__metadata__.k");
}

TEST(SafetensorsTest, SerializeRejectsBadInput) {
  const std::string four(4, '\0');
  EXPECT_FALSE(SerializeSafetensors({{"a", SafetensorsDType::kF32, {2}, four}}).ok());
  EXPECT_FALSE(SerializeSafetensors({{"a", SafetensorsDType::kF32, {1}, four},
                                     {"a", SafetensorsDType::kF32, {1}, four}})
                   .ok());
  EXPECT_FALSE(SerializeSafetensors({{"__metadata__", SafetensorsDType::kF32, {1}, four}}).ok());
}

TEST(SafetensorsTest, ReadMissingFileIsNotFound) {
  absl::StatusOr<SafetensorsFile> file = SafetensorsFile::Read("/nonexistent/x.safetensors");
  EXPECT_THAT(file, StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/x.safetensors")));
}

// Read memory-maps the file: the same entries and bytes as parsing it from memory, still valid
// after Release (the pages come back from the file) and in a copy that outlives the original.
TEST(SafetensorsTest, ReadMapsTheFileAndMatchesParse) {
  std::vector<float> big(5000);  // several pages, so Release drops some
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<float>(i) * 0.5f;
  const std::vector<uint16_t> half = {1, 2, 3};
  const std::string path = ::testing::TempDir() + "/spar_safetensors_mmap_test.safetensors";
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"big", SafetensorsDType::kF32, {5000}, Bytes(big)},
                                {"half", SafetensorsDType::kBF16, {3}, Bytes(half)}},
                               {{"format", "pt"}})
                  .ok());
  absl::StatusOr<SafetensorsFile> parsed = SafetensorsFile::Parse(
      *SerializeSafetensors({{"big", SafetensorsDType::kF32, {5000}, Bytes(big)},
                             {"half", SafetensorsDType::kBF16, {3}, Bytes(half)}},
                            {{"format", "pt"}}));
  ASSERT_TRUE(parsed.ok());
  EXPECT_FALSE(parsed->mapped());
  std::optional<SafetensorsFile> copy;
  {
    absl::StatusOr<SafetensorsFile> mapped = SafetensorsFile::Read(path);
    ASSERT_THAT(mapped, IsOk());
    EXPECT_TRUE(mapped->mapped());
    EXPECT_EQ(mapped->metadata(), parsed->metadata());
    ASSERT_EQ(mapped->tensors().size(), 2u);
    for (const auto& [name, entry] : parsed->tensors()) {
      const SafetensorsEntry& m = mapped->tensors().at(name);
      EXPECT_EQ(m.shape, entry.shape) << name;
      EXPECT_EQ(mapped->Data(m), parsed->Data(entry)) << name;
    }
    const SafetensorsEntry& b = mapped->tensors().at("big");
    mapped->Release(b);
    EXPECT_EQ(mapped->Data(b), Bytes(big));
    copy = *mapped;
  }
  EXPECT_EQ(copy->Data(copy->tensors().at("big")), Bytes(big));
  EXPECT_EQ(copy->Data(copy->tensors().at("half")), Bytes(half));
  // An empty or truncated file is a clear error, as from memory.
  ASSERT_TRUE(WriteFileAtomic(path, "").ok());
  EXPECT_THAT(std::string(SafetensorsFile::Read(path).status().message()), HasSubstr("too short"));
}

}  // namespace
}  // namespace spar::model
