#include "qom/object.h"

#include "core/qdev/introspect.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_types.h"

namespace vdev::qom {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::unique_ptr<Object> New(absl::string_view type) {
  auto o = TypeRegistry::Global().Create(type);
  VDEV_CHECK(o.ok());
  return std::move(*o);
}

class TreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = NewRoot();
    machine_ = *root_->AddChild("machine", New("container"));
    periph_ = *machine_->AddChild("peripheral", New("container"));
    anon_ = *machine_->AddChild("peripheral-anon", New("container"));
    objects_ = *root_->AddChild("objects", New("container"));
  }
  std::unique_ptr<Object> root_;
  Object* machine_;
  Object* periph_;
  Object* anon_;
  Object* objects_;
};

TEST_F(TreeTest, CanonicalPaths) {
  Object* nic = *periph_->AddChild("nic0", New("test-device"));
  EXPECT_EQ(root_->CanonicalPath(), "/");
  EXPECT_EQ(nic->CanonicalPath(), "/machine/peripheral/nic0");
  EXPECT_EQ(nic->Root(), root_.get());
  auto detached = New("container");
  EXPECT_EQ(detached->CanonicalPath(), "");
  EXPECT_EQ(detached->Root(), nullptr);
}

TEST_F(TreeTest, AbsolutePathResolution) {
  Object* nic = *periph_->AddChild("nic0", New("test-device"));
  EXPECT_EQ(*root_->Resolve("/machine/peripheral/nic0"), nic);
  EXPECT_EQ(*nic->Resolve("/"), root_.get());
  EXPECT_EQ(root_->Resolve("/machine/nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TreeTest, PartialPathResolutionIsUniqueSuffixMatch) {
  Object* nic = *periph_->AddChild("nic0", New("test-device"));
  Object* other = *anon_->AddChild("device[0]", New("test-device"));
  EXPECT_EQ(*root_->Resolve("nic0"), nic);
  EXPECT_EQ(*root_->Resolve("peripheral/nic0"), nic);
  EXPECT_EQ(*root_->Resolve("device[0]"), other);
  EXPECT_EQ(root_->Resolve("anon/nic0").status().code(), absl::StatusCode::kNotFound);
  // Two objects named "x": ambiguous.
  ASSERT_TRUE(periph_->AddChild("x", New("container")).ok());
  ASSERT_TRUE(anon_->AddChild("x", New("container")).ok());
  auto amb = root_->Resolve("x");
  EXPECT_EQ(amb.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(amb.status().message(), HasSubstr("ambiguous"));
  EXPECT_TRUE(root_->Resolve("peripheral/x").ok());
  EXPECT_FALSE(root_->Resolve("x/").ok());
}

TEST_F(TreeTest, ChildNamesAreUniqueAndValid) {
  ASSERT_TRUE(periph_->AddChild("a", New("container")).ok());
  EXPECT_EQ(periph_->AddChild("a", New("container")).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(periph_->AddChild("a/b", New("container")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(periph_->AddChild("", New("container")).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A child name may not shadow a property.
  Object* dev = *periph_->AddChild("d", New("test-device"));
  EXPECT_EQ(dev->AddChild("u32", New("container")).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(TreeTest, ChildrenAreOwnedAndKeepInsertionOrder) {
  ASSERT_TRUE(periph_->AddChild("b", New("container")).ok());
  ASSERT_TRUE(periph_->AddChild("a", New("container")).ok());
  std::vector<std::string> names;
  for (Object* c : periph_->children()) names.push_back(c->name());
  EXPECT_THAT(names, ElementsAre("b", "a"));
  std::unique_ptr<Object> b = periph_->DetachChild("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->parent(), nullptr);
  EXPECT_EQ(periph_->FindChild("b"), nullptr);
  EXPECT_TRUE(periph_->DeleteChild("a"));
  EXPECT_FALSE(periph_->DeleteChild("a"));
  EXPECT_EQ(periph_->child_count(), 0u);
}

TEST_F(TreeTest, ChildIsReadableAsProperty) {
  Object* nic = *periph_->AddChild("nic0", New("test-device"));
  EXPECT_EQ(*periph_->GetProperty("nic0"), nic->CanonicalPath());
  EXPECT_THAT(FormatQomList(*periph_), HasSubstr("nic0 (child<test-device>)"));
}

TEST_F(TreeTest, LinkByIdAndByPath) {
  Object* be = *objects_->AddChild("be0", New("test-object"));
  auto* dev = DynamicCast<testing::TestDevice>(*periph_->AddChild("d", New("test-device")));
  ASSERT_TRUE(dev->SetProperty("backend", "be0").ok());
  EXPECT_EQ(dev->backend, be);
  EXPECT_EQ(*dev->GetProperty("backend"), "/objects/be0");
  ASSERT_TRUE(dev->SetProperty("backend", "/objects/be0").ok());
  EXPECT_EQ(dev->backend, be);
  EXPECT_TRUE(be->HasIncomingLinks());
  EXPECT_THAT(be->IncomingLinkNames(), ElementsAre("/machine/peripheral/d.backend"));
  ASSERT_TRUE(dev->SetProperty("backend", "").ok());
  EXPECT_EQ(dev->backend, nullptr);
  EXPECT_FALSE(be->HasIncomingLinks());
}

TEST_F(TreeTest, LinkRejectsUnknownAndWrongTypeTargets) {
  ASSERT_TRUE(periph_->AddChild("other", New("test-device")).ok());
  Object* dev = *periph_->AddChild("d", New("test-device"));
  EXPECT_EQ(dev->SetProperty("backend", "nope").message(),
            "Property 'test-device.backend' can't find value 'nope'");
  absl::Status s = dev->SetProperty("backend", "other");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("is a 'test-device', not a 'test-object'"));
}

TEST_F(TreeTest, DestroyingLinkTargetClearsTheLink) {
  ASSERT_TRUE(objects_->AddChild("be0", New("test-object")).ok());
  auto* dev = DynamicCast<testing::TestDevice>(*periph_->AddChild("d", New("test-device")));
  ASSERT_TRUE(dev->SetProperty("backend", "be0").ok());
  objects_->DeleteChild("be0");
  EXPECT_EQ(dev->backend, nullptr);
  EXPECT_EQ(*dev->GetProperty("backend"), "");
}

TEST_F(TreeTest, DestroyingLinkSourceReleasesTheTarget) {
  Object* be = *objects_->AddChild("be0", New("test-object"));
  Object* dev = *periph_->AddChild("d", New("test-device"));
  ASSERT_TRUE(dev->SetProperty("backend", "be0").ok());
  periph_->DeleteChild("d");
  EXPECT_FALSE(be->HasIncomingLinks());
}

TEST_F(TreeTest, SubtreeIsDestroyedWithItsParent) {
  Object* a = *periph_->AddChild("a", New("container"));
  Object* be = *a->AddChild("be", New("test-object"));
  Object* dev = *periph_->AddChild("d", New("test-device"));
  ASSERT_TRUE(dev->SetProperty("backend", "/machine/peripheral/a/be").ok());
  (void)be;
  periph_->DeleteChild("a");
  EXPECT_EQ(DynamicCast<testing::TestDevice>(dev)->backend, nullptr);
}

TEST_F(TreeTest, ObjectLinkingToItsOwnDescendantIsDestroyedCleanly) {
  auto* dev = DynamicCast<testing::TestDevice>(*periph_->AddChild("d", New("test-device")));
  ASSERT_TRUE(dev->AddChild("own", New("test-object")).ok());
  ASSERT_TRUE(dev->SetProperty("backend", "/machine/peripheral/d/own").ok());
  // Before the fix the child's destructor cleared the link on the half-destroyed parent
  // (a CHECK failure in debug builds, a write into a destroyed object otherwise).
  EXPECT_TRUE(periph_->DeleteChild("d"));
}

TEST_F(TreeTest, RemovingALinkInstancePropertyClearsTheField) {
  Object* be = *objects_->AddChild("be0", New("test-object"));
  auto* dev = DynamicCast<testing::TestDevice>(*periph_->AddChild("d", New("test-device")));
  ASSERT_TRUE(
      dev->AddInstanceProperty(LinkProp("extra", &testing::TestDevice::backend, "dyn")).ok());
  ASSERT_TRUE(dev->SetProperty("extra", "be0").ok());
  EXPECT_EQ(dev->backend, be);
  EXPECT_TRUE(dev->RemoveInstanceProperty("extra"));
  EXPECT_EQ(dev->backend, nullptr);
  EXPECT_FALSE(be->HasIncomingLinks());
}

TEST_F(TreeTest, AmbiguousLinkValueSaysSo) {
  ASSERT_TRUE(periph_->AddChild("be", New("test-object")).ok());
  ASSERT_TRUE(objects_->AddChild("be", New("test-object")).ok());
  Object* dev = *periph_->AddChild("d", New("test-device"));
  absl::Status s = dev->SetProperty("backend", "be");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("path 'be' is ambiguous"));
}

TEST(ObjectTest, BorrowedChildLeavesTreeWhenDestroyed) {
  auto root = NewRoot();
  {
    auto owned = New("container");
    ASSERT_TRUE(root->AddBorrowedChild("borrowed", owned.get()).ok());
    EXPECT_EQ(owned->CanonicalPath(), "/borrowed");
  }
  EXPECT_EQ(root->FindChild("borrowed"), nullptr);
}

}  // namespace
}  // namespace vdev::qom
