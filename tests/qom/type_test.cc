#include "qom/type.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "qom/object.h"
#include "tests/testing/test_types.h"

namespace vdev::qom {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TypeInfo Plain(std::string name, std::string parent, bool abstract = false) {
  TypeInfo t;
  t.name = std::move(name);
  t.parent = std::move(parent);
  t.abstract = abstract;
  if (!abstract) t.instance_init = [] { return std::make_unique<Object>(); };
  return t;
}

TEST(TypeRegistryTest, ParentClassInitRunsBeforeChild) {
  TypeRegistry r;
  std::vector<std::string> order;
  TypeInfo a = Plain("a", "object", true);
  // Each type's class runs every class_init of its chain; record those for "c" only.
  a.class_init = [&](ObjectClass& k) {
    if (k.type_name() == "c") order.push_back("a:c");
  };
  TypeInfo b = Plain("b", "a", true);
  b.class_init = [&](ObjectClass& k) {
    if (k.type_name() == "c") order.push_back("b:c");
  };
  TypeInfo c = Plain("c", "b");
  c.class_init = [&](ObjectClass& k) { order.push_back("c:" + k.type_name()); };
  // Registered child first: parents need not be registered yet.
  ASSERT_TRUE(r.Register(c).ok());
  ASSERT_TRUE(r.Register(b).ok());
  ASSERT_TRUE(r.Register(a).ok());
  ASSERT_TRUE(r.Lookup("c").ok());
  EXPECT_THAT(order, ElementsAre("a:c", "b:c", "c:c"));
}

TEST(TypeRegistryTest, DuplicateNameIsAnError) {
  TypeRegistry r;
  ASSERT_TRUE(r.Register(Plain("x", "object")).ok());
  absl::Status s = r.Register(Plain("x", "object"));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(s.message(), "type 'x' is already registered");
}

TEST(TypeRegistryTest, UnknownParentIsAnErrorAtLookup) {
  TypeRegistry r;
  ASSERT_TRUE(r.Register(Plain("orphan", "no-such-parent")).ok());
  auto t = r.Lookup("orphan");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.status().message(), "type 'orphan': parent type 'no-such-parent' not found");
  EXPECT_THAT(r.InitializeAll().message(), HasSubstr("orphan"));
}

TEST(TypeRegistryTest, CyclicParentsAreAnError) {
  TypeRegistry r;
  ASSERT_TRUE(r.Register(Plain("p", "q")).ok());
  ASSERT_TRUE(r.Register(Plain("q", "p")).ok());
  EXPECT_THAT(r.Lookup("p").status().message(), HasSubstr("cyclic"));
}

