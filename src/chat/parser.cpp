#include "chat/parser.h"

#include <algorithm>
#include <optional>
#include <span>

#include "chat/markers.h"
#include "core/error.h"

namespace dsv4::chat {
namespace {

namespace mk = marker;
using SV = std::string_view;
using Stops = std::span<const SV>;

// Reasoning runs to </think>; any other special token inside it makes the reference reject the text.
constexpr SV kReasoningStops[] = {mk::kThinkClose, mk::kBos, mk::kEos, mk::kThinkOpen, mk::kDsml};
// Content runs to EOS or the tool-call block; the other markers are forbidden inside it.
constexpr SV kContentStops[] = {mk::kEos, mk::kToolCallsStart, mk::kBos, mk::kThinkOpen, mk::kThinkClose, mk::kDsml};
constexpr SV kOpenOrEnd[] = {mk::kInvokeOpen, mk::kToolCallsClose};
constexpr SV kParamOrInvokeEnd[] = {mk::kParamOpen, mk::kInvokeClose};
constexpr SV kParamEnd[] = {mk::kParamClose};
constexpr SV kLineEnd = ">\n";

enum class Find { Found, NotFound, NeedMore };
struct Hit {
  size_t pos = 0;
  size_t which = 0;
};

size_t max_len(Stops stops) {
  size_t m = 0;
  for (SV s : stops) m = std::max(m, s.size());
  return m;
}

// The text could still grow into one of the stops.
bool is_partial_stop(SV tail, Stops stops) {
  for (SV s : stops)
    if (tail.size() < s.size() && s.starts_with(tail)) return true;
  return false;
}

// First position from which the buffer end might be the beginning of a stop.
size_t tail_start(SV buf, size_t from, Stops stops) {
  size_t ml = max_len(stops);
  size_t t = buf.size() + 1 > ml ? buf.size() + 1 - ml : 0;
  return std::max(t, from);
}

// Earliest stop at or after `from` (ties go to the earlier stop in the list, as in the reference). A
// match is only reported once no earlier, still incomplete stop could overtake it. `scan` remembers
// where searching may resume: no stop starts in [from, scan).
Find find_first(SV buf, size_t from, size_t& scan, Stops stops, bool final, Hit& hit) {
  size_t start = std::max(from, scan);
  size_t best = SV::npos, which = 0;
  for (size_t i = 0; i < stops.size(); ++i) {
    size_t p = buf.find(stops[i], start);
    if (p < best) {
      best = p;
      which = i;
    }
  }
  size_t tail = tail_start(buf, start, stops);
  if (best != SV::npos) {
    if (!final) {
      for (size_t q = tail; q < best; ++q)
        if (is_partial_stop(buf.substr(q), stops)) {
          scan = tail;
          return Find::NeedMore;
        }
    }
    hit = {best, which};
    return Find::Found;
  }
  if (final) return Find::NotFound;
  scan = tail;
  return Find::NeedMore;
}

// End of the text that can be emitted now: nothing that may turn into a stop, no half UTF-8 character.
size_t safe_end(SV buf, size_t from, Stops stops) {
  size_t end = buf.size();
  for (size_t q = tail_start(buf, from, stops); q < buf.size(); ++q)
    if (is_partial_stop(buf.substr(q), stops)) {
      end = q;
      break;
    }
  for (size_t k = 1; k <= 3 && k <= end - from; ++k) {
    auto c = static_cast<unsigned char>(buf[end - k]);
    if ((c & 0xC0) == 0x80) continue;
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > k ? end - k : end;
  }
  return end;
}

// Could `rest` still become `head` immediately followed by one of the stops?
bool compatible(SV rest, SV head, Stops stops) {
  size_t m = std::min(rest.size(), head.size());
  if (rest.substr(0, m) != head.substr(0, m)) return false;
  if (rest.size() <= head.size()) return true;
  SV after = rest.substr(head.size());
  for (SV s : stops) {
    size_t k = std::min(after.size(), s.size());
    if (after.substr(0, k) == s.substr(0, k)) return true;
  }
  return false;
}

// Python's re \s for str patterns.
bool is_py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Decodes one UTF-8 character at s[i]; returns its length (1 for a stray byte, with cp = 0xFFFD).
size_t decode_utf8(SV s, size_t i, uint32_t& cp) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (len == 0 || i + len > s.size()) {
    cp = 0xFFFD;
    return 1;
  }
  cp = len == 1 ? c : len == 2 ? (c & 0x1Fu) : len == 3 ? (c & 0x0Fu) : (c & 0x07u);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3Fu);
  return len;
}

