#include "core/arena.h"

#include <algorithm>

namespace dsv4 {

namespace {
constexpr size_t kMinBlock = size_t(1) << 20;
}  // namespace

Arena::~Arena() {
  for (Block& b : blocks_) ::operator delete(b.p, std::align_val_t(kAlign));
}

size_t Arena::capacity() const {
  size_t n = 0;
  for (const Block& b : blocks_) n += b.size;
  return n;
}

void Arena::fit(size_t bytes) {
  for (; block_ < blocks_.size(); ++block_, off_ = 0)
    if (off_ + bytes <= blocks_[block_].size) return;
  // Doubling what is held keeps the number of growth steps logarithmic in the high-water mark.
  const size_t size = std::max({bytes, capacity(), kMinBlock});
  blocks_.push_back({static_cast<std::byte*>(::operator new(size, std::align_val_t(kAlign))), size});
  block_ = blocks_.size() - 1;
  off_ = 0;
}

void* Arena::take_bytes(size_t bytes) {
  fit(bytes);
  void* p = blocks_[block_].p + off_;
  off_ += bytes;
  return p;
}

void Arena::reserve(size_t bytes) { fit(bytes); }

Arena& thread_arena() {
  thread_local Arena a;
  return a;
}

}  // namespace dsv4
