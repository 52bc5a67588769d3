// Scheduler::check_invariants(): everything the scheduler and the block manager promise, checked
// from scratch. Tests call it after every step; it is O(blocks + sequences).
#include <algorithm>
#include <tuple>

#include "sched/scheduler.h"
#include "util/check.h"

namespace loom {

void Scheduler::check_invariants() const {
  blocks_.check_invariants();
  const BlockPool& pool = blocks_.device();
  const HostPool& host = blocks_.host();

  // Exact reference counts: every reference is one entry of one running block table.
  std::vector<int32_t> refs(static_cast<size_t>(pool.num_total()), 0);
  std::vector<uint8_t> host_owner(static_cast<size_t>(host.num_total()), 0);
  std::array<std::array<int32_t, kNumTiers>, 4> counted{};
  int32_t num_waiting = 0, num_batch_waiting = 0, num_running = 0, num_swapped = 0;
  int64_t waiting_tokens = 0, batch_waiting_tokens = 0;
  int32_t num_members = 0;
  for (const auto& [id, e] : entries_) {
    const Sequence& s = e.seq;
    LOOM_CHECK(s.id == id && e.key.id == id);
    LOOM_CHECK(s.num_prompt_tokens >= 1 && s.num_tokens() >= s.num_prompt_tokens);
    LOOM_CHECK((s.num_computed_tokens >= 0 && s.num_computed_tokens < s.num_tokens()) ||
                   s.status == SeqStatus::kFinished,
               "seq %lld: %d computed of %d tokens", (long long)id, s.num_computed_tokens,
               s.num_tokens());
    ++counted[static_cast<size_t>(s.status)]
             [static_cast<size_t>(tier_of_priority(s.request.priority))];
    num_members += e.batch_member ? 1 : 0;
    switch (s.status) {
      case SeqStatus::kWaiting: {
        LOOM_CHECK(s.block_table.empty() && s.host_blocks.empty() && s.num_computed_tokens == 0,
                   "waiting seq %lld holds blocks", (long long)id);
        const WaitingQueue& q = e.batch_member ? batch_waiting_ : waiting_;
        LOOM_CHECK(q.contains(e.key), "waiting seq %lld not queued", (long long)id);
        (e.batch_member ? num_batch_waiting : num_waiting) += 1;
        (e.batch_member ? batch_waiting_tokens : waiting_tokens) += s.num_tokens();
        break;
      }
      case SeqStatus::kRunning: {
        ++num_running;
        LOOM_CHECK(s.host_blocks.empty());
        LOOM_CHECK(
            static_cast<int32_t>(s.block_table.size()) >= blocks_.blocks_for(s.num_computed_tokens),
            "seq %lld: %zu blocks do not cover %d computed tokens", (long long)id,
            s.block_table.size(), s.num_computed_tokens);
        LOOM_CHECK(static_cast<int32_t>(s.block_table.size()) <= blocks_.blocks_for(s.num_tokens()),
                   "seq %lld holds more blocks than its tokens need", (long long)id);
        LOOM_CHECK(std::find(running_.begin(), running_.end(), &e) != running_.end());
        for (BlockId b : s.block_table) {
          LOOM_CHECK(pool.valid(b));
          ++refs[static_cast<size_t>(b)];
        }
        break;
      }
      case SeqStatus::kSwapped:
        ++num_swapped;
        LOOM_CHECK(s.block_table.empty());
        LOOM_CHECK(static_cast<int32_t>(s.host_blocks.size()) ==
                   blocks_.blocks_for(s.num_computed_tokens));
        LOOM_CHECK(std::find(swapped_.begin(), swapped_.end(), &e) != swapped_.end());
        for (BlockId b : s.host_blocks) {
          LOOM_CHECK(host.in_use(b) && !host_owner[static_cast<size_t>(b)],
                     "host block %d owned twice or free", b);
          host_owner[static_cast<size_t>(b)] = 1;
        }
        break;
      case SeqStatus::kFinished:
        LOOM_CHECK(s.block_table.empty() && s.host_blocks.empty());
        break;
    }
  }
  for (int32_t b = 0; b < pool.num_total(); ++b) {
    LOOM_CHECK(refs[static_cast<size_t>(b)] == pool.ref_count(b),
               "block %d: ref_count %d but %d table entries", b, pool.ref_count(b),
               refs[static_cast<size_t>(b)]);
  }
  for (BlockId b : host_blocks_to_free_) {
    LOOM_CHECK(host.in_use(b) && !host_owner[static_cast<size_t>(b)]);
    host_owner[static_cast<size_t>(b)] = 1;
  }
  int32_t host_owned = 0;
  for (uint8_t o : host_owner) host_owned += o;
  LOOM_CHECK(host_owned == host.num_used(), "host blocks: %d owned, %d in use", host_owned,
             host.num_used());

  LOOM_CHECK(num_waiting == waiting_.size() && waiting_tokens == waiting_.num_tokens());
  LOOM_CHECK(num_batch_waiting == batch_waiting_.size() &&
             batch_waiting_tokens == batch_waiting_.num_tokens());
  LOOM_CHECK(num_running == static_cast<int32_t>(running_.size()));
  LOOM_CHECK(num_swapped == static_cast<int32_t>(swapped_.size()));
  LOOM_CHECK(num_running <= config_.max_num_seqs, "%d running > max_num_seqs %d", num_running,
             config_.max_num_seqs);
  LOOM_CHECK(num_members == num_batch_unfinished_);
  LOOM_CHECK(counted == num_by_status_tier_, "per-status counters drifted");
  auto before = [](const Entry* a, const Entry* b) {
    const Request& x = a->seq.request;
    const Request& y = b->seq.request;
    return std::tie(x.priority, x.arrival_us, a->seq.id) <
           std::tie(y.priority, y.arrival_us, b->seq.id);
  };
  LOOM_CHECK(std::is_sorted(running_.begin(), running_.end(), before));
  LOOM_CHECK(std::is_sorted(swapped_.begin(), swapped_.end(), before));
}

}  // namespace loom