// The reference's re.findall(r'^\s*name="(.*?)">\n$', content, re.DOTALL). `$` also matches before a
// final "\n", and the lazy group then prefers the longer tail.
std::optional<std::string> parse_invoke_name(SV content) {
  size_t i = 0;
  while (i < content.size()) {
    uint32_t cp;
    size_t len = decode_utf8(content, i, cp);
    if (!is_py_space(cp)) break;
    i += len;
  }
  SV rest = content.substr(i);
  if (!rest.starts_with("name=\"")) return std::nullopt;
  rest.remove_prefix(6);
  if (rest.ends_with("\">\n\n")) return std::string(rest.substr(0, rest.size() - 4));
  if (rest.ends_with("\">\n")) return std::string(rest.substr(0, rest.size() - 3));
  return std::nullopt;
}

struct Param {
  std::string name, value;
  bool is_string;
};

// re.findall(r'^ name="(.*?)" string="(true|false)">(.*?)<$', content, re.DOTALL).
std::optional<Param> parse_param(SV content) {
  if (!content.starts_with(" name=\"")) return std::nullopt;
  SV rest = content.substr(7);
  size_t end;
  if (rest.ends_with("<\n")) {
    end = rest.size() - 2;
  } else if (rest.ends_with("<")) {
    end = rest.size() - 1;
  } else {
    return std::nullopt;
  }
  for (size_t k = rest.find("\" string=\""); k != SV::npos; k = rest.find("\" string=\"", k + 1)) {
    SV after = rest.substr(k + 10);
    for (bool is_str : {true, false}) {
      SV attr = is_str ? "true\">" : "false\">";
      if (after.starts_with(attr)) {
        size_t v = k + 10 + attr.size();
        if (v > end) return std::nullopt;
        return Param{std::string(rest.substr(0, k)), std::string(rest.substr(v, end - v)), is_str};
      }
    }
  }
  return std::nullopt;
}

}  // namespace

StreamParser::StreamParser(bool thinking)
    : thinking_(thinking), state_(thinking ? State::Reasoning : State::Content) {}

void StreamParser::error(std::string msg) {
  failed_ = true;
  error_ = msg;
  throw Error(std::move(msg));
}

void StreamParser::emit_text(Delta& d, size_t upto, bool whole) {
  size_t end = whole ? upto : std::max(emitted_, upto);
  if (end > emitted_) (state_ == State::Reasoning ? d.reasoning : d.content).append(buf_, emitted_, end - emitted_);
  emitted_ = std::max(emitted_, end);
}

void StreamParser::complete_call(Delta& d) {
  std::string args = "{";
  for (size_t i = 0; i < call_args_.size(); ++i) {
    if (i) args += ", ";
    const auto& [key, val] = call_args_[i];
    py_json_quote_to(args, key);
    args += ": ";
    if (val.second) {
      py_json_quote_to(args, val.first);
    } else {
      args += val.first;  // string="false" values go in verbatim, unvalidated (as the reference does)
    }
  }
  args += '}';
  d.tool_calls.push_back(ToolCall{std::move(call_name_), std::move(args)});
  call_name_.clear();
  call_args_.clear();
}

