// Reading tokenizer.json into TokenizerImpl. Every failure names the file and the JSON path.
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/utf8.h"

namespace dsv4::tok {
namespace {

using nlohmann::json;

constexpr int64_t kMaxId = int64_t{1} << 26;  // guards against absurd allocations from bad files

int32_t get_id(const json& v, const std::string& what) {
  if (!v.is_number_integer()) fail("{}: id must be an integer", what);
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id >= kMaxId) fail("{}: id {} is out of range", what, id);
  return static_cast<int32_t>(id);
}

bool get_bool(const json& obj, const char* key, bool def, const std::string& what) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  if (!it->is_boolean()) fail("{}: '{}' must be true or false", what, key);
  return it->get<bool>();
}

void check_utf8(const std::string& s, const std::string& what) {
  if (utf8::first_invalid(s) != s.size()) fail("{}: string is not valid UTF-8", what);
}

// id_to_vocab receives, per id, a pointer to its vocab string (a key of t.vocab), or nullptr.
void load_model(TokenizerImpl& t, const json& model, const std::string& where,
                std::vector<const std::string*>& id_to_vocab) {
  if (!model.is_object()) fail("{}: 'model' is missing or not an object", where);
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") fail("{}: model type '{}' is not supported (only BPE)", where, type);
  if (const auto d = model.find("dropout"); d != model.end() && !d->is_null() && d->get<double>() != 0.0) {
    fail("{}: BPE dropout is not supported", where);
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
      fail("{}: model.{} is not supported by the byte-level BPE", where, key);
    }
  }
  t.bpe.ignore_merges = get_bool(model, "ignore_merges", false, where + ": model");

  const auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) fail("{}: model.vocab is missing or not an object", where);
  t.vocab.reserve(vocab->size());
  for (const auto& [text, v] : vocab->items()) {
    const int32_t id = get_id(v, where + ": model.vocab[\"" + text + "\"]");
    const auto it = t.vocab.emplace(text, id).first;  // nlohmann has already checked the UTF-8
    if (static_cast<size_t>(id) >= id_to_vocab.size()) id_to_vocab.resize(static_cast<size_t>(id) + 1, nullptr);
    // Two spellings of one id would make decode depend on the JSON key order.
    if (id_to_vocab[id])
      fail("{}: model.vocab gives id {} to both \"{}\" and \"{}\"", where, id, *id_to_vocab[id], text);
    id_to_vocab[id] = &it->first;  // unordered_map keys do not move on rehash
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = t.vocab.find(byte_level::map(std::string(1, static_cast<char>(b))));
    t.bpe.byte_id[b] = it == t.vocab.end() ? -1 : it->second;
  }
  if (const auto unk = model.find("unk_token"); unk != model.end() && unk->is_string()) {
    const auto it = t.vocab.find(unk->get<std::string>());
    if (it == t.vocab.end()) fail("{}: model.unk_token '{}' is not in the vocab", where, unk->get<std::string>());
    t.bpe.unk_id = it->second;
  }
  if (t.bpe.ignore_merges) {
    std::string raw;
    for (const auto& [text, id] : t.vocab) {
      if (byte_level::unmap(text, raw)) t.bpe.raw_vocab.emplace(raw, id);
    }
  }

  const auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) fail("{}: model.merges is missing or not an array", where);
  t.bpe.merges.reserve(merges->size());
  const auto lookup = [&](const std::string& s, size_t i) {
    const auto it = t.vocab.find(s);
    if (it == t.vocab.end()) fail("{}: model.merges[{}] uses '{}', which is not in the vocab", where, i, s);
    return it->second;
  };
  std::string a, b;
  for (size_t i = 0; i < merges->size(); ++i) {
    const json& m = (*merges)[i];
    if (m.is_string()) {  // legacy "a b" form: exactly one space
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        fail("{}: model.merges[{}] '{}' is not of the form \"a b\"", where, i, s);
      }
      a.assign(s, 0, sp);
      b.assign(s, sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      fail("{}: model.merges[{}] must be an \"a b\" string or an [\"a\", \"b\"] pair", where, i);
    }
    const int32_t ia = lookup(a, i), ib = lookup(b, i), merged = lookup(a + b, i);
    t.bpe.merges.insert_or_assign(ia, ib, static_cast<uint32_t>(i), merged);
  }
}

