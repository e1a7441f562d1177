#pragma once
// BPE merge engine over raw bytes: symbols in a linked list, candidate pairs in a min-heap
// ordered by (merge rank, position) — the same order HF tokenizers applies merges in.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dsv4::tok {

// Open-addressing map from an id pair to (merge rank, merged id).
class PairTable {
 public:
  struct Entry {
    uint64_t key;
    uint32_t rank;
    int32_t merged;
  };
  void reserve(size_t n);
  // Later duplicates win, as in HF (its merges end up in a HashMap built in order).
  void insert_or_assign(int32_t a, int32_t b, uint32_t rank, int32_t merged);
  const Entry* find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = make_key(a, b);
    for (size_t i = hash(key) & mask_;; i = (i + 1) & mask_) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static uint64_t make_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  static size_t hash(uint64_t k) { return size_t((k * 0x9E3779B97F4A7C15ull) >> 29); }
  void grow();
  std::vector<Entry> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, SvHash, std::equal_to<>>;

class BpeModel {
 public:
  std::array<int32_t, 256> byte_id{};  // id of each single-byte token, -1 if absent
  PairTable merges;
  StringIdMap raw_vocab;                // raw bytes -> id, used by ignore_merges
  bool ignore_merges = false;
  int32_t unk_id = -1;

  BpeModel();

  // Appends the ids of one pre-tokenized piece (raw bytes, non-empty).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

 private:
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  template <typename Queue>
  bool merge_long(std::string_view word, Queue& queue, std::vector<int32_t>& out) const;
  int32_t id_of_byte(unsigned char b) const;

  uint64_t cache_owner_;  // distinguishes this model in the per-thread word caches
};

}  // namespace dsv4::tok
