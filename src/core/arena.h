#pragma once
// Scratch memory for the forward pass without heap traffic: a bump allocator over blocks it keeps.
// take() moves a pointer inside the current block; a Frame gives everything taken since it opened
// back when it closes (LIFO). A block is allocated only when a take fits in no block held, so a
// computation that repeats the same takes (a decode step) allocates nothing after its first run, and
// one that needs more (a larger batch) grows the arena once. Every thread has its own arena
// (thread_arena()), so a pool worker's scratch inside a parallel loop never meets another thread's.
#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace dsv4 {

class Arena {
 public:
  static constexpr size_t kAlign = 64;  // cache lines: vector loads that straddle two cost twice

  Arena() = default;
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // n uninitialised Ts, kAlign-aligned, valid until the innermost Frame open at the call closes.
  template <class T>
  T* take(size_t n) {
    return static_cast<T*>(take_bytes(bytes_for<T>(n)));
  }
  // What take<T>(n) consumes, padding included: sum these for reserve().
  template <class T>
  static constexpr size_t bytes_for(size_t n) {
    return n * sizeof(T) == 0 ? kAlign : (n * sizeof(T) + kAlign - 1) / kAlign * kAlign;
  }
  // Makes the next `bytes` of takes fit in one block from here. Scratch whose size varies below a
  // known bound (the tokens an expert gets, a growing sequence) then never changes where later takes
  // land, so it cannot make a later step allocate.
  void reserve(size_t bytes);

  class Frame {
   public:
    explicit Frame(Arena& a) : a_(a), block_(a.block_), off_(a.off_) {}
    ~Frame() {
      a_.block_ = block_;
      a_.off_ = off_;
    }
    Frame(const Frame&) = delete;
    Frame& operator=(const Frame&) = delete;

   private:
    Arena& a_;
    size_t block_, off_;
  };

  size_t capacity() const;  // bytes held in all blocks
  size_t blocks() const { return blocks_.size(); }

 private:
  struct Block {
    std::byte* p;
    size_t size;
  };
  void* take_bytes(size_t bytes);
  // Moves to the first block at or after the current one with `bytes` free, adding one if none has.
  void fit(size_t bytes);
  std::vector<Block> blocks_;
  size_t block_ = 0, off_ = 0;  // the current block and the offset of the next take in it
};

// The calling thread's arena.
Arena& thread_arena();

}  // namespace dsv4