void load_added(TokenizerImpl& t, const json& j, const std::string& where) {
  if (j.is_null()) return;
  if (!j.is_array()) fail("{}: 'added_tokens' is not an array", where);
  t.added.reserve(j.size());
  std::unordered_map<int32_t, size_t> by_id;       // id -> index in t.added
  std::unordered_map<std::string, size_t> by_text;  // content -> index in t.added
  for (size_t i = 0; i < j.size(); ++i) {
    const json& e = j[i];
    const std::string what = fmt::format("{}: added_tokens[{}]", where, i);
    if (!e.is_object() || !e.contains("content") || !e["content"].is_string()) fail("{}: needs a 'content' string", what);
    AddedToken tok;
    tok.content = e["content"].get<std::string>();
    check_utf8(tok.content, what);
    tok.id = get_id(e.contains("id") ? e["id"] : json(), what);
    tok.special = get_bool(e, "special", false, what);
    tok.normalized = get_bool(e, "normalized", !tok.special, what);
    tok.lstrip = get_bool(e, "lstrip", false, what);
    tok.rstrip = get_bool(e, "rstrip", false, what);
    tok.single_word = get_bool(e, "single_word", false, what);
    // A repeated entry is harmless; one id with two contents (or the reverse) is ambiguous.
    const auto id_it = by_id.find(tok.id);
    const auto text_it = by_text.find(tok.content);
    if (id_it != by_id.end() && t.added[id_it->second].content != tok.content)
      fail("{}: id {} is already the added token \"{}\", not \"{}\"", what, tok.id, t.added[id_it->second].content,
           tok.content);
    if (text_it != by_text.end() && t.added[text_it->second].id != tok.id)
      fail("{}: \"{}\" is already the added token with id {}, not {}", what, tok.content, t.added[text_it->second].id,
           tok.id);
    if (id_it != by_id.end()) continue;
    by_id.emplace(tok.id, t.added.size());
    by_text.emplace(tok.content, t.added.size());
    t.added.push_back(std::move(tok));
  }
}

void check_decoder(const json& d, const std::string& where) {
  if (d.is_null()) fail("{}: no decoder; only the ByteLevel decoder is supported", where);
  const std::string type = d.value("type", std::string());
  if (type == "ByteLevel") return;
  if (type == "Sequence" && d.contains("decoders") && d["decoders"].is_array()) {
    for (const json& x : d["decoders"]) check_decoder(x, where);
    return;
  }
  fail("{}: decoder type '{}' is not supported (only ByteLevel)", where, type);
}

void build(TokenizerImpl& t, const json& j, const std::string& where) {
  std::vector<const std::string*> id_to_vocab;
  load_model(t, j.contains("model") ? j["model"] : json(), where, id_to_vocab);
  load_added(t, j.contains("added_tokens") ? j["added_tokens"] : json(), where);
  t.normalizer = Normalizer::from_json(j.contains("normalizer") ? j["normalizer"] : json(), where);
  t.pre = PreTokenizer::from_json(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), where);
  if (!t.pre.has_byte_level()) fail("{}: pre_tokenizer has no ByteLevel step; only byte-level BPE is supported", where);
  check_decoder(j.contains("decoder") ? j["decoder"] : json(), where);

  // Matchers: normalized tokens are matched on normalized text, so normalize their content too.
  MatchData md;
  bool single_word = false;
  for (const AddedToken& a : t.added) {
    t.added_by_text.emplace(a.content, a.id);
    if (a.normalized) {
      t.norm_matcher.add(t.normalizer.identity() ? a.content : t.normalizer.apply(a.content, md), &a);
    } else {
      t.raw_matcher.add(a.content, &a);
    }
    single_word |= a.single_word;
  }
  if (single_word) t.word_char.emplace(Regex::compile("^[\\p{Alphabetic}\\p{N}]", where + ": single_word"));

  // Decode table: added-token content wins over the vocab string for the same id (HF order).
  size_t n = id_to_vocab.size();
  for (const AddedToken& a : t.added) n = std::max(n, static_cast<size_t>(a.id) + 1);
  std::vector<const std::string*> text_of = id_to_vocab;
  text_of.resize(n, nullptr);
  t.flags.assign(n, 0);
  for (const AddedToken& a : t.added) {
    text_of[a.id] = &a.content;
    if (a.special) t.flags[a.id] |= TokenizerImpl::kSpecial;
  }
  t.off.assign(n + 1, 0);
  for (size_t id = 0; id < n; ++id) {
    t.off[id] = static_cast<uint32_t>(t.blob.size());
    if (!text_of[id]) continue;
    t.flags[id] |= TokenizerImpl::kPresent;
    t.blob += byte_level::decode_token(*text_of[id]);
  }
  t.off[n] = static_cast<uint32_t>(t.blob.size());

  const auto find = [&](std::string_view s) -> int32_t {
    if (auto it = t.added_by_text.find(s); it != t.added_by_text.end()) return it->second;
    if (auto it = t.vocab.find(s); it != t.vocab.end()) return it->second;
    return -1;
  };
  t.bos = find("<｜begin▁of▁sentence｜>");
  t.eos = find("<｜end▁of▁sentence｜>");
}

}  // namespace

std::shared_ptr<TokenizerImpl> TokenizerImpl::parse(std::string_view json_text, const std::string& name) {
  const std::string where = fmt::format("tokenizer file '{}'", name);
  json j;
  try {
    j = parse_json(json_text, where);
  } catch (const json::parse_error& e) {
    fail("{}: malformed JSON at byte {} of {} (truncated or corrupt?): {}", where, e.byte, json_text.size(), e.what());
  } catch (const json::exception& e) {  // out_of_range: a number too large for any type
    fail("{}: malformed JSON: {}", where, e.what());
  }
  if (!j.is_object()) fail("{}: the top level is not a JSON object", where);
  auto impl = std::make_shared<TokenizerImpl>();
  impl->source = name;
  try {
    build(*impl, j, where);
  } catch (const json::exception& e) {  // a value of the wrong type somewhere we did not check
    fail("{}: unexpected structure: {}", where, e.what());
  }
  return impl;
}

}  // namespace dsv4::tok
