#include "chat/encoder.h"

#include <algorithm>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include "chat/markers.h"
#include "core/error.h"
#include "core/json.h"

namespace dsv4::chat {
namespace {

namespace mk = marker;

constexpr std::string_view kEffortMax =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve "
    "the root cause, rigorously stress-testing your logic against all potential paths, edge cases, and "
    "adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate step, "
    "considered alternative, and rejected hypothesis to ensure absolutely no assumption is left "
    "unchecked.\n\n";

constexpr std::string_view kToolsHead =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke tools by "
    "writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n"
    "<｜DSML｜tool_calls>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
    "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</｜DSML｜invoke>\n"
    "</｜DSML｜tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other types "
    "(numbers, booleans, arrays, objects), pass the value in JSON format and set `string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside "
    "<think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";
constexpr std::string_view kToolsTail =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool "
    "calls.\n";

constexpr std::string_view kResponseFormatHead =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

const std::map<std::string, std::string_view, std::less<>>& task_tokens() {
  static const std::map<std::string, std::string_view, std::less<>> m = {
      {"action", "<｜action｜>"}, {"query", "<｜query｜>"},   {"authority", "<｜authority｜>"},
      {"domain", "<｜domain｜>"}, {"title", "<｜title｜>"}, {"read_url", "<｜read_url｜>"},
  };
  return m;
}

// One block of a user turn after the tool-message merge.
struct Block {
  bool tool_result = false;
  std::string text;             // text block
  const Json* content = nullptr;  // tool_result block: the tool message's content (null = missing)
  std::string tool_use_id;
};

// A message after preprocessing. Rebuilt user turns keep only their blocks and task (FORMAT.md §2).
struct Msg {
  std::string role;
  const Json* src = nullptr;  // the caller's message; null for rebuilt user turns
  std::vector<Block> blocks;
  std::optional<std::string> task;
  bool drop_reasoning = false;
  std::string where;  // "message 3" / "context message 0", for error messages
};

const Json* get(const Json& obj, std::string_view key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// Python `content or ""` restricted to the types the reference can actually write.
std::string_view text_or_empty(const Json* v, const Msg& m, std::string_view field) {
  if (!v || v->is_null()) return {};
  if (!v->is_string()) fail("{} ({}): \"{}\" must be a string or null, got {}", m.where, m.role, field, v->type_name());
  return v->get_ref<const std::string&>();
}

std::optional<std::string> read_task(const Json& msg, const std::string& where) {
  const Json* t = get(msg, "task");
  if (!t || t->is_null()) return std::nullopt;
  if (!t->is_string()) fail("{}: \"task\" must be a string, got {}", where, t->type_name());
  const auto& s = t->get_ref<const std::string&>();
  if (!task_tokens().count(s))
    fail("{}: invalid task '{}' (valid: action, query, authority, domain, title, read_url)", where, s);
  return s;
}

bool known_role(std::string_view r) {
  return r == "system" || r == "developer" || r == "user" || r == "assistant" || r == "tool" ||
         r == "latest_reminder";
}

// Tool messages become tool_result blocks; consecutive user/tool messages fuse into one user turn,
// except that a user text block does not join a turn that carries a task.
std::vector<Msg> merge_tool_messages(const Json& list, std::string_view label) {
  if (!list.is_array()) fail("{}s must be a JSON array, got {}", label, list.type_name());
  std::vector<Msg> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const Json& m = list[i];
    std::string where = fmt::format("{} {}", label, i);
    if (!m.is_object()) fail("{}: expected a JSON object, got {}", where, m.type_name());
    const Json* role = get(m, "role");
    if (!role || !role->is_string()) fail("{}: missing or non-string \"role\"", where);
    const auto& r = role->get_ref<const std::string&>();
    if (!known_role(r))
      fail("{}: unknown role '{}' (expected system, developer, user, assistant, tool or latest_reminder)", where, r);
    bool join = !out.empty() && out.back().role == "user" && !out.back().src;
    if (r == "tool") {
      Block b;
      b.tool_result = true;
      b.content = get(m, "content");
      if (b.content && !b.content->is_string() && !b.content->is_array())
        fail("{} (tool): \"content\" must be a string or a list of parts, got {}", where, b.content->type_name());
      if (const Json* id = get(m, "tool_call_id"); id && id->is_string()) b.tool_use_id = id->get<std::string>();
      if (join) {
        out.back().blocks.push_back(std::move(b));
      } else {
        Msg nm;
        nm.role = "user";
        nm.where = where;
        nm.blocks.push_back(std::move(b));
        out.push_back(std::move(nm));
      }
    } else if (r == "user") {
      Block b;
      const Json* c = get(m, "content");
      if (c && !c->is_string())
        fail("{} (user): \"content\" must be a string, got {}", where, c->type_name());
      if (c) b.text = c->get<std::string>();
      auto task = read_task(m, where);
      if (join && !out.back().task) {
        out.back().blocks.push_back(std::move(b));
      } else {
        Msg nm;
        nm.role = "user";
        nm.where = where;
        nm.task = std::move(task);
        nm.blocks.push_back(std::move(b));
        out.push_back(std::move(nm));
      }
    } else {
      Msg nm;
      nm.role = r;
      nm.src = &m;
      nm.where = where;
      nm.task = read_task(m, where);
      out.push_back(std::move(nm));
    }
  }
  return out;
}

const Json& tool_calls_of(const Msg& m) {
  static const Json kNull;
  const Json* tc = m.src ? get(*m.src, "tool_calls") : nullptr;
  if (!tc || !py_truthy(*tc)) return kNull;
  if (!tc->is_array()) fail("{} ({}): \"tool_calls\" must be an array, got {}", m.where, m.role, tc->type_name());
  for (size_t k = 0; k < tc->size(); ++k) {
    const Json& c = (*tc)[k];
    if (!c.is_object()) fail("{} ({}): tool_calls[{}] must be an object", m.where, m.role, k);
  }
  return *tc;
}

// Inside a user turn, tool results follow the call order of the latest assistant that made calls.
void sort_tool_results(std::vector<Msg>& msgs) {
  std::map<std::string, int, std::less<>> order;
  for (auto& m : msgs) {
    if (m.role == "assistant") {
      const Json& calls = tool_calls_of(m);
      if (calls.is_null()) continue;
      order.clear();
      for (size_t k = 0; k < calls.size(); ++k) {
        const Json* id = get(calls[k], "id");
        if (!id || !py_truthy(*id)) {
          const Json* fn = get(calls[k], "function");
          id = fn && fn->is_object() ? get(*fn, "id") : nullptr;
        }
        if (id && id->is_string() && !id->get_ref<const std::string&>().empty())
          order[id->get<std::string>()] = static_cast<int>(k);
      }
    } else if (m.role == "user" && !m.src) {
      std::vector<Block*> tool_blocks;
      for (auto& b : m.blocks)
        if (b.tool_result) tool_blocks.push_back(&b);
      if (tool_blocks.size() <= 1 || order.empty()) continue;
      std::vector<Block> sorted;
      for (auto* b : tool_blocks) sorted.push_back(*b);
      auto key = [&](const Block& b) {
        auto it = order.find(b.tool_use_id);
        return it == order.end() ? 0 : it->second;
      };
      std::stable_sort(sorted.begin(), sorted.end(), [&](const Block& a, const Block& b) { return key(a) < key(b); });
      for (size_t k = 0; k < tool_blocks.size(); ++k) *tool_blocks[k] = std::move(sorted[k]);
    }
  }
}

int last_user_index(const std::vector<Msg>& msgs) {
  for (int i = static_cast<int>(msgs.size()) - 1; i >= 0; --i)
    if (msgs[static_cast<size_t>(i)].role == "user" || msgs[static_cast<size_t>(i)].role == "developer") return i;
  return -1;
}

// Thinking mode with drop_thinking: earlier assistants lose their reasoning, earlier developer
// messages disappear.
std::vector<Msg> drop_thinking_messages(const std::vector<Msg>& msgs) {
  int last = last_user_index(msgs);
  std::vector<Msg> out;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const auto& r = msgs[i].role;
    if (r == "user" || r == "system" || r == "tool" || r == "latest_reminder" || static_cast<int>(i) >= last) {
      out.push_back(msgs[i]);
    } else if (r == "assistant") {
      out.push_back(msgs[i]);
      out.back().drop_reasoning = true;
    }
  }
  return out;
}

// Schemas are the caller's text; the instructions around them are the encoder's.
void append_tools(Prompt& out, const Msg& m) {
  const Json* tools = get(*m.src, "tools");
  if (tools && py_truthy(*tools)) {
    if (!tools->is_array()) fail("{} ({}): \"tools\" must be an array, got {}", m.where, m.role, tools->type_name());
    out.control("\n\n").control(kToolsHead);
    for (size_t k = 0; k < tools->size(); ++k) {
      const Json& t = (*tools)[k];
      const Json* fn = t.is_object() ? get(t, "function") : nullptr;
      if (!fn) fail("{} ({}): tools[{}] has no \"function\" object (OpenAI tool format expected)", m.where, m.role, k);
      if (k) out.control("\n");
      std::string schema;
      py_json_dump_to(schema, *fn);
      out.text(schema);
    }
    out.control(kToolsTail);
  }
  const Json* rf = get(*m.src, "response_format");
  if (rf && py_truthy(*rf)) {
    out.control("\n\n").control(kResponseFormatHead);
    std::string schema;
    py_json_dump_to(schema, *rf);
    out.text(schema);
  }
}

// Arguments come as a JSON string (OpenAI); text that is not JSON is kept as one string parameter.
Json decode_arguments(const Json& args, const Msg& m, size_t k) {
  if (args.is_object()) return args;
  if (!args.is_string())
    fail("{} ({}): tool_calls[{}].function.arguments must be a JSON string, got {}", m.where, m.role, k, args.type_name());
  const auto& s = args.get_ref<const std::string&>();
  check_json_depth(s, fmt::format("{} ({}): tool_calls[{}].function.arguments", m.where, m.role, k));
  Json parsed = Json::parse(s, nullptr, /*allow_exceptions=*/false);
  // Python's json.loads rejects a leading BOM, which nlohmann skips.
  if (parsed.is_discarded() || s.starts_with("\xEF\xBB\xBF")) {
    Json o = Json::object();
    o["arguments"] = s;
    return o;
  }
  if (!parsed.is_object())
    fail("{} ({}): tool_calls[{}].function.arguments must encode a JSON object, got {}", m.where, m.role, k,
         parsed.type_name());
  return parsed;
}

void append_tool_calls(Prompt& out, const Json& calls, const Msg& m) {
  out.control("\n\n").control(mk::kToolCallsOpen).control("\n");
  for (size_t k = 0; k < calls.size(); ++k) {
    const Json* fn = get(calls[k], "function");
    if (!fn || !fn->is_object()) fail("{} ({}): tool_calls[{}] has no \"function\" object", m.where, m.role, k);
    const Json* name = get(*fn, "name");
    if (!name || !name->is_string()) fail("{} ({}): tool_calls[{}].function.name must be a string", m.where, m.role, k);
    const Json* args = get(*fn, "arguments");
    if (!args) fail("{} ({}): tool_calls[{}].function has no \"arguments\"", m.where, m.role, k);
    Json params = decode_arguments(*args, m, k);
    if (k) out.control("\n");
    out.control("<｜DSML｜invoke name=\"").text(name->get_ref<const std::string&>()).control("\">\n");
    bool first = true;
    for (const auto& [key, v] : params.items()) {
      if (!first) out.control("\n");
      first = false;
      out.control("<｜DSML｜parameter name=\"").text(key);
      out.control(v.is_string() ? "\" string=\"true\">" : "\" string=\"false\">");
      if (v.is_string()) {
        out.text(v.get_ref<const std::string&>());
      } else {
        std::string value;
        py_json_dump_to(value, v);
        out.text(value);
      }
      out.control("</｜DSML｜parameter>");
    }
    out.control("\n</｜DSML｜invoke>");
  }
  out.control("\n").control(mk::kToolCallsClose);
}

void append_tool_result(Prompt& out, const Block& b, const Msg& m) {
  out.control(mk::kToolResultOpen);
  if (b.content && b.content->is_string()) {
    out.text(b.content->get_ref<const std::string&>());
  } else if (b.content) {  // a list of parts
    bool first = true;
    for (const auto& part : *b.content) {
      if (!first) out.control("\n\n");
      first = false;
      if (!part.is_object()) fail("{} (tool): content parts must be objects, got {}", m.where, part.type_name());
      const Json* type = get(part, "type");
      if (type && type->is_string() && type->get_ref<const std::string&>() == "text") {
        const Json* t = get(part, "text");
        if (t && !t->is_string()) fail("{} (tool): a text part's \"text\" must be a string", m.where);
        if (t) out.text(t->get_ref<const std::string&>());
      } else if (!type || type->is_null()) {
        out.text("[Unsupported None]");  // Python's f-string of a missing type
      } else if (type->is_string()) {
        out.text("[Unsupported " + type->get<std::string>() + "]");
      } else {
        fail("{} (tool): content part \"type\" must be a string", m.where);
      }
    }
  }
  out.control(mk::kToolResultClose);
}

// Every string a message carries is text; only the markers and fixed instructions are control.
void render_message(Prompt& out, size_t idx, const std::vector<Msg>& msgs, bool thinking, bool drop,
                    const std::string& effort) {
  const Msg& m = msgs[idx];
  int last_user = last_user_index(msgs);
  if (idx == 0 && thinking && effort == "max") out.control(kEffortMax);

  if (m.role == "system") {
    out.text(text_or_empty(get(*m.src, "content"), m, "content"));
    append_tools(out, m);
  } else if (m.role == "developer") {
    std::string_view content = text_or_empty(get(*m.src, "content"), m, "content");
    if (content.empty()) fail("{} (developer): \"content\" must be a non-empty string", m.where);
    out.control(mk::kUser).text(content);
    append_tools(out, m);
  } else if (m.role == "user") {
    out.control(mk::kUser);
    for (size_t k = 0; k < m.blocks.size(); ++k) {
      if (k) out.control("\n\n");
      if (m.blocks[k].tool_result) {
        append_tool_result(out, m.blocks[k], m);
      } else {
        out.text(m.blocks[k].text);
      }
    }
  } else if (m.role == "latest_reminder") {
    const Json* c = get(*m.src, "content");
    if (!c || !c->is_string()) fail("{} (latest_reminder): \"content\" must be a string", m.where);
    out.control(mk::kLatestReminder).text(c->get_ref<const std::string&>());
  } else {  // assistant
    bool prev_has_task = idx > 0 && msgs[idx - 1].task.has_value();
    if (thinking && !prev_has_task && (!drop || static_cast<int>(idx) > last_user)) {
      if (!m.drop_reasoning) out.text(text_or_empty(get(*m.src, "reasoning_content"), m, "reasoning_content"));
      out.control(mk::kThinkClose);
    }
    out.text(text_or_empty(get(*m.src, "content"), m, "content"));
    const Json& calls = tool_calls_of(m);
    if (!calls.is_null()) append_tool_calls(out, calls, m);
    const Json* wo_eos = get(*m.src, "wo_eos");
    if (!(wo_eos && py_truthy(*wo_eos))) out.control(mk::kEos);
  }

  // The transition into the next assistant turn is written only where one follows (or at the end).
  if (idx + 1 < msgs.size() && msgs[idx + 1].role != "assistant" && msgs[idx + 1].role != "latest_reminder")
    return;
  if (m.task) {
    std::string_view tok = task_tokens().at(*m.task);
    if (*m.task != "action") {
      out.control(tok);
    } else {
      out.control(mk::kAssistant).control(thinking ? mk::kThinkOpen : mk::kThinkClose).control(tok);
    }
  } else if (m.role == "user" || m.role == "developer") {
    bool open = thinking && (!drop || static_cast<int>(idx) >= last_user);
    out.control(mk::kAssistant).control(open ? mk::kThinkOpen : mk::kThinkClose);
  }
}

}  // namespace