bool StreamParser::step(Delta& d, bool final) {
  SV b = buf_;
  Hit h;
  switch (state_) {
    case State::Reasoning:
    case State::Content: {
      bool reasoning = state_ == State::Reasoning;
      Stops stops = reasoning ? Stops(kReasoningStops) : Stops(kContentStops);
      Find r = find_first(b, pos_, scan_, stops, final, h);
      if (r == Find::NotFound)
        error(reasoning ? "invalid thinking format: missing </think>" : "invalid format: missing EOS token");
      if (r == Find::NeedMore) {
        emit_text(d, safe_end(b, emitted_, stops), false);
        pos_ = emitted_;  // nothing before the emitted end can start a stop
        scan_ = std::max(scan_, pos_);
        return false;
      }
      bool ends = reasoning ? h.which == 0 : h.which <= 1;
      if (reasoning && (stops[h.which] == mk::kEos || stops[h.which] == mk::kDsml))
        error(fmt::format("invalid thinking format: missing </think> (found '{}' first)", stops[h.which]));
      if (!ends)
        error(fmt::format("unexpected special token '{}' in {}", stops[h.which], reasoning ? "reasoning_content" : "content"));
      emit_text(d, h.pos, true);
      pos_ = h.pos + stops[h.which].size();
      state_ = reasoning ? State::Content : h.which == 0 ? State::End : State::ToolsOpenOrEnd;
      break;
    }
    case State::ToolsOpenOrEnd: {
      if (pos_ == b.size()) {
        if (!final) return false;
        state_ = State::End;  // the text may end right after the block opener or a closed invoke
        return true;
      }
      Find r = find_first(b, pos_, scan_, kOpenOrEnd, final, h);
      if (r == Find::NeedMore) {
        if (!compatible(b.substr(pos_), kLineEnd, kOpenOrEnd))
          error(fmt::format("tool call format error: expected '>\\n' then an invoke or the block end, got '{}'", b.substr(pos_)));
        return false;
      }
      SV s = r == Find::Found ? b.substr(pos_, h.pos - pos_) : b.substr(pos_);
      if (s != kLineEnd) error(fmt::format("tool call format error: expected '>\\n' but got '{}'", s));
      if (r == Find::NotFound) error("tool call format error: missing invoke or end of the tool-call block");
      pos_ = h.pos + kOpenOrEnd[h.which].size();
      state_ = h.which == 0 ? State::InvokeHeader : State::Tail;
      break;
    }
    case State::InvokeHeader: {
      Find r = find_first(b, pos_, scan_, kParamOrInvokeEnd, final, h);
      if (r == Find::NeedMore) return false;
      SV content = r == Find::Found ? b.substr(pos_, h.pos - pos_) : b.substr(pos_);
      auto name = parse_invoke_name(content);
      if (!name) error(fmt::format("tool name format error: '{}'", content));
      call_name_ = std::move(*name);
      call_args_.clear();
      if (r == Find::Found && h.which == 0) {
        state_ = State::Param;
      } else {
        complete_call(d);
        state_ = State::ToolsOpenOrEnd;
      }
      pos_ = r == Find::Found ? h.pos + kParamOrInvokeEnd[h.which].size() : b.size();
      break;
    }
    case State::Param: {
      Find r = find_first(b, pos_, scan_, kParamEnd, final, h);
      if (r == Find::NeedMore) return false;
      SV content = r == Find::Found ? b.substr(pos_, h.pos - pos_) : b.substr(pos_);
      auto p = parse_param(content);
      if (!p) error(fmt::format("parameter format error: '{}'", content));
      for (const auto& a : call_args_)
        if (a.first == p->name) error(fmt::format("duplicate parameter name: '{}'", p->name));
      call_args_.push_back({std::move(p->name), {std::move(p->value), p->is_string}});
      pos_ = r == Find::Found ? h.pos + kParamEnd[0].size() : b.size();
      state_ = State::AfterParam;
      break;
    }
    case State::AfterParam: {
      Find r = find_first(b, pos_, scan_, kParamOrInvokeEnd, final, h);
      if (r == Find::NeedMore) {
        if (!compatible(b.substr(pos_), kLineEnd, kParamOrInvokeEnd))
          error(fmt::format("parameter format error: expected '>\\n' then a parameter or the invoke end, got '{}'",
                            b.substr(pos_)));
        return false;
      }
      SV s = r == Find::Found ? b.substr(pos_, h.pos - pos_) : b.substr(pos_);
      if (s != kLineEnd) error(fmt::format("parameter format error: expected '>\\n' but got '{}'", s));
      if (r == Find::Found && h.which == 0) {
        state_ = State::Param;
      } else {
        complete_call(d);  // an invoke closed, or the text ended after a complete parameter line
        state_ = State::ToolsOpenOrEnd;
      }
      pos_ = r == Find::Found ? h.pos + kParamOrInvokeEnd[h.which].size() : b.size();
      break;
    }
    case State::Tail: {
      SV rest = b.substr(pos_);
      if (rest.starts_with(mk::kEos)) {
        pos_ += mk::kEos.size();
        state_ = State::End;
        break;
      }
      if (rest.empty() && final) {
        state_ = State::End;
        break;
      }
      if (mk::kEos.starts_with(rest) && !final) return false;
      error(fmt::format("unexpected content after tool calls: '{}'", rest));
    }
    case State::End:
      if (pos_ < b.size()) error(fmt::format("unexpected content at end: '{}'", b.substr(pos_)));
      return false;
  }
  scan_ = pos_;
  emitted_ = std::max(emitted_, pos_);
  return true;
}

