#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <functional>
#include <cstring>

#include "core/error.h"

namespace dsv4::tok {

void PairTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Entry> old = std::move(slots_);
  slots_.assign(cap, Entry{kEmpty, 0, 0});
  mask_ = cap - 1;
  size_ = 0;
  for (const Entry& e : old) {
    if (e.key != kEmpty) insert_or_assign(int32_t(e.key >> 32), int32_t(uint32_t(e.key)), e.rank, e.merged);
  }
}

void PairTable::grow() { reserve(std::max<size_t>(16, size_ * 2 + 2)); }

void PairTable::insert_or_assign(int32_t a, int32_t b, uint32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  const uint64_t key = make_key(a, b);
  for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
    Entry& e = slots_[i];
    if (e.key == key) {
      e.rank = rank;
      e.merged = merged;
      return;
    }
    if (e.key == kEmpty) {
      e = Entry{key, rank, merged};
      ++size_;
      return;
    }
  }
}

namespace {

// Per-thread word -> ids cache: direct-mapped, one cache line per slot, no locks and no
// allocation after the first use. Words recur constantly in real text.
struct alignas(64) CacheSlot {
  static constexpr size_t kMaxKey = 22, kMaxIds = 8;
  uint64_t hash = 0;  // 0 marks an empty slot
  uint8_t klen = 0;
  uint8_t nids = 0;
  char key[kMaxKey];
  int32_t ids[kMaxIds];
};
static_assert(sizeof(CacheSlot) == 64);

constexpr size_t kCacheSlots = size_t{1} << 14;  // 1 MiB per thread and tokenizer
constexpr size_t kCachesPerThread = 4;            // tokenizers cached at once on one thread

struct ThreadCache {
  uint64_t owner = 0;
  std::vector<CacheSlot> slots;
};

CacheSlot* cache_slots(uint64_t owner) {
  thread_local std::array<ThreadCache, kCachesPerThread> caches;
  thread_local size_t victim = 0;
  for (ThreadCache& c : caches) {
    if (c.owner == owner) return c.slots.data();
  }
  ThreadCache& c = caches[victim++ % kCachesPerThread];
  c.owner = owner;
  c.slots.assign(kCacheSlots, CacheSlot{});
  return c.slots.data();
}

std::atomic<uint64_t> g_next_owner{1};

// Min-queue of (rank << 32 | pos) keys for long words: a radix heap, valid while no key below
// the last popped one is pushed (broken() reports when that happened).
class RadixQueue {
 public:
  void clear() {
    for (auto& b : buckets_) b.clear();
    last_ = 0;
    size_ = 0;
    broken_ = false;
  }
  bool empty() const { return size_ == 0; }
  bool broken() const { return broken_; }
  void push(uint64_t k) {
    if (k < last_) {
      broken_ = true;
      return;
    }
    buckets_[bucket(k)].push_back(k);
    ++size_;
  }
  uint64_t pop() {
    if (buckets_[0].empty()) {
      size_t i = 1;
      while (buckets_[i].empty()) ++i;
      std::vector<uint64_t>& b = buckets_[i];
      last_ = *std::min_element(b.begin(), b.end());
      for (uint64_t k : b) buckets_[bucket(k)].push_back(k);  // all land in buckets below i
      b.clear();
    }
    const uint64_t k = buckets_[0].back();
    buckets_[0].pop_back();
    --size_;
    return k;
  }

 private:
  size_t bucket(uint64_t k) const { return k == last_ ? 0 : 64 - static_cast<size_t>(std::countl_zero(k ^ last_)); }
  std::array<std::vector<uint64_t>, 65> buckets_;
  uint64_t last_ = 0;
  size_t size_ = 0;
  bool broken_ = false;
};

// The general min-queue (std heap), for merge lists that break the radix heap's rule.
class BinaryQueue {
 public:
  void clear() { heap_.clear(); }
  bool empty() const { return heap_.empty(); }
  bool broken() const { return false; }
  void push(uint64_t k) {
    heap_.push_back(k);
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
  }
  uint64_t pop() {
    std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
    const uint64_t k = heap_.back();
    heap_.pop_back();
    return k;
  }

 private:
  std::vector<uint64_t> heap_;
};

uint64_t hash_word(std::string_view w) {
  // FNV-1a; words are short, and this inlines.
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : w) h = (h ^ c) * 0x100000001b3ull;
  return h | 1;
}

}  // namespace

BpeModel::BpeModel() : cache_owner_(g_next_owner.fetch_add(1)) { byte_id.fill(-1); }