Prompt render_prompt_pieces(const Json& messages, const EncodeOptions& opt) {
  if (opt.reasoning_effort != "" && opt.reasoning_effort != "high" && opt.reasoning_effort != "max")
    fail("invalid reasoning effort '{}' (expected none, \"high\" or \"max\")", opt.reasoning_effort);
  bool has_context = !opt.context.is_null() && !(opt.context.is_array() && opt.context.empty());
  if (!opt.context.is_null() && !opt.context.is_array())
    fail("context must be null or an array of messages, got {}", opt.context.type_name());

  std::vector<Msg> context = has_context ? merge_tool_messages(opt.context, "context message") : std::vector<Msg>{};
  std::vector<Msg> full = std::move(context);
  size_t context_len = full.size();
  std::vector<Msg> fresh = merge_tool_messages(messages, "message");
  full.insert(full.end(), std::make_move_iterator(fresh.begin()), std::make_move_iterator(fresh.end()));
  // Sorting context and new messages in one pass equals the reference's two passes: only assistants
  // carry state across the boundary.
  sort_tool_results(full);

  Prompt prompt;
  if (opt.add_bos && !has_context) prompt.control(mk::kBos);

  bool drop = opt.drop_thinking;
  for (const auto& m : full) {
    const Json* tools = m.src ? get(*m.src, "tools") : nullptr;
    if (tools && py_truthy(*tools)) drop = false;
  }
  size_t num_to_render = full.size() - context_len;
  if (opt.thinking && drop) {
    // The reference counts the rendered tail as len(drop(full)) - len(drop(context)); keep that exactly.
    std::vector<Msg> ctx_only(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(context_len));
    size_t dropped_ctx = drop_thinking_messages(ctx_only).size();
    full = drop_thinking_messages(full);
    num_to_render = full.size() >= dropped_ctx ? full.size() - dropped_ctx : 0;
    context_len = full.size() - num_to_render;
  }
  for (size_t i = 0; i < num_to_render; ++i)
    render_message(prompt, context_len + i, full, opt.thinking, drop, opt.reasoning_effort);
  return prompt;
}

