#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace dsv4 {
namespace tok {
namespace {

class BpeSink final : public PieceSink {
 public:
  BpeSink(const BpeModel& m, std::vector<int32_t>& out) : m_(m), out_(out) {}
  void piece(std::string_view bytes) override { m_.encode_word(bytes, out_); }

 private:
  const BpeModel& m_;
  std::vector<int32_t>& out_;
};

}  // namespace

std::string_view TokenizerImpl::bytes_of(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= flags.size() || !(flags[id] & kPresent)) {
    fail("token id {} is out of range for tokenizer '{}' (vocab size {})", id, source, flags.size());
  }
  return std::string_view(blob).substr(off[id], off[id + 1] - off[id]);
}

void TokenizerImpl::encode(std::string_view text, bool parse_special, std::vector<int32_t>& out) const {
  const EncodePiece one{text, parse_special};
  encode_pieces(std::span<const EncodePiece>(&one, 1), out);
}

void TokenizerImpl::encode_pieces(std::span<const EncodePiece> pieces, std::vector<int32_t>& out) const {
  size_t total = 0;
  for (const auto& p : pieces) total += p.text.size();
  size_t offset = 0;  // errors name the offset in the concatenated text
  for (const auto& p : pieces) {
    const size_t bad = utf8::first_invalid(p.text);
    if (bad != p.text.size()) {
      fail("cannot tokenize: input is not valid UTF-8 (byte 0x{:02x} at offset {} of {})",
           static_cast<unsigned char>(p.text[bad]), offset + bad, total);
    }
    offset += p.text.size();
  }
  MatchData md;
  BpeSink sink(bpe, out);
  const auto is_word_char = [&](char32_t cp) {
    std::string s;
    utf8::append_cp(s, cp);
    size_t b, e;
    return word_char && word_char->find(s, 0, md, &b, &e);
  };
  // Normalized text waiting for the next added token (or the end): pre-tokenized as one run, so a piece
  // boundary inside it changes nothing.
  std::string run;
  const auto flush = [&] {
    if (!run.empty()) pre.run(run, md, sink);
    run.clear();
  };
  const auto push_id = [&](int32_t id) {
    flush();
    out.push_back(id);
  };
  // HF order: raw-text tokens, then normalize what is between them, then normalized tokens.
  const auto normalized_part = [&](std::string_view piece, bool special) {
    std::string tmp;
    if (!normalizer.identity()) {
      tmp = normalizer.apply(piece, md);
      piece = tmp;
    }
    if (special && !norm_matcher.empty()) {
      norm_matcher.split(piece, [&](std::string_view gap) { run.append(gap); }, push_id, is_word_char);
    } else {
      run.append(piece);
    }
  };
  for (const auto& p : pieces) {
    if (p.parse_special && !raw_matcher.empty()) {
      raw_matcher.split(p.text, [&](std::string_view gap) { normalized_part(gap, true); }, push_id, is_word_char);
    } else {
      normalized_part(p.text, p.parse_special);
    }
  }
  flush();
}

}  // namespace tok

Tokenizer Tokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path file = path;
  if (is_gguf_path(path)) {
    const fs::path beside = file.parent_path() / "tokenizer.json";
    if (!fs::exists(beside, ec)) return from_json(tokenizer_json_from_gguf(path), path);
    file = beside;
  } else if (fs::is_directory(file, ec)) {
    file /= "tokenizer.json";
    if (!fs::exists(file, ec)) fail("no tokenizer.json in directory '{}'", path);
  } else if (!fs::exists(file, ec)) {
    fail("tokenizer file '{}' does not exist", path);
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("cannot open tokenizer file '{}'", file.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail("error reading tokenizer file '{}'", file.string());
  return from_json(ss.str(), file.string());
}

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& name) {
  return Tokenizer(tok::TokenizerImpl::parse(json_text, name));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  impl_->encode(text, parse_special, out);
  return out;
}

void Tokenizer::encode_into(std::string_view text, std::vector<int32_t>& out, bool parse_special) const {
  impl_->encode(text, parse_special, out);
}

std::vector<int32_t> Tokenizer::encode_pieces(std::span<const EncodePiece> pieces) const {
  std::vector<int32_t> out;
  impl_->encode_pieces(pieces, out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  for (int32_t id : ids) {
    const std::string_view b = impl_->bytes_of(id);
    if (skip_special && (impl_->flags[id] & tok::TokenizerImpl::kSpecial)) continue;
    bytes.append(b);
  }
  if (tok::utf8::first_invalid(bytes) == bytes.size()) return bytes;
  std::string out;
  tok::utf8::append_lossy(out, bytes);
  return out;
}

int32_t Tokenizer::token_id(std::string_view token) const {
  // Added tokens take precedence over the model vocab, as in HF's token_to_id.
  if (auto it = impl_->added_by_text.find(token); it != impl_->added_by_text.end()) return it->second;
  if (auto it = impl_->vocab.find(token); it != impl_->vocab.end()) return it->second;
  return -1;
}

std::string Tokenizer::token_text(int32_t id) const { return std::string(impl_->bytes_of(id)); }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->flags.size() && (impl_->flags[id] & tok::TokenizerImpl::kSpecial);
}

size_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }
bool Tokenizer::has_token(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->flags.size() && (impl_->flags[size_t(id)] & tok::TokenizerImpl::kPresent);
}
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special) : impl_(tok.impl_), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  const std::string_view b = impl_->bytes_of(id);
  if (skip_special_ && (impl_->flags[id] & tok::TokenizerImpl::kSpecial)) return {};
  pending_.append(b);
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(pending_.data());
  const size_t n = pending_.size();
  size_t i = 0;
  while (i < n) {
    size_t len;
    const tok::utf8::Seq s = tok::utf8::classify(p + i, n - i, &len);
    if (s == tok::utf8::Seq::kIncomplete) break;  // hold back until the rest arrives
    if (s == tok::utf8::Seq::kValid) {
      out.append(pending_, i, len);
    } else {
      tok::utf8::append_cp(out, 0xFFFD);
    }
    i += len;
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  if (!pending_.empty()) tok::utf8::append_cp(out, 0xFFFD);  // one maximal subpart, as decode() does
  pending_.clear();
  return out;
}

}  // namespace dsv4
