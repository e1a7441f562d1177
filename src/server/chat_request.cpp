#include "server/chat_request.h"

#include "core/json.h"

namespace dsv4::server {

bool valid_tool_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
          c == '.' || c == ':'))
      return false;
  return true;
}

void check_tool_name(const std::string& name, const std::string& param) {
  if (name.empty()) bad_request(param, fmt::format("'{}' is required", param));
  if (!valid_tool_name(name))
    bad_request(param, fmt::format("'{}' must match ^[A-Za-z0-9_.:-]{{1,64}}$, got {}", param, dump(Json(name))));
}

std::string check_arguments(const std::string& args, const std::string& param) {
  if (args.find_first_not_of(" \t\r\n") == std::string::npos) return "{}";
  Json parsed;
  try {
    // Python's json.loads (the reference encoder) rejects a leading BOM, which nlohmann skips.
    if (args.starts_with("\xEF\xBB\xBF")) throw nlohmann::json::parse_error::create(101, 0, "BOM", nullptr);
    parsed = parse_json<Json>(args, param);
  } catch (const JsonTooDeep& e) {
    bad_request(param, e.what());
  } catch (const nlohmann::json::exception&) {
    bad_request(param, fmt::format("'{}' must be a JSON object encoded as a string; it is not valid JSON", param));
  }
  if (!parsed.is_object())
    bad_request(param, fmt::format("'{}' must encode a JSON object, got {}", param, parsed.type_name()));
  return args;
}

std::string content_text(const Json& content, const std::string& param) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request(param, fmt::format("'{}' must be a string or an array of content parts", param));
  std::string out;
  bool first = true;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& p = content[i];
    const std::string where = fmt::format("{}[{}]", param, i);
    if (p.is_string()) {  // a bare string part (accepted by several clients)
      out += (first ? "" : "\n\n") + p.get<std::string>();
      first = false;
      continue;
    }
    if (!p.is_object()) bad_request(where, fmt::format("'{}' must be a content part object", where));
    const std::string type = opt_string(p, "type", where).value_or("text");
    if (type != "text" && type != "input_text" && type != "output_text")
      bad_request(where + ".type",
                  fmt::format("'{}': content parts of type '{}' are not supported (this model reads text)", where, type));
    auto t = opt_string(p, "text", where);
    if (!t) bad_request(where + ".text", fmt::format("'{}.text' is required", where));
    out += (first ? "" : "\n\n") + *t;
    first = false;
  }
  return out;
}

namespace {

Json tool_calls_of(const Json& calls, const std::string& where) {
  if (!calls.is_array()) bad_request(where, fmt::format("'{}' must be an array", where));
  Json out = Json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    const std::string w = fmt::format("{}[{}]", where, k);
    const Json& c = calls[k];
    if (!c.is_object()) bad_request(w, fmt::format("'{}' must be an object", w));
    const Json* fn = opt_object(c, "function", w);
    if (!fn) bad_request(w + ".function", fmt::format("'{}.function' is required", w));
    auto name = opt_string(*fn, "name", w + ".function");
    check_tool_name(name.value_or(""), w + ".function.name");
    Json args = "{}";
    if (const Json* a = field(*fn, "arguments")) {
      if (!a->is_string() && !a->is_object())
        bad_request(w + ".function.arguments", fmt::format("'{}.function.arguments' must be a JSON string", w));
      args = a->is_string() ? Json(check_arguments(a->get<std::string>(), w + ".function.arguments")) : *a;
    }
    Json call = {{"type", "function"}, {"function", {{"name", *name}, {"arguments", args}}}};
    if (auto id = opt_string(c, "id", w)) call["id"] = *id;
    out.push_back(std::move(call));
  }
  return out;
}

}  // namespace

