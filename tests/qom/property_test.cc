#include "qom/property.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qom/object.h"
#include "tests/testing/test_types.h"

namespace vdev::qom {
namespace {

using testing::TestDevice;

class PropertyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto o = TypeRegistry::Global().Create("test-device");
    ASSERT_TRUE(o.ok());
    obj_ = std::move(*o);
    dev_ = DynamicCast<TestDevice>(obj_.get());
  }
  std::string Get(absl::string_view name) { return *obj_->GetProperty(name); }
  absl::Status Set(absl::string_view name, absl::string_view value) {
    return obj_->SetProperty(name, value);
  }
  std::unique_ptr<Object> obj_;
  TestDevice* dev_ = nullptr;
};

TEST_F(PropertyTest, DefaultsAreAppliedAtCreation) {
  EXPECT_EQ(dev_->u32, 7u);
  EXPECT_EQ(Get("u32"), "7");
  EXPECT_EQ(Get("mode"), "auto");
  EXPECT_EQ(Get("addr"), "-1");
  EXPECT_EQ(Get("mac"), "00:00:00:00:00:00");
}

TEST_F(PropertyTest, BoolAcceptsAllSpellings) {
  for (const char* on : {"on", "true", "yes"}) {
    ASSERT_TRUE(Set("flag", on).ok());
    EXPECT_TRUE(dev_->flag);
    EXPECT_EQ(Get("flag"), "on");
    ASSERT_TRUE(Set("flag", "off").ok());
  }
  for (const char* off : {"off", "false", "no"}) {
    ASSERT_TRUE(Set("flag", "on").ok());
    ASSERT_TRUE(Set("flag", off).ok());
    EXPECT_FALSE(dev_->flag);
  }
  EXPECT_EQ(Set("flag", "maybe").message(), "Parameter 'flag' expects 'on' or 'off', got 'maybe'");
}

TEST_F(PropertyTest, BitPropertiesShareOneWord) {
  EXPECT_EQ(dev_->bits, 1u);  // only the defaults' bits, nothing else
  EXPECT_EQ(Get("bit0"), "on");
  EXPECT_EQ(Get("bit40"), "off");
  EXPECT_EQ(obj_->object_class().FindProperty("bit40")->type, "bool");
  ASSERT_TRUE(Set("bit40", "on").ok());
  EXPECT_EQ(dev_->bits, (uint64_t{1} << 40) | 1u);
  ASSERT_TRUE(Set("bit0", "off").ok());
  EXPECT_EQ(dev_->bits, uint64_t{1} << 40);
  EXPECT_EQ(Get("bit0"), "off");
  EXPECT_EQ(Set("bit0", "2").message(), "Parameter 'bit0' expects 'on' or 'off', got '2'");
  EXPECT_EQ(dev_->bits, uint64_t{1} << 40);  // a bad value changes nothing
}

TEST_F(PropertyTest, UnsignedIntegersTakeDecimalAndHexWithinRange) {
  ASSERT_TRUE(Set("u8", "255").ok());
  EXPECT_EQ(dev_->u8, 255);
  ASSERT_TRUE(Set("u16", "0xBEEF").ok());
  EXPECT_EQ(dev_->u16, 0xbeef);
  ASSERT_TRUE(Set("u64", "0xffffffffffffffff").ok());
  EXPECT_EQ(dev_->u64, ~0ull);
  EXPECT_EQ(Set("u8", "256").message(), "Parameter 'u8' expects an integer in [0, 255], got '256'");
  EXPECT_EQ(Set("u32", "x").message(), "Parameter 'u32' expects an integer, got 'x'");
  EXPECT_EQ(Set("u32", "-1").message(),
            "Parameter 'u32' expects an integer in [0, 4294967295], got '-1'");
  EXPECT_FALSE(Set("u32", "").ok());
  EXPECT_FALSE(Set("u32", " 1").ok());
  EXPECT_FALSE(Set("u32", "1k").ok());
  EXPECT_FALSE(Set("u64", "18446744073709551616").ok());
  EXPECT_EQ(dev_->u8, 255);  // a failed set changes nothing
}

TEST_F(PropertyTest, SignedIntegersTakeNegativeValuesWithinRange) {
  ASSERT_TRUE(Set("i8", "-128").ok());
  EXPECT_EQ(dev_->i8, -128);
  ASSERT_TRUE(Set("i16", "-0x10").ok());
  EXPECT_EQ(dev_->i16, -16);
  ASSERT_TRUE(Set("i64", "-9223372036854775808").ok());
  EXPECT_EQ(dev_->i64, INT64_MIN);
  EXPECT_EQ(Get("i64"), "-9223372036854775808");
  EXPECT_EQ(Set("i8", "128").message(),
            "Parameter 'i8' expects an integer in [-128, 127], got '128'");
  EXPECT_FALSE(Set("i32", "--1").ok());
}

TEST_F(PropertyTest, StringsAreTakenVerbatim) {
  ASSERT_TRUE(Set("label", "a,b=c").ok());
  EXPECT_EQ(dev_->label, "a,b=c");
  ASSERT_TRUE(Set("label", "").ok());
  EXPECT_EQ(Get("label"), "");
}

TEST_F(PropertyTest, EnumAcceptsOnlyItsNames) {
  ASSERT_TRUE(Set("mode", "slow").ok());
  EXPECT_EQ(dev_->mode, testing::TestMode::kSlow);
  EXPECT_EQ(Get("mode"), "slow");
  EXPECT_EQ(Set("mode", "medium").message(),
            "Parameter 'mode' expects one of fast/slow/auto, got 'medium'");
}