void StreamParser::compact() {
  if (pos_ == 0 || pos_ < buf_.size() / 2) return;
  buf_.erase(0, pos_);
  scan_ = scan_ > pos_ ? scan_ - pos_ : 0;
  emitted_ = emitted_ > pos_ ? emitted_ - pos_ : 0;
  pos_ = 0;
}

void StreamParser::run(Delta& d, bool final) {
  if (failed_) throw Error("completion parser already failed: " + error_);
  if (closed_) throw Error("completion parser: text pushed after finish()");
  while (step(d, final)) {
  }
}

StreamParser::Delta StreamParser::push(std::string_view chunk) {
  Delta d;
  if (!failed_ && !closed_) {
    compact();
    buf_.append(chunk);
  }
  run(d, false);
  return d;
}

StreamParser::Delta StreamParser::finish() {
  Delta d;
  run(d, true);
  closed_ = true;
  return d;
}

StreamParser::Delta StreamParser::finish_truncated() {
  Delta d;
  if (failed_) throw Error("completion parser already failed: " + error_);
  if (closed_) throw Error("completion parser: finish called twice");
  if (state_ == State::Reasoning || state_ == State::Content) {
    // The held-back text may already hold a whole marker (the "｜DSML｜" of a tool-call opener not yet
    // confirmed): the text ends before it, markup is never content (found by fuzz_parser).
    const Stops stops = state_ == State::Reasoning ? Stops(kReasoningStops) : Stops(kContentStops);
    size_t scan = pos_;
    Hit h;
    const bool marker = find_first(buf_, pos_, scan, stops, /*final=*/true, h) == Find::Found;
    emit_text(d, marker ? h.pos : buf_.size(), true);
  }
  closed_ = true;
  return d;
}

ParsedCompletion parse_completion(std::string_view text, bool thinking) {
  StreamParser p(thinking);
  ParsedCompletion out;
  auto add = [&](StreamParser::Delta d) {
    out.content += d.content;
    out.reasoning_content += d.reasoning;
    for (auto& c : d.tool_calls) out.tool_calls.push_back(std::move(c));
  };
  add(p.push(text));
  add(p.finish());
  return out;
}

Json to_json(const ParsedCompletion& p) {
  Json calls = Json::array();
  for (const auto& c : p.tool_calls)
    calls.push_back({{"type", "function"}, {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  return {{"role", "assistant"},
          {"content", p.content},
          {"reasoning_content", p.reasoning_content},
          {"tool_calls", std::move(calls)}};
}

}  // namespace dsv4::chat
