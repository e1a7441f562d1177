#include "tokenizer/added_tokens.h"

#include <algorithm>

namespace dsv4::tok {

void AddedMatcher::add(std::string_view pattern, const AddedToken* token) {
  if (pattern.empty()) return;  // an empty token can never match
  int32_t node = 0;
  for (unsigned char b : pattern) {
    auto& kids = nodes_[node].kids;
    auto it = std::lower_bound(kids.begin(), kids.end(), b, [](const auto& kv, unsigned char x) { return kv.first < x; });
    if (it != kids.end() && it->first == b) {
      node = it->second;
    } else {
      const int32_t child = static_cast<int32_t>(nodes_.size());
      kids.insert(it, {b, child});
      nodes_.emplace_back();  // may reallocate: `kids` is not used after this
      node = child;
    }
  }
  // The first token registered for a pattern keeps it (HF resolves duplicates the same way).
  if (!nodes_[node].token) nodes_[node].token = token;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
}

size_t AddedMatcher::longest_at(std::string_view text, size_t pos, const AddedToken** tok) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& kids = nodes_[node].kids;
    const unsigned char b = static_cast<unsigned char>(text[i]);
    auto it = std::lower_bound(kids.begin(), kids.end(), b, [](const auto& kv, unsigned char x) { return kv.first < x; });
    if (it == kids.end() || it->first != b) break;
    node = it->second;
    if (nodes_[node].token) {
      best = i + 1;
      *tok = nodes_[node].token;
    }
  }
  return best;
}

}  // namespace dsv4::tok
