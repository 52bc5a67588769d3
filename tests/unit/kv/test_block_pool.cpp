#include <gtest/gtest.h>

#include <vector>

#include "kv/block_hash.h"
#include "kv/block_manager.h"
#include "kv/block_pool.h"
#include "kv/host_pool.h"
#include "kv/prefix_cache.h"

namespace loom {
namespace {

void expect_counts(const BlockPool& p, int32_t free, int32_t used, int32_t cached) {
  p.check_invariants();
  EXPECT_EQ(p.num_free(), free);
  EXPECT_EQ(p.num_used(), used);
  EXPECT_EQ(p.num_cached(), cached);
  EXPECT_EQ(p.num_free() + p.num_used() + p.num_cached(), p.num_total());
}

TEST(BlockPool, AllocateUntilEmptyThenNothingChanges) {
  BlockPool p(3);
  expect_counts(p, 3, 0, 0);
  for (BlockId want : {0, 1, 2}) {
    auto got = p.allocate();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->block, want);
    EXPECT_FALSE(got->evicted);
  }
  expect_counts(p, 0, 3, 0);
  EXPECT_FALSE(p.can_allocate(1));
  EXPECT_FALSE(p.allocate().has_value());
  expect_counts(p, 0, 3, 0);
  p.incref(1);
  p.decref(1);
  expect_counts(p, 0, 3, 0);
  p.decref(1);
  expect_counts(p, 1, 2, 0);
  EXPECT_EQ(p.allocate()->block, 1);  // the freed block is reused
}

TEST(BlockPool, RegisteredBlocksAreCachedInLruOrderAndHitsLeaveFromTheMiddle) {
  BlockPool p(4);
  std::vector<BlockId> b;
  for (int i = 0; i < 4; ++i) b.push_back(p.allocate()->block);
  for (BlockId x : b) p.set_registered(x, true);
  p.decref(b[2]);
  p.decref(b[0]);
  p.decref(b[3]);
  p.decref(b[1]);  // LRU: 2, 0, 3, 1
  expect_counts(p, 0, 0, 4);
  p.incref(b[3]);  // a cache hit takes it out of the middle of the list
  expect_counts(p, 0, 1, 3);
  std::vector<BlockId> evicted;
  for (int i = 0; i < 3; ++i) {
    auto got = p.allocate();
    ASSERT_TRUE(got.has_value());
    EXPECT_TRUE(got->evicted);
    EXPECT_FALSE(p.registered(got->block));
    evicted.push_back(got->block);
  }
  EXPECT_EQ(evicted, (std::vector<BlockId>{b[2], b[0], b[1]}));
  expect_counts(p, 0, 4, 0);
}

TEST(BlockPool, FreeBlocksGoBeforeCachedOnes) {
  BlockPool p(2);
  const BlockId a = p.allocate()->block;
  const BlockId c = p.allocate()->block;
  p.set_registered(a, true);
  p.decref(a);  // cached
  p.decref(c);  // free
  auto got = p.allocate();
  EXPECT_EQ(got->block, c);
  EXPECT_FALSE(got->evicted);
  EXPECT_TRUE(p.registered(a));
  p.set_registered(a, false);  // unregistering a cached block frees it
  expect_counts(p, 1, 1, 0);
}

TEST(HostPool, AllocateIsAllOrNothing) {
  HostPool h(3);
  std::vector<BlockId> out;
  EXPECT_TRUE(h.allocate(2, out));
  EXPECT_EQ(out.size(), 2u);
  EXPECT_FALSE(h.allocate(2, out));
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(h.num_used(), 2);
  for (BlockId b : out) h.free(b);
  h.check_invariants();
  EXPECT_EQ(h.num_free(), 3);
}

TEST(BlockHash, ChainsOverParentAndTokens) {
  const std::vector<TokenId> t1 = {1, 2, 3, 4};
  const std::vector<TokenId> t2 = {1, 2, 3, 5};
  const uint64_t h1 = hash_block(kRootBlockHash, t1);
  EXPECT_EQ(h1, hash_block(kRootBlockHash, t1));
  EXPECT_NE(h1, hash_block(kRootBlockHash, t2));
  EXPECT_NE(hash_block(h1, t1), hash_block(kRootBlockHash, t1));
  const std::vector<TokenId> swapped = {2, 1, 3, 4};
  EXPECT_NE(h1, hash_block(kRootBlockHash, swapped));
}

TEST(PrefixCache, CollisionReadsAsAMiss) {
  BlockPool pool(2);
  PrefixCache cache(2, 4);
  const std::vector<TokenId> tokens = {1, 2, 3, 4};
  const std::vector<TokenId> other = {9, 9, 9, 9};
  const BlockId b = pool.allocate()->block;
  ASSERT_TRUE(cache.insert(b, /*hash=*/42, kRootBlockHash, tokens));
  pool.set_registered(b, true);
  EXPECT_EQ(cache.lookup(42, kRootBlockHash, tokens), b);
  EXPECT_EQ(cache.lookup(42, kRootBlockHash, other), kNoBlock);  // same hash, other tokens
  EXPECT_EQ(cache.lookup(42, 7, tokens), kNoBlock);              // same hash, other parent
  const BlockId c = pool.allocate()->block;
  EXPECT_FALSE(cache.insert(c, 42, kRootBlockHash, other));  // hash taken: stays unregistered
  cache.check_invariants(pool);
  cache.erase(b);
  pool.set_registered(b, false);
  EXPECT_EQ(cache.lookup(42, kRootBlockHash, tokens), kNoBlock);
  cache.check_invariants(pool);
}

TEST(BlockManager, MatchShareGrowReleaseAndEviction) {
  BlockManager m(4, 0, 4, true);
  const std::vector<TokenId> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  std::vector<uint64_t> hashes;
  m.extend_hashes(tokens, hashes);
  EXPECT_EQ(hashes.size(), 2u);  // 2 full blocks of 4
  std::vector<BlockId> a;
  ASSERT_TRUE(m.grow(a, 3));
  m.register_blocks(a, tokens, hashes, 0, 2);
  EXPECT_EQ(m.prefix_cache().size(), 2);
  std::vector<BlockId> hits;
  EXPECT_EQ(m.match_prefix(tokens, hashes, 2, hits), 2);
  EXPECT_EQ(hits, (std::vector<BlockId>{a[0], a[1]}));
  EXPECT_EQ(m.num_unreferenced(hits), 0);
  std::vector<BlockId> b;
  EXPECT_FALSE(m.grow(b, 2));  // 1 block left: nothing taken
  EXPECT_TRUE(b.empty());
  m.share(hits, b);
  EXPECT_EQ(m.device().ref_count(a[0]), 2);
  m.release(a);
  m.check_invariants();
  EXPECT_EQ(m.device().num_used(), 2);
  m.release(b);
  EXPECT_EQ(m.device().num_cached(), 2);
  EXPECT_EQ(m.device().num_free(), 2);
  std::vector<BlockId> c;
  ASSERT_TRUE(m.grow(c, 4));  // takes the 2 free blocks, then evicts both cached ones
  EXPECT_EQ(m.prefix_cache().size(), 0);
  hits.clear();
  EXPECT_EQ(m.match_prefix(tokens, hashes, 2, hits), 0);
  m.release(c);
  m.check_invariants();
  EXPECT_EQ(m.device().num_free(), 4);
}

TEST(BlockManager, CachingOffNeverMatches) {
  BlockManager m(4, 0, 4, false);
  const std::vector<TokenId> tokens = {1, 2, 3, 4, 5};
  std::vector<uint64_t> hashes;
  m.extend_hashes(tokens, hashes);
  std::vector<BlockId> a;
  ASSERT_TRUE(m.grow(a, 2));
  m.register_blocks(a, tokens, hashes, 0, 1);
  std::vector<BlockId> hits;
  EXPECT_EQ(m.match_prefix(tokens, hashes, 1, hits), 0);
  m.release(a);
  EXPECT_EQ(m.device().num_cached(), 0);
}

}  // namespace
}  // namespace loom