std::string render_prompt(const Json& messages, const EncodeOptions& opt) {
  return render_prompt_pieces(messages, opt).str();
}

Prompt& Prompt::add(std::string_view s, bool control) {
  if (s.empty()) return *this;
  if (!pieces_.empty() && pieces_.back().control == control) {
    pieces_.back().text += s;
  } else {
    pieces_.push_back({std::string(s), control});
  }
  return *this;
}

std::string Prompt::str() const {
  std::string out;
  for (const auto& p : pieces_) out += p.text;
  return out;
}

EncodeOptions options_from_json(const Json& o) {
  EncodeOptions opt;
  if (o.is_null()) return opt;
  if (!o.is_object()) fail("options must be a JSON object, got {}", o.type_name());
  for (const auto& [key, v] : o.items()) {
    if (key == "thinking_mode") {
      if (v == "thinking") {
        opt.thinking = true;
      } else if (v == "chat") {
        opt.thinking = false;
      } else {
        fail("options.thinking_mode must be \"chat\" or \"thinking\", got {}", v.dump());
      }
    } else if (key == "drop_thinking" || key == "add_default_bos_token") {
      if (!v.is_boolean()) fail("options.{} must be a boolean, got {}", key, v.dump());
      (key == "drop_thinking" ? opt.drop_thinking : opt.add_bos) = v.get<bool>();
    } else if (key == "reasoning_effort") {
      if (v.is_null()) {
        opt.reasoning_effort.clear();
      } else if (v == "high" || v == "max") {
        opt.reasoning_effort = v.get<std::string>();
      } else {
        fail("options.reasoning_effort must be null, \"high\" or \"max\", got {}", v.dump());
      }
    } else if (key == "context") {
      if (!v.is_null() && !v.is_array()) fail("options.context must be null or an array, got {}", v.type_name());
      opt.context = v;
    } else {
      fail("unknown option '{}' (expected thinking_mode, drop_thinking, add_default_bos_token, "
           "reasoning_effort, context)",
           key);
    }
  }
  return opt;
}

}  // namespace dsv4::chat
