// examples/kv_server/tests/keyspace_test.cpp: a shard's keyspace (keyspace.hpp): lazy and
// active expiry, the stale-deadline rebuild, and AOF replay (torn tail, corruption, PXAT).
#include "keyspace.hpp"
#include "resp.hpp"

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <string>

TEST_CASE("set, find, erase and lazy expiry") {
  kv::keyspace ks;
  REQUIRE(ks.set("a", "1", 0, 100) != nullptr);
  REQUIRE(ks.set("b", "2", 150, 100) != nullptr);
  CHECK(ks.set("c", "3", 100, 100) == nullptr); // due already: not stored
  CHECK(ks.size() == 2);
  CHECK(ks.expires() == 1);
  REQUIRE(ks.find("b", 149) != nullptr);
  CHECK(ks.find("b", 149)->value == "2");
  CHECK(ks.find("b", 150) == nullptr); // expired: removed on access
  CHECK(ks.size() == 1);
  CHECK(ks.expires() == 0);
  CHECK(ks.erase("a", 200));
  CHECK_FALSE(ks.erase("a", 200));
  CHECK(ks.size() == 0);
}

TEST_CASE("erasing an expired key reports no live key") {
  kv::keyspace ks;
  ks.set("k", "v", 10, 0);
  CHECK_FALSE(ks.erase("k", 10));
  CHECK(ks.size() == 0);
}

TEST_CASE("expire_due sweeps keys nobody reads, in deadline order, bounded") {
  kv::keyspace ks;
  for (int i = 0; i < 100; ++i) {
    ks.set(fmt::format("k{}", i), "v", 1000 + i, 0);
  }
  ks.set("forever", "v", 0, 0);
  ks.set("k5", "again", 5000, 0);        // a new deadline: the old heap entry is stale
  CHECK(ks.expire_due(1009, 1000) == 9); // k0..k9 but not k5
  CHECK(ks.find("k5", 1009) != nullptr);
  CHECK(ks.expire_due(2000, 50) == 50); // bounded
  CHECK(ks.expire_due(2000, 1000) == 40);
  CHECK(ks.size() == 2);
  CHECK(ks.expires() == 1);
  CHECK(ks.expire_due(5000, 1000) == 1);
  CHECK(ks.size() == 1);
}

TEST_CASE("stale deadlines do not pile up when a key's TTL is renewed forever") {
  kv::keyspace ks;
  for (int i = 0; i < 100000; ++i) {
    ks.set("k", "v", 1'000'000 + i, 0);
  }
  CHECK(ks.expires() == 1);
  CHECK(ks.expire_due(1'000'000 + 99'998, 1'000'000) == 0);
  CHECK(ks.expire_due(1'000'000 + 99'999, 1'000'000) == 1);
}

TEST_CASE("replay rebuilds, honours absolute expiry, and stops at a torn tail") {
  std::string aof;
  kv::append_set_record(aof, "a", "1", 0);
  kv::append_set_record(aof, "b", "2", 500); // expired at load time
  kv::append_set_record(aof, "c", "3", 5000);
  kv::append_del_record(aof, "a");
  kv::append_set_record(aof, "a", "4", 0);
  const std::size_t complete = aof.size();
  std::string torn = aof;
  kv::append_set_record(torn, "d", "5", 0);
  torn.resize(torn.size() - 3);

  kv::keyspace ks;
  std::string data = torn;
  const auto r = kv::replay(data, ks, 1000);
  CHECK(r.error.empty());
  CHECK(r.records == 5);
  CHECK(r.torn_tail);
  CHECK(r.valid_bytes == complete);
  CHECK(ks.size() == 2);
  CHECK(ks.find("a", 1000)->value == "4");
  CHECK(ks.find("c", 1000)->expire_at == 5000);
  CHECK(ks.find("b", 1000) == nullptr);

  kv::keyspace again;
  data = aof;
  const auto whole = kv::replay(data, again, 1000);
  CHECK_FALSE(whole.torn_tail);
  CHECK(whole.valid_bytes == aof.size());
}

TEST_CASE("replay refuses a corrupt file and says where") {
  std::string aof;
  kv::append_set_record(aof, "a", "1", 0);
  const std::size_t at = aof.size();
  kv::append_command(aof, {"INCR", "a"});
  kv::keyspace ks;
  std::string data = aof;
  auto r = kv::replay(data, ks, 0);
  CHECK(r.error == fmt::format("offset {}: unknown record 'INCR'", at));
  CHECK(r.records == 1);

  data = "*1\r\n$x\r\n";
  r = kv::replay(data, ks, 0);
  CHECK(r.error == "offset 0: Protocol error: invalid bulk length");
  data.clear();
  kv::append_command(data, {"SET", "k", "v", "PXAT", "soon"});
  CHECK(kv::replay(data, ks, 0).error == "offset 0: malformed SET record");
}

TEST_CASE("a snapshot replays to the same keys") {
  kv::keyspace ks;
  for (int i = 0; i < 100; ++i) {
    ks.set(fmt::format("k{}", i), std::string(i, 'x'), i % 3 == 0 ? 10'000 + i : 0, 0);
  }
  std::string snap;
  kv::append_snapshot(snap, ks);
  kv::keyspace back;
  const auto r = kv::replay(snap, back, 0);
  CHECK(r.records == 100);
  CHECK(back.size() == 100);
  CHECK(back.expires() == ks.expires());
  CHECK(back.find("k99", 0)->value == std::string(99, 'x'));
  CHECK(back.find("k99", 0)->expire_at == 10'099);
}
