// Tokenization of a rendered prompt (the only place the chat layer uses the tokenizer).
#include "chat/encoder.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::chat {

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const Prompt& prompt) {
  std::vector<EncodePiece> pieces;
  pieces.reserve(prompt.pieces().size());
  for (const auto& p : prompt.pieces()) pieces.push_back({p.text, p.control});
  return tok.encode_pieces(pieces);
}

}  // namespace dsv4::chat