Json openai_messages(const Json& messages, const std::string& param) {
  if (!messages.is_array()) bad_request(param, fmt::format("'{}' must be an array", param));
  if (messages.empty()) bad_request(param, fmt::format("'{}' must not be empty", param));
  Json out = Json::array();
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string w = fmt::format("{}[{}]", param, i);
    const Json& m = messages[i];
    if (!m.is_object()) bad_request(w, fmt::format("'{}' must be an object", w));
    auto role = opt_string(m, "role", w);
    if (!role) bad_request(w + ".role", fmt::format("'{}.role' is required", w));
    const Json* content = field(m, "content");
    const std::string text = content ? content_text(*content, w + ".content") : "";
    Json o = Json::object();
    if (*role == "system" || *role == "developer") {
      o = {{"role", "system"}, {"content", text}};
    } else if (*role == "user") {
      o = {{"role", "user"}, {"content", text}};
    } else if (*role == "assistant") {
      o = {{"role", "assistant"}, {"content", text}};
      // DeepSeek's field, and the name some clients use for it.
      auto r = opt_string(m, "reasoning_content", w);
      if (!r) r = opt_string(m, "reasoning", w);
      if (r) o["reasoning_content"] = *r;
      if (const Json* tc = field(m, "tool_calls"); tc && !tc->empty()) o["tool_calls"] = tool_calls_of(*tc, w + ".tool_calls");
      if (auto pre = opt_bool(m, "prefix", w); pre && *pre) {
        if (i + 1 != messages.size())
          bad_request(w + ".prefix", fmt::format("'{}': only the last message may be an assistant prefix", w));
        o["wo_eos"] = true;  // DeepSeek's chat prefix completion: the answer continues this text
      }
    } else if (*role == "tool") {
      auto id = opt_string(m, "tool_call_id", w);
      o = {{"role", "tool"}, {"content", text}};
      if (id) o["tool_call_id"] = *id;
    } else {
      bad_request(w + ".role",
                  fmt::format("'{}.role' must be one of system, developer, user, assistant, tool; got '{}'", w, *role));
    }
    out.push_back(std::move(o));
  }
  return out;
}

bool continue_final_message(Json& messages, const std::string& param) {
  if (messages.empty() || messages.back().value("role", "") != "assistant") return false;
  Json& last = messages.back();
  if (last.contains("tool_calls"))
    bad_request(param, fmt::format("'{}' ends in an assistant message with tool calls: send their results (tool "
                                   "messages), or end with assistant text to continue it",
                                   param));
  const bool has_reasoning = last.contains("reasoning_content") && !last["reasoning_content"].get_ref<const std::string&>().empty();
  if (last["content"].get_ref<const std::string&>().empty() && !has_reasoning && !last.contains("wo_eos")) {
    messages.erase(messages.size() - 1);
    if (messages.empty()) bad_request(param, fmt::format("'{}' holds only an empty assistant message", param));
    return continue_final_message(messages, param);
  }
  last["wo_eos"] = true;
  return true;
}

Json select_tools(const Json* tools, const Json* tool_choice, const std::string& param) {
  Json out = Json::array();
  if (tools) {
    if (!tools->is_array()) bad_request(param, fmt::format("'{}' must be an array", param));
    for (size_t k = 0; k < tools->size(); ++k) {
      const std::string w = fmt::format("{}[{}]", param, k);
      const Json& t = (*tools)[k];
      if (!t.is_object()) bad_request(w, fmt::format("'{}' must be an object", w));
      auto type = opt_string(t, "type", w).value_or("function");
      if (type != "function")
        bad_request(w + ".type", fmt::format("'{}.type': only function tools are supported, got '{}'", w, type));
      const Json* fn = opt_object(t, "function", w);
      if (!fn) bad_request(w + ".function", fmt::format("'{}.function' is required", w));
      auto name = opt_string(*fn, "name", w + ".function");
      check_tool_name(name.value_or(""), w + ".function.name");
      opt_object(*fn, "parameters", w + ".function");
      out.push_back({{"type", "function"}, {"function", *fn}});
    }
  }
  if (!tool_choice) return out;
  if (tool_choice->is_string()) {
    const std::string c = tool_choice->get<std::string>();
    if (c == "none") return Json::array();
    if (c == "auto" || c == "required" || c == "any") return out;
    bad_request("tool_choice", fmt::format("'tool_choice' must be none, auto, required or a function, got '{}'", c));
  }
  if (!tool_choice->is_object()) bad_request("tool_choice", "'tool_choice' must be a string or an object");
  // {"type": "function", "function": {"name"}} (chat), {"type": "function", "name"} (responses).
  std::string name;
  if (const Json* fn = opt_object(*tool_choice, "function", "tool_choice")) name = opt_string(*fn, "name", "tool_choice.function").value_or("");
  if (name.empty()) name = opt_string(*tool_choice, "name", "tool_choice").value_or("");
  if (name.empty()) {
    const std::string type = opt_string(*tool_choice, "type", "tool_choice").value_or("");
    if (type == "none") return Json::array();
    if (type == "auto" || type == "any" || type == "required" || type == "allowed_tools") return out;
    bad_request("tool_choice", "'tool_choice' names no function");
  }
  Json one = Json::array();
  for (const auto& t : out)
    if (t["function"]["name"] == name) one.push_back(t);
  if (one.empty()) bad_request("tool_choice", fmt::format("'tool_choice' names '{}', which is not in 'tools'", name));
  return one;
}