TEST_F(PropertyTest, MacAddressParsesAndPrintsLowercase) {
  ASSERT_TRUE(Set("mac", "52:54:00:AB:cd:EF").ok());
  EXPECT_EQ(Get("mac"), "52:54:00:ab:cd:ef");
  EXPECT_EQ(dev_->mac.bytes[3], 0xab);
  for (const char* bad : {"52:54", "52:54:00:ab:cd:ef:01", "52-54-00-ab-cd-ef", "5z:54:00:ab:cd:ef",
                          "52:54:00:ab:cd:e"}) {
    EXPECT_EQ(
        Set("mac", bad).message(),
        absl::StrCat("Parameter 'mac' expects a MAC address (aa:bb:cc:dd:ee:ff), got '", bad, "'"));
  }
}

TEST_F(PropertyTest, PciAddressIsSlotDotFunctionInHex) {
  ASSERT_TRUE(Set("addr", "1f.7").ok());
  EXPECT_EQ(dev_->addr.slot(), 31);
  EXPECT_EQ(dev_->addr.fn(), 7);
  EXPECT_EQ(Get("addr"), "1f.7");
}

TEST(PciDevFnCodecTest, ParsesQemuForms) {
  PciDevFn d;
  ASSERT_TRUE(ParsePciDevFn("3", &d));
  EXPECT_EQ(d, PciDevFn::Of(3, 0));
  ASSERT_TRUE(ParsePciDevFn("0x10.2", &d));
  EXPECT_EQ(d, PciDevFn::Of(16, 2));
  ASSERT_TRUE(ParsePciDevFn("06.0", &d));
  EXPECT_EQ(PrintPciDevFn(d), "06.0");
  for (const char* bad : {"20", "3.8", "3.", ".1", "g", "1.1.1", "100", ""}) {
    EXPECT_FALSE(ParsePciDevFn(bad, &d)) << bad;
  }
}

TEST_F(PropertyTest, SizeTakesSuffixes) {
  ASSERT_TRUE(Set("size", "64M").ok());
  EXPECT_EQ(dev_->size.bytes, 64u << 20);
  ASSERT_TRUE(Set("size", "4k").ok());
  EXPECT_EQ(dev_->size.bytes, 4096u);
  ASSERT_TRUE(Set("size", "0x1000").ok());
  EXPECT_EQ(dev_->size.bytes, 4096u);
  ASSERT_TRUE(Set("size", "0x1b").ok());  // a hex digit, not a "bytes" suffix
  EXPECT_EQ(dev_->size.bytes, 27u);
  ASSERT_TRUE(Set("size", "512b").ok());
  EXPECT_EQ(dev_->size.bytes, 512u);
  EXPECT_FALSE(Set("size", "17179869184T").ok());  // overflows 64 bits
  EXPECT_FALSE(Set("size", "M").ok());
}

TEST_F(PropertyTest, UnknownPropertyNamesTypeAndKey) {
  absl::Status s = Set("macc", "1");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "Property 'test-device.macc' not found (did you mean 'mac'?)");
  EXPECT_EQ(obj_->GetProperty("macc").status().message(),
            "Property 'test-device.macc' not found (did you mean 'mac'?)");
}

TEST_F(PropertyTest, SubclassInheritsPropertiesAndOverridesDefault) {
  auto sub = TypeRegistry::Global().Create("test-sub-device");
  ASSERT_TRUE(sub.ok());
  EXPECT_EQ(*(*sub)->GetProperty("u32"), "42");
  EXPECT_EQ((*sub)->object_class().FindProperty("u32")->default_value, "42");
  // The parent's default is untouched.
  EXPECT_EQ(Get("u32"), "7");
  EXPECT_TRUE((*sub)->SetProperty("label", "x").ok());
}

TEST_F(PropertyTest, InstancePropertiesAreDynamicAndPerObject) {
  PropertyInfo p;
  p.name = "dyn";
  p.type = "str";
  auto value = std::make_shared<std::string>("init");
  p.get = [value](const Object&) { return *value; };
  p.set = [value](Object&, absl::string_view v) {
    *value = std::string(v);
    return absl::OkStatus();
  };
  ASSERT_TRUE(obj_->AddInstanceProperty(p).ok());
  EXPECT_EQ(Get("dyn"), "init");
  ASSERT_TRUE(Set("dyn", "changed").ok());
  EXPECT_EQ(*value, "changed");
  EXPECT_EQ(obj_->AddInstanceProperty(p).code(), absl::StatusCode::kAlreadyExists);
  PropertyInfo clash;
  clash.name = "u32";
  EXPECT_EQ(obj_->AddInstanceProperty(clash).code(), absl::StatusCode::kAlreadyExists);
  auto other = TypeRegistry::Global().Create("test-device");
  EXPECT_FALSE((*other)->GetProperty("dyn").ok());
  EXPECT_TRUE(obj_->RemoveInstanceProperty("dyn"));
  EXPECT_FALSE(obj_->GetProperty("dyn").ok());
}

TEST_F(PropertyTest, ReadOnlyPropertyRefusesSet) {
  PropertyInfo p;
  p.name = "ro";
  p.type = "str";
  p.get = [](const Object&) { return std::string("fixed"); };
  ASSERT_TRUE(obj_->AddInstanceProperty(p).ok());
  EXPECT_EQ(Set("ro", "x").message(), "Property 'test-device.ro' is read-only");
}

}  // namespace
}  // namespace vdev::qom
