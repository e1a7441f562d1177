#include "tokenizer/pretokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace dsv4::tok {
namespace {

// The pattern HF's ByteLevel pre-tokenizer uses when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_behavior(const nlohmann::json& j, const std::string& where) {
  const std::string b = j.is_string() ? j.get<std::string>() : std::string("<missing>");
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  fail("{}: unknown Split behavior '{}'", where, b);
}

bool get_bool(const nlohmann::json& j, const char* key, bool def, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) fail("{}: '{}' must be true or false", where, key);
  return it->get<bool>();
}

// Turns the (offsets, is_match) segments of one Split step into pieces, following HF's
// NormalizedString::split for each behaviour. Empty pieces are dropped at the end, as HF does.
template <typename Emit>
class SegmentMerger {
 public:
  SegmentMerger(SplitBehavior b, Emit& emit) : b_(b), emit_(emit) {}

  void add(size_t s, size_t e, bool is_match) {
    switch (b_) {
      case SplitBehavior::kIsolated:
        out(s, e);
        break;
      case SplitBehavior::kRemoved:
        if (!is_match) out(s, e);
        break;
      case SplitBehavior::kMergedWithPrevious:
        if (is_match && !prev_match_ && have_) {
          pe_ = e;
        } else {
          flush();
          start(s, e);
        }
        break;
      case SplitBehavior::kContiguous:
        if (is_match == prev_match_ && have_) {
          pe_ = e;
        } else {
          flush();
          start(s, e);
        }
        break;
      case SplitBehavior::kMergedWithNext:
        // A match absorbs the segment after it unless that one is a match too.
        if (have_ && pending_is_match_ && !is_match) {
          pe_ = e;
          pending_is_match_ = false;  // merged piece is complete once the next segment arrives
          flush();
        } else {
          flush();
          start(s, e);
          pending_is_match_ = is_match;
        }
        break;
    }
    prev_match_ = is_match;
  }
  void finish() { flush(); }

 private:
  void out(size_t s, size_t e) {
    if (e > s) emit_(s, e);
  }
  void start(size_t s, size_t e) {
    have_ = true;
    ps_ = s;
    pe_ = e;
  }
  void flush() {
    if (have_) out(ps_, pe_);
    have_ = false;
  }
  SplitBehavior b_;
  Emit& emit_;
  bool prev_match_ = false;
  bool have_ = false;
  bool pending_is_match_ = false;
  size_t ps_ = 0, pe_ = 0;
};

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const std::string& where) {
  PreTokenizer p;
  if (!j.is_null()) p.add_step(j, where + ": pre_tokenizer");
  return p;
}

void PreTokenizer::add_step(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) fail("{}: expected an object with a 'type'", where);
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    const auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) fail("{}: Sequence without a 'pretokenizers' array", where);
    for (size_t i = 0; i < it->size(); ++i) add_step((*it)[i], where + "[" + std::to_string(i) + "]");
    return;
  }
  // Our BPE runs on the bytes of each piece, so ByteLevel has to be the last step.
  if (byte_level_) fail("{}: a {} step after ByteLevel is not supported", where, type);
  if (type == "Split") {
    const auto pat = j.find("pattern");
    if (pat == j.end() || !pat->is_object()) fail("{}: Split without a 'pattern' object", where);
    Split s;
    if (pat->contains("Regex") && (*pat)["Regex"].is_string()) {
      s.re.emplace(Regex::compile((*pat)["Regex"].get<std::string>(), where));
    } else if (pat->contains("String") && (*pat)["String"].is_string()) {
      s.re.emplace(Regex::literal((*pat)["String"].get<std::string>(), where));
    } else {
      fail("{}: Split pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}", where);
    }
    s.behavior = parse_behavior(j.contains("behavior") ? j["behavior"] : nlohmann::json(), where);
    s.invert = get_bool(j, "invert", false, where);
    splits_.push_back(std::move(s));
  } else if (type == "Digits") {
    // HF Digits splits on char::is_numeric: one piece per digit, or runs of digits.
    Split s;
    const bool individual = get_bool(j, "individual_digits", false, where);
    s.re.emplace(Regex::compile(individual ? "\\p{N}" : "\\p{N}+", where));
    s.behavior = SplitBehavior::kIsolated;
    s.invert = false;
    splits_.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    byte_level_ = true;
    add_prefix_space_ = get_bool(j, "add_prefix_space", true, where);
    if (get_bool(j, "use_regex", true, where)) byte_level_re_.emplace(Regex::compile(kGpt2Pattern, where));
  } else {
    fail("{}: unsupported pre-tokenizer type '{}'", where, type);
  }
}

void PreTokenizer::run(std::string_view text, MatchData& md, PieceSink& sink) const {
  if (!text.empty()) run_from(0, text, md, sink);
}

void PreTokenizer::run_from(size_t step, std::string_view piece, MatchData& md, PieceSink& sink) const {
  if (step == splits_.size()) {
    leaf(piece, md, sink);
    return;
  }
  const Split& sp = splits_[step];
  auto emit = [&](size_t s, size_t e) { run_from(step + 1, piece.substr(s, e - s), md, sink); };
  if (sp.behavior == SplitBehavior::kIsolated) {  // the common case, without the merger state
    size_t prev = 0;
    sp.re->for_each_match(piece, md, [&](size_t s, size_t e) {
      if (s > prev) emit(prev, s);
      if (e > s) emit(s, e);
      prev = e;
    });
    if (prev < piece.size()) emit(prev, piece.size());
    return;
  }
  SegmentMerger<decltype(emit)> merger(sp.behavior, emit);
  size_t prev = 0;
  sp.re->for_each_match(piece, md, [&](size_t s, size_t e) {
    if (s != prev) merger.add(prev, s, sp.invert);
    merger.add(s, e, !sp.invert);
    prev = e;
  });
  if (prev != piece.size()) merger.add(prev, piece.size(), sp.invert);
  merger.finish();
}

void PreTokenizer::leaf(std::string_view piece, MatchData& md, PieceSink& sink) const {
  std::string prefixed;
  if (add_prefix_space_ && piece.front() != ' ') {
    prefixed.reserve(piece.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(piece);
    piece = prefixed;
  }
  if (!byte_level_re_) {
    sink.piece(piece);
    return;
  }
  size_t prev = 0;
  byte_level_re_->for_each_match(piece, md, [&](size_t s, size_t e) {
    if (s > prev) sink.piece(piece.substr(prev, s - prev));
    if (e > s) sink.piece(piece.substr(s, e - s));
    prev = e;
  });
  if (prev < piece.size()) sink.piece(piece.substr(prev));
}

}  // namespace dsv4::tok
