#include "core/qdev/options.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vdev {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(QemuOptsTest, ImpliedFirstKey) {
  auto o = QemuOpts::Parse("virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56", "driver");
  ASSERT_TRUE(o.ok());
  EXPECT_THAT(o->entries(), ElementsAre(Pair("driver", "virtio-net-pci"), Pair("netdev", "n0"),
                                        Pair("mac", "52:54:00:12:34:56")));
  EXPECT_FALSE(o->help());
}

TEST(QemuOptsTest, ExplicitFirstKey) {
  auto o = QemuOpts::Parse("driver=edu,id=e0", "driver");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->Get("driver"), "edu");
  EXPECT_EQ(o->Get("id"), "e0");
}

TEST(QemuOptsTest, DoubleCommaEscapesComma) {
  auto o = QemuOpts::Parse("socket,id=c0,path=/tmp/a,,b,,,,c", "backend");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->Get("path"), "/tmp/a,b,,c");
  auto first = QemuOpts::Parse("we,,ird,id=x", "driver");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->Get("driver"), "we,ird");
}

TEST(QemuOptsTest, ValueMayContainEquals) {
  auto o = QemuOpts::Parse("x,opt=a=b", "driver");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->Get("opt"), "a=b");
}

TEST(QemuOptsTest, HelpForms) {
  EXPECT_TRUE(QemuOpts::Parse("help", "driver")->help());
  EXPECT_TRUE(QemuOpts::Parse("?", "driver")->help());
  EXPECT_FALSE(QemuOpts::Parse("help", "driver")->Has("driver"));
  auto typed = QemuOpts::Parse("virtio-net-pci,help", "driver");
  ASSERT_TRUE(typed.ok());
  EXPECT_TRUE(typed->help());
  EXPECT_EQ(typed->Get("driver"), "virtio-net-pci");
  EXPECT_TRUE(QemuOpts::Parse("virtio-net-pci,?", "driver")->help());
}

TEST(QemuOptsTest, BareKeyMeansOn) {
  auto o = QemuOpts::Parse("socket,id=c0,server", "backend");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->Get("server"), "on");
}

TEST(QemuOptsTest, EmptyValueIsAllowed) {
  auto o = QemuOpts::Parse("edu,label=", "driver");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->Get("label"), "");
}

TEST(QemuOptsTest, Errors) {
  EXPECT_EQ(QemuOpts::Parse("", "driver").status().message(), "empty option string");
  EXPECT_EQ(QemuOpts::Parse("edu,id=a,id=b", "driver").status().message(),
            "Parameter 'id' given more than once");
  EXPECT_EQ(QemuOpts::Parse("edu,=x", "driver").status().message(), "Invalid parameter ''");
  EXPECT_EQ(QemuOpts::Parse("edu,a b=x", "driver").status().message(), "Invalid parameter 'a b'");
  EXPECT_EQ(QemuOpts::Parse(",id=x", "driver").status().message(), "Parameter 'driver' is missing");
  EXPECT_FALSE(QemuOpts::Parse("edu,,", "").ok());  // no implied key: "edu," is not a key
  EXPECT_EQ(QemuOpts::Parse("edu,id=x,,y=z,a,,b", "driver").status().message(),
            "Invalid parameter 'a,b'");
  EXPECT_EQ(QemuOpts::Parse("edu,id=x,,y=z", "driver")->Get("id"), "x,y=z");
}

TEST(QemuOptsTest, WithoutImpliedKeyFirstBareElementIsAFlag) {
  auto o = QemuOpts::Parse("edu", "");
  ASSERT_TRUE(o.ok());  // a bare key
  EXPECT_EQ(o->Get("edu"), "on");
}

TEST(QemuOptsTest, TrailingCommaIsHarmless) {
  auto o = QemuOpts::Parse("edu,id=x,", "driver");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->entries().size(), 2u);
}

TEST(QemuOptsTest, ToStringRoundTrips) {
  auto o = QemuOpts::Parse("tap,id=n0,script=/a,,b,vhost=off", "type");
  ASSERT_TRUE(o.ok());
  std::string text = o->ToString("type");
  EXPECT_EQ(text, "tap,id=n0,script=/a,,b,vhost=off");
  auto again = QemuOpts::Parse(text, "type");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->entries(), o->entries());
}

TEST(QemuOptsTest, SetTakeAndGet) {
  auto o = QemuOpts::Parse("edu,id=x", "driver");
  ASSERT_TRUE(o.ok());
  o->Set("id", "y");
  o->Set("bus", "pci.0");
  EXPECT_EQ(o->Take("id"), "y");
  EXPECT_FALSE(o->Has("id"));
  EXPECT_EQ(o->Take("id"), std::nullopt);
  EXPECT_EQ(o->Get("bus"), "pci.0");
}

TEST(EscapeOptionValueTest, DoublesCommas) { EXPECT_EQ(EscapeOptionValue("a,b,,c"), "a,,b,,,,c"); }

}  // namespace
}  // namespace vdev
