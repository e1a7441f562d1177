#pragma once
// Rows of latent KV in their compact form (architecture.md §5.3): the nope dims as e4m3 codes with one E8M0
// scale per 64, the RoPE dims as fp32. Lossless because the current revision already rounds the
// nope dims onto that grid; with the round-trip off, rows are kept in fp32 instead.
//
// Rollback (SequenceState::mark, architecture.md §5.4): a marked KVRows journals the old bytes of each
// row the first time it is overwritten or dropped, so undoing N tokens costs the rows they actually
// replaced (at most the window for the ring) and nothing for appended rows, which rollback truncates.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dsv4 {

// Undo log of equal-width rows: while active, save() keeps a row's bytes the first time it is called for
// that row since start(), for rows below `limit` (rows created later need no undo, they are cut off).
class RowJournal {
 public:
  void start(size_t limit);
  void stop();  // frees the log
  bool active() const { return active_; }
  size_t limit() const { return limit_; }
  void save(size_t i, const void* row, size_t row_bytes) {
    if (active_ && i < limit_ && (i >= seen_.size() || !seen_[i])) save_slow(i, row, row_bytes);
  }
  // Writes every saved row back into base (rows of the saved width) and empties the log; stays active.
  void restore(void* base);
  size_t saved_bytes() const { return saved_.size(); }  // bytes copied out since start()

 private:
  void save_slow(size_t i, const void* row, size_t row_bytes);
  bool active_ = false;
  size_t limit_ = 0, row_bytes_ = 0;
  std::vector<size_t> idx_;
  std::vector<uint8_t> saved_;
  std::vector<bool> seen_;
};

class KVRows {
 public:
  KVRows() = default;
  KVRows(int dim, int nope, bool compact) : dim_(dim), nope_(nope), compact_(compact) {}
  // Encodes row i from x (dim floats). In compact mode x's nope dims are FP8-rounded on the way in,
  // so put() is the KV round-trip itself.
  void put(size_t i, const float* x);
  void get(size_t i, float* out) const;
  void append(const float* x) {
    resize(size_ + 1);
    put(size_ - 1, x);
  }
  void resize(size_t rows);
  size_t size() const { return size_; }
  // Rows that fit before an append reallocates: appends below it allocate nothing.
  size_t capacity() const { return row_bytes() ? data_.capacity() / row_bytes() : 0; }
  void reserve(size_t rows) { data_.reserve(rows * row_bytes()); }
  size_t row_bytes() const;
  size_t bytes() const { return data_.size(); }
  // The encoded rows, byte for byte (exact state comparisons).
  const std::vector<uint8_t>& encoded() const { return data_; }
  // Replaces the rows by `rows` encoded rows of this layout (a state file read back); unmarked only.
  void assign_encoded(const uint8_t* p, size_t rows);

  // mark(): the current rows and size become the rollback point (replacing an earlier one);
  // rollback(): back to them, bit for bit, still marked; release(): stop journaling.
  void mark() { undo_.start(size_); }
  void rollback();
  void release() { undo_.stop(); }
  bool marked() const { return undo_.active(); }
  size_t journal_bytes() const { return undo_.saved_bytes(); }

 private:
  int dim_ = 0, nope_ = 0;
  bool compact_ = true;
  size_t size_ = 0;
  std::vector<uint8_t> data_;
  RowJournal undo_;
};

}  // namespace dsv4
