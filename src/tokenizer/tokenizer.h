#pragma once
// Byte-level BPE tokenizer for Hugging Face tokenizer.json files of the DeepSeek family.
//
// encode() follows HF tokenizers: added tokens are matched first (leftmost-longest), the rest is
// normalized, split by the pre-tokenizer and merged by BPE. It never adds BOS/EOS (the
// post-processor is ignored; the chat encoder places BOS). decode() is HF's ByteLevel decoder
// with invalid UTF-8 replaced by U+FFFD.
//
// A Tokenizer is a cheap handle (shared immutable state): copy or move it freely, and call it
// from several threads at once.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4 {

namespace tok {
struct TokenizerImpl;
}

// A span of text to encode with Tokenizer::encode_pieces.
struct EncodePiece {
  std::string_view text;
  bool parse_special;  // match added tokens inside this span
};

class Tokenizer {
 public:
  // `path` is a checkpoint directory containing tokenizer.json, or the tokenizer.json itself, or a
  // llama.cpp .gguf model: a tokenizer.json beside it wins, else its tokenizer.ggml.* metadata is used.
  static Tokenizer load(const std::string& path);
  // Parses tokenizer.json text already in memory; `name` identifies it in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& name = "<memory>");

  // parse_special=false disables added-token matching entirely: "<｜User｜>" is encoded as text.
  // Throws dsv4::Error when text is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
  // Appends to `out` instead of returning a fresh vector.
  void encode_into(std::string_view text, std::vector<int32_t>& out, bool parse_special = true) const;

  // Encodes the concatenation of `pieces`, matching added tokens only inside pieces that allow it (so
  // text a user wrote cannot become a control token). The text between added tokens is normalized and
  // pre-tokenized as one run across piece boundaries: when the other pieces hold no added-token text,
  // the ids equal encode(concatenation). A token's lstrip/rstrip/single_word look only inside its piece.
  std::vector<int32_t> encode_pieces(std::span<const EncodePiece> pieces) const;

  // Throws dsv4::Error for an id outside [0, vocab_size()) or one with no token.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  int32_t token_id(std::string_view token) const;  // exact vocab/added-token string, -1 if absent
  std::string token_text(int32_t id) const;         // decoded bytes of one token (may be partial UTF-8)
  bool is_special(int32_t id) const;                // an added token flagged "special"
  size_t vocab_size() const;                        // number of ids (max id + 1)
  bool has_token(int32_t id) const;                 // id in range and bound to a token
  int32_t bos_id() const;                           // "<｜begin▁of▁sentence｜>" or -1
  int32_t eos_id() const;                           // "<｜end▁of▁sentence｜>" or -1

 private:
  friend class StreamDecoder;
  explicit Tokenizer(std::shared_ptr<const tok::TokenizerImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const tok::TokenizerImpl> impl_;
};

// Incremental detokenizer: push ids one at a time, get back only complete UTF-8. Incomplete
// trailing bytes are held until later tokens complete them; the concatenation of everything
// returned (flush included) equals Tokenizer::decode of the same ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  std::string push(int32_t id);  // newly completed text (possibly empty)
  std::string flush();           // what is left; an incomplete sequence becomes U+FFFD

 private:
  std::shared_ptr<const tok::TokenizerImpl> impl_;  // keeps the tokenizer alive
  bool skip_special_;
  std::string pending_;
};

// The tokenizer.json text a GGUF's tokenizer.ggml.* metadata stands for (tokenizer_gguf.cpp).
std::string tokenizer_json_from_gguf(const std::string& gguf_path);

}  // namespace dsv4