int32_t BpeModel::id_of_byte(unsigned char b) const {
  const int32_t id = byte_id[b];
  if (id >= 0) return id;
  if (unk_id >= 0) return unk_id;
  fail("tokenizer: byte 0x{:02x} has no token in the vocabulary and there is no unk_token", b);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() == 1) {
    out.push_back(id_of_byte(static_cast<unsigned char>(word[0])));
    return;
  }
  if (ignore_merges) {
    if (auto it = raw_vocab.find(word); it != raw_vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > CacheSlot::kMaxKey) {
    merge_word(word, out);
    return;
  }
  const uint64_t h = hash_word(word);
  CacheSlot& slot = cache_slots(cache_owner_)[(h >> 17) & (kCacheSlots - 1)];
  if (slot.hash == h && slot.klen == word.size() && std::memcmp(slot.key, word.data(), word.size()) == 0) {
    out.insert(out.end(), slot.ids, slot.ids + slot.nids);
    return;
  }
  const size_t first = out.size();
  merge_word(word, out);
  const size_t n = out.size() - first;
  if (n <= CacheSlot::kMaxIds) {
    slot.hash = h;
    slot.klen = static_cast<uint8_t>(word.size());
    slot.nids = static_cast<uint8_t>(n);
    std::memcpy(slot.key, word.data(), word.size());
    std::memcpy(slot.ids, out.data() + first, n * sizeof(int32_t));
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  // Both paths apply, at every step, the lowest-ranked adjacent pair, leftmost among equals —
  // the order HF's heap produces. Short words scan an array; long ones use a heap.
  constexpr uint32_t kNone = UINT32_MAX;
  const int32_t n = static_cast<int32_t>(word.size());
  if (n <= 64) {
    struct Part {
      int32_t id;
      uint32_t rank;   // rank of the pair (this, next); kNone if none
      int32_t merged;  // id that pair merges into
    };
    Part parts[64];
    const auto set_pair = [&](int32_t i, int32_t count) {
      const PairTable::Entry* e = i + 1 < count ? merges.find(parts[i].id, parts[i + 1].id) : nullptr;
      parts[i].rank = e ? e->rank : kNone;
      parts[i].merged = e ? e->merged : -1;
    };
    for (int32_t i = 0; i < n; ++i) parts[i].id = id_of_byte(static_cast<unsigned char>(word[i]));
    for (int32_t i = 0; i < n; ++i) set_pair(i, n);
    int32_t count = n;
    for (;;) {
      int32_t best = -1;
      uint32_t best_rank = kNone;
      for (int32_t i = 0; i + 1 < count; ++i) {
        if (parts[i].rank < best_rank) {
          best_rank = parts[i].rank;
          best = i;
        }
      }
      if (best < 0) break;
      parts[best].id = parts[best].merged;
      std::memmove(&parts[best + 1], &parts[best + 2], sizeof(Part) * static_cast<size_t>(count - best - 2));
      --count;
      set_pair(best, count);
      if (best > 0) set_pair(best - 1, count);
    }
    for (int32_t i = 0; i < count; ++i) out.push_back(parts[i].id);
    return;
  }

  // Trained merge lists only ever create pairs ranked after the merge that made them, so the
  // queue's minimum never decreases and a radix heap applies; any other file falls back to the
  // binary heap. Both give the same merges.
  thread_local RadixQueue radix;
  radix.clear();
  if (merge_long(word, radix, out)) return;
  thread_local BinaryQueue binary;
  binary.clear();
  merge_long(word, binary, out);
}

template <typename Queue>
bool BpeModel::merge_long(std::string_view word, Queue& queue, std::vector<int32_t>& out) const {
  constexpr uint32_t kNone = UINT32_MAX;
  struct Sym {
    int32_t id;    // -1 once merged into its left neighbour
    int32_t next;  // -1 at the end
    int32_t prev;
    uint32_t rank;  // current candidate for the pair (this, next), kNone if none
    int32_t merged;
  };
  thread_local std::vector<Sym> sym;  // scratch reused across calls
  const auto n = static_cast<int32_t>(word.size());
  sym.resize(static_cast<size_t>(n));
  const auto set_pair = [&](int32_t pos) {
    Sym& s = sym[pos];
    const PairTable::Entry* e = s.next >= 0 ? merges.find(s.id, sym[s.next].id) : nullptr;
    s.rank = e ? e->rank : kNone;
    s.merged = e ? e->merged : -1;
    if (e) queue.push((uint64_t{e->rank} << 32) | static_cast<uint32_t>(pos));
  };
  for (int32_t i = 0; i < n; ++i) {
    sym[i] = Sym{id_of_byte(static_cast<unsigned char>(word[i])), i + 1 < n ? i + 1 : -1, i - 1, kNone, -1};
  }
  for (int32_t i = 0; i + 1 < n; ++i) set_pair(i);
  while (!queue.empty()) {
    const uint64_t top = queue.pop();
    const auto pos = static_cast<int32_t>(top & 0xFFFFFFFFu);
    Sym& s = sym[pos];
    // Stale entry: the pair at pos changed since it was queued (a rank names one pair).
    if (s.id < 0 || s.rank != static_cast<uint32_t>(top >> 32)) continue;
    Sym& r = sym[s.next];
    s.id = s.merged;
    r.id = -1;
    s.next = r.next;
    if (r.next >= 0) sym[r.next].prev = pos;
    set_pair(pos);
    if (s.prev >= 0) set_pair(s.prev);
    if (queue.broken()) return false;
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
  return true;
}

}  // namespace dsv4::tok