TEST(TypeRegistryTest, MalformedRegistrationsAreRejected) {
  TypeRegistry r;
  EXPECT_EQ(r.Register(Plain("", "object")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.Register(Plain("has space", "object")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.Register(Plain("noparent", "")).code(), absl::StatusCode::kInvalidArgument);
  TypeInfo no_ctor = Plain("noctor", "object");
  no_ctor.instance_init = nullptr;
  EXPECT_EQ(r.Register(no_ctor).code(), absl::StatusCode::kInvalidArgument);
}

TEST(TypeRegistryTest, InstantiatingAbstractTypeIsAnError) {
  TypeRegistry r;
  ASSERT_TRUE(r.Register(Plain("abs", "object", true)).ok());
  auto o = r.Create("abs");
  EXPECT_EQ(o.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(o.status().message(), "type 'abs' is abstract and cannot be instantiated");
  EXPECT_EQ(r.Create("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(TypeRegistryTest, DuplicatePropertyInClassInitBreaksTheType) {
  TypeRegistry r;
  TypeInfo t = Plain("dup-prop", "object");
  t.class_init = [](ObjectClass& k) {
    PropertyInfo p;
    p.name = "x";
    k.AddProperty(p);
    k.AddProperty(p);
  };
  ASSERT_TRUE(r.Register(t).ok());
  EXPECT_THAT(r.Lookup("dup-prop").status().message(), HasSubstr("property 'x' is declared twice"));
  EXPECT_EQ(r.Create("dup-prop").status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(TypeRegistryTest, BadDefaultOverrideFailsCreate) {
  TypeRegistry r;
  TypeInfo base = TypeInfoFor<testing::TestDevice>();
  base.parent = "object";  // a private registry has no "device"
  base.name = "tdev";
  base.class_init = [](ObjectClass& k) {
    k.AddProperty(Prop("u8", &testing::TestDevice::u8, uint8_t{0}, "a u8"));
  };
  TypeInfo sub = base;
  sub.name = "tdev-bad-default";
  sub.parent = "tdev";
  sub.class_init = [](ObjectClass& k) { k.SetPropertyDefault("u8", "300"); };
  TypeInfo unknown = base;
  unknown.name = "tdev-unknown-default";
  unknown.parent = "tdev";
  unknown.class_init = [](ObjectClass& k) { k.SetPropertyDefault("nope", "1"); };
  ASSERT_TRUE(r.Register(base).ok());
  ASSERT_TRUE(r.Register(sub).ok());
  ASSERT_TRUE(r.Register(unknown).ok());
  auto o = r.Create("tdev-bad-default");
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(o.status().message(),
              HasSubstr("default of property 'u8' of type 'tdev-bad-default': Parameter 'u8' "
                        "expects an integer in [0, 255], got '300'"));
  EXPECT_THAT(r.Lookup("tdev-unknown-default").status().message(),
              HasSubstr("default set for unknown property 'nope'"));
  EXPECT_TRUE(r.Create("tdev").ok());
}

TEST(TypeRegistryTest, InterfacesMustBeInterfaceTypes) {
  TypeRegistry r;
  ASSERT_TRUE(r.Register(Plain("iface", "interface", true)).ok());
  TypeInfo good = Plain("impl", "object");
  good.interfaces = {"iface"};
  TypeInfo bad = Plain("bad-impl", "object");
  bad.interfaces = {"container"};
  TypeInfo missing = Plain("missing-impl", "object");
  missing.interfaces = {"no-iface"};
  ASSERT_TRUE(r.Register(good).ok());
  ASSERT_TRUE(r.Register(bad).ok());
  ASSERT_TRUE(r.Register(missing).ok());
  const TypeImpl* impl = *r.Lookup("impl");
  EXPECT_TRUE(impl->IsA(*r.Lookup("iface")));
  EXPECT_THAT(r.Lookup("bad-impl").status().message(), HasSubstr("is not an interface type"));
  EXPECT_THAT(r.Lookup("missing-impl").status().message(),
              HasSubstr("interface 'no-iface' not found"));
}

TEST(TypeRegistryTest, TypesOfListsSubtypesAndImplementers) {
  TypeRegistry r;
  ASSERT_TRUE(r.Register(Plain("iface", "interface", true)).ok());
  ASSERT_TRUE(r.Register(Plain("base", "object", true)).ok());
  ASSERT_TRUE(r.Register(Plain("leaf-b", "base")).ok());
  ASSERT_TRUE(r.Register(Plain("leaf-a", "base")).ok());
  TypeInfo other = Plain("other", "object");
  other.interfaces = {"iface"};
  ASSERT_TRUE(r.Register(other).ok());
  auto names = [](const std::vector<const TypeImpl*>& v) {
    std::vector<std::string> out;
    for (auto* t : v) out.push_back(t->name());
    return out;
  };
  EXPECT_THAT(names(r.TypesOf("base")), ElementsAre("leaf-a", "leaf-b"));
  EXPECT_THAT(names(r.TypesOf("base", true)), ElementsAre("base", "leaf-a", "leaf-b"));
  EXPECT_THAT(names(r.TypesOf("iface")), ElementsAre("other"));
}

TEST(TypeRegistryTest, InstanceInitWithWrongCxxClassIsRejected) {
  TypeRegistry r;
  TypeInfo t = TypeInfoFor<testing::TestObject>();
  t.name = "liar";
  t.parent = "object";
  t.interfaces.clear();
  t.instance_init = [] { return std::make_unique<Object>(); };  // not a TestObject
  ASSERT_TRUE(r.Register(t).ok());
  EXPECT_EQ(r.Create("liar").status().code(), absl::StatusCode::kInternal);
}

TEST(TypeRegistryTest, BatchCommitsAllOrNothing) {
  TypeRegistry r;
  r.BeginBatch();
  ASSERT_TRUE(r.Register(Plain("p1", "object")).ok());
  ASSERT_TRUE(r.Register(Plain("p2", "no-parent")).ok());
  EXPECT_EQ(r.Find("p1"), nullptr);  // queued, not visible
  EXPECT_FALSE(r.CommitBatch().ok());
  EXPECT_EQ(r.Find("p1"), nullptr);  // rolled back
  EXPECT_EQ(r.Lookup("p2").status().code(), absl::StatusCode::kNotFound);

  r.BeginBatch();
  ASSERT_TRUE(r.Register(Plain("p1", "object")).ok());
  ASSERT_TRUE(r.CommitBatch().ok());
  EXPECT_NE(r.Find("p1"), nullptr);
  EXPECT_THAT(r.last_batch(), ElementsAre("p1"));

  r.BeginBatch();
  ASSERT_TRUE(r.Register(Plain("p3", "object")).ok());
  r.AbortBatch();
  EXPECT_EQ(r.Find("p3"), nullptr);
}

TEST(TypeRegistryTest, RollbackResetsOlderTypesInitialisedAgainstTheBatch) {
  TypeRegistry r;
  // "older" exists before the batch, waiting for a parent the batch supplies.
  ASSERT_TRUE(r.Register(Plain("older", "from-batch")).ok());
  r.BeginBatch();
  ASSERT_TRUE(r.Register(Plain("from-batch", "object")).ok());
  ASSERT_TRUE(r.Register(Plain("uses-older", "older")).ok());  // initialises "older"
  ASSERT_TRUE(r.Register(Plain("broken", "nowhere")).ok());
  EXPECT_FALSE(r.CommitBatch().ok());
  // "older" must not keep pointers into the rolled-back "from-batch".
  auto older = r.Lookup("older");
  EXPECT_EQ(older.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(older.status().message(), HasSubstr("parent type 'from-batch' not found"));
}

TEST(TypeRegistryTest, TypeListingItselfAsInterfaceIsAnError) {
  TypeRegistry r;
  TypeInfo t = Plain("selfish", "object");
  t.interfaces = {"selfish"};
  ASSERT_TRUE(r.Register(t).ok());
  EXPECT_THAT(r.Lookup("selfish").status().message(), HasSubstr("is cyclic"));
}

TEST(TypeRegistryTest, ImplementersAreNotInterfaces) {
  TypeRegistry r;
  ASSERT_TRUE(r.Register(Plain("iface", "interface", true)).ok());
  TypeInfo impl = Plain("impl", "object");
  impl.interfaces = {"iface"};
  ASSERT_TRUE(r.Register(impl).ok());
  const TypeImpl* t = *r.Lookup("impl");
  EXPECT_FALSE(t->is_interface());
  EXPECT_FALSE(t->IsA(*r.Lookup("interface")));
  EXPECT_TRUE(t->IsA(*r.Lookup("iface")));
  EXPECT_TRUE((*r.Lookup("iface"))->IsA(*r.Lookup("interface")));
}

TEST(TypeRegistryTest, GlobalRegistryHasNoBrokenTypes) {
  EXPECT_TRUE(TypeRegistry::Global().InitializeAll().ok())
      << TypeRegistry::Global().InitializeAll().message();
}

TEST(DynamicCastTest, HonoursHierarchy) {
  auto obj = TypeRegistry::Global().Create("test-sub-device");
  ASSERT_TRUE(obj.ok()) << obj.status();
  Object* o = obj->get();
  EXPECT_NE(DynamicCast<testing::TestSubDevice>(o), nullptr);
  EXPECT_NE(DynamicCast<testing::TestDevice>(o), nullptr);
  EXPECT_NE(DynamicCast<DeviceState>(o), nullptr);
  EXPECT_EQ(DynamicCast<Machine>(o), nullptr);
  EXPECT_EQ(DynamicCast<testing::TestSubDevice>(static_cast<Object*>(nullptr)), nullptr);
  EXPECT_TRUE(o->IsA("device"));
  EXPECT_FALSE(o->IsA("bus"));
}

TEST(DynamicCastTest, HonoursInterfaces) {
  auto host = TypeRegistry::Global().Create("test-bus-host");
  ASSERT_TRUE(host.ok());
  HotplugHandler* h = DynamicCast<HotplugHandler>(host->get());
  EXPECT_NE(h, nullptr);
  EXPECT_EQ(static_cast<void*>(h), static_cast<void*>(static_cast<HotplugHandler*>(
                                       static_cast<testing::TestBusHost*>(host->get()))));
  auto dev = TypeRegistry::Global().Create("test-device");
  EXPECT_EQ(DynamicCast<HotplugHandler>(dev->get()), nullptr);
}

TEST(TypeInfoForTest, DerivesRegistrationFromClassMembers) {
  TypeInfo t = TypeInfoFor<testing::TestBusHost>();
  EXPECT_EQ(t.name, "test-bus-host");
  EXPECT_EQ(t.parent, "sys-bus-device");
  EXPECT_FALSE(t.abstract);
  EXPECT_THAT(t.interfaces, ElementsAre("hotplug-handler"));
  EXPECT_TRUE(TypeInfoFor<DeviceState>().abstract);
  EXPECT_FALSE(TypeInfoFor<SystemBus>().abstract);  // kAbstract of the parent is not inherited
}

}  // namespace
}  // namespace vdev::qom
