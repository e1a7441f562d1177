#pragma once
// Sequence states on disk (the disk prefix cache, architecture.md §5.4): a file holds the exact state
// after a token prefix, keyed by the model's identity, its numerics options and the prefix. Reading
// one validates everything (magic, version, key, sizes against the model's own layout, checksum) and
// gives nothing back, with the reason, for a file that is damaged, truncated or someone else's.
//
// Layout (little-endian): "DSV4STAT", u32 version, u32 numerics, u64 model identity, u64 token count,
// u64 token hash, u64 file size, the tokens (i32), the state, u64 FNV-1a of every byte before it.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/transformer.h"

namespace dsv4 {

struct StateFileKey {
  uint64_t model_id = 0;
  uint32_t numerics = 0;
  bool operator==(const StateFileKey&) const = default;
};
uint32_t numerics_bits(const NumericsOptions& o);
StateFileKey state_file_key(const Model& m);  // model_identity(m) and m's numerics
uint64_t tokens_hash(std::span<const int32_t> ids);

inline constexpr size_t kStateHeaderBytes = 48;

// The file's bytes for st after `tokens` (st.pos == tokens.size()). Throws for a marked state: its
// journals are not part of the file, and a rollback after reading it back would be wrong.
std::vector<uint8_t> encode_state(const SequenceState& st, std::span<const int32_t> tokens, const StateFileKey& key);

struct StateFileHeader {
  uint64_t n_tokens = 0, tokens_hash = 0, file_bytes = 0;
};
// The header alone (the first kStateHeaderBytes): nullopt, with why, unless magic, version and key match.
std::optional<StateFileHeader> parse_state_header(std::span<const uint8_t> b, const StateFileKey& key,
                                                  std::string* why = nullptr);

struct LoadedState {
  std::vector<int32_t> tokens;
  SequenceState state;
};
// The whole file, checked against m's layout (block counts, row formats, compressor sizes) and, when
// `prefix` is given, against the tokens it should hold.
std::optional<LoadedState> decode_state(std::span<const uint8_t> b, const Model& m, const StateFileKey& key,
                                        std::string* why = nullptr, const std::vector<int32_t>* prefix = nullptr);

// Writes through a temporary file and a rename, so a reader never sees half a file.
bool write_file_atomic(const std::string& path, std::span<const uint8_t> b, std::string* why = nullptr);
// The bytes of a file, at most max_bytes of them (nullopt if larger or unreadable).
std::optional<std::vector<uint8_t>> read_file_bytes(const std::string& path, size_t max_bytes, std::string* why = nullptr);

}  // namespace dsv4