bool map_effort(const std::string& v, const std::string& param, std::string& out) {
  // The DeepSeek API's mapping; the preview encoder renders "low" like "high" (no prefix).
  if (v == "none") return false;
  if (v == "minimal" || v == "low") out = "";
  else if (v == "medium" || v == "high" || v == "xhigh") out = "high";
  else if (v == "max" || v == "ultra") out = "max";
  else
    bad_request(param, fmt::format("'{}' must be one of none, minimal, low, medium, high, xhigh, max; got '{}'", param, v));
  return true;
}

void apply_thinking(const Context& ctx, const Json& body, ChatInputs& in) {
  std::optional<bool> thinking;
  if (auto e = opt_string(body, "reasoning_effort", "")) {
    if (!map_effort(*e, "reasoning_effort", in.effort)) thinking = false;
  }
  if (const Json* k = opt_object(body, "chat_template_kwargs", "")) {
    if (auto t = opt_bool(*k, "thinking", "chat_template_kwargs")) thinking = *t;
    else if (auto t2 = opt_bool(*k, "enable_thinking", "chat_template_kwargs")) thinking = *t2;
    if (auto e = opt_string(*k, "reasoning_effort", "chat_template_kwargs"))
      if (!map_effort(*e, "chat_template_kwargs.reasoning_effort", in.effort)) thinking = false;
  }
  if (const Json* t = opt_object(body, "thinking", "")) {
    auto type = opt_string(*t, "type", "thinking");
    if (type == "enabled" || type == "adaptive") thinking = true;
    else if (type == "disabled") thinking = false;
    else bad_request("thinking.type", "'thinking.type' must be 'enabled' or 'disabled'");
  }
  in.thinking = thinking.value_or(ctx.opt.default_thinking);
}

ChatPrompt render_chat(const Context& ctx, ChatInputs in) {
  ChatPrompt p;
  p.messages = std::move(in.messages);
  if (!in.tools.empty() || !in.response_format.is_null()) {
    // The encoder reads tools (and the response format) from the system message.
    if (p.messages.empty() || p.messages[0]["role"] != "system")
      p.messages.insert(p.messages.begin(), Json{{"role", "system"}, {"content", ""}});
    if (!in.tools.empty()) p.messages[0]["tools"] = std::move(in.tools);
    if (!in.response_format.is_null()) p.messages[0]["response_format"] = std::move(in.response_format);
  }
  p.enc.thinking = in.thinking;
  p.enc.reasoning_effort = in.thinking ? in.effort : "";
  chat::Prompt pieces;
  try {
    pieces = chat::render_prompt_pieces(p.messages, p.enc);
  } catch (const Error& e) {
    bad_request("messages", e.what());
  }
  p.text = pieces.str();
  // Content is encoded as text: a message spelling "<｜User｜>" cannot forge a turn.
  p.ids = chat::encode_prompt(ctx.tok(), pieces);
  return p;
}

}  // namespace dsv4::server
