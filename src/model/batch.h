#pragma once
// A forward call covers several sequences at once: their rows are concatenated so every linear is one
// matrix product over all of them, while attention and compressor state stay per sequence.
#include <cstdint>
#include <span>

#include "core/arena.h"

namespace dsv4 {

struct Segment {
  int64_t row0 = 0;  // first row of this sequence in the batch
  int64_t S = 0;     // rows (tokens)
  int64_t p0 = 0;    // absolute position of the first row
  // When ≥ 0: the sequence's state is marked (SequenceState::mark) at this absolute position in
  // [p0, p0 + S], i.e. after consuming the rows before it, so a verification pass that re-feeds
  // accepted tokens and scores new drafts in one forward can roll back to just before the drafts.
  int64_t mark_at = -1;
};

using Segments = std::span<const Segment>;

inline int64_t total_rows(Segments segs) {
  int64_t n = 0;
  for (auto& s : segs) n += s.S;
  return n;
}

// Position of every row, in batch order, in `arena`.
inline const int64_t* row_positions(Segments segs, Arena& arena) {
  int64_t* pos = arena.take<int64_t>(size_t(total_rows(segs)));
  for (auto& s : segs)
    for (int64_t i = 0; i < s.S; ++i) pos[s.row0 + i] = s.p0 + i;
  return pos;
}

}  // namespace dsv4
