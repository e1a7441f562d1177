// Anthropic Messages API: POST /v1/messages (text, thinking, tool_use / tool_result blocks, streaming
// events message_start ... message_stop) and POST /v1/messages/count_tokens. Errors in Anthropic's shape.
#include "core/json.h"
#include "server/chat_request.h"
#include "server/http.h"
#include "server/routes.h"

namespace dsv4::server {

namespace {

// Anthropic text fields: a string or an array of text blocks.
std::string blocks_text(const Json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (!v.is_array()) bad_request(where, fmt::format("'{}' must be a string or an array of content blocks", where));
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string w = fmt::format("{}[{}]", where, i);
    if (!v[i].is_object() || opt_string(v[i], "type", w).value_or("") != "text")
      bad_request(w, fmt::format("'{}': only text blocks are supported here", w));
    out += (out.empty() ? "" : "\n\n") + opt_string(v[i], "text", w).value_or("");
  }
  return out;
}

Json chat_messages(const Json& body) {
  Json msgs = Json::array();
  if (const Json* sys = field(body, "system")) msgs.push_back({{"role", "system"}, {"content", blocks_text(*sys, "system")}});
  const Json* in = opt_array(body, "messages", "");
  if (!in || in->empty()) bad_request("messages", "'messages' is required and must not be empty");
  for (size_t i = 0; i < in->size(); ++i) {
    const std::string w = fmt::format("messages[{}]", i);
    const Json& m = (*in)[i];
    if (!m.is_object()) bad_request(w, fmt::format("'{}' must be an object", w));
    const std::string role = opt_string(m, "role", w).value_or("");
    if (role != "user" && role != "assistant") bad_request(w + ".role", fmt::format("'{}.role' must be user or assistant", w));
    const Json* c = field(m, "content");
    if (!c) bad_request(w + ".content", fmt::format("'{}.content' is required", w));
    if (c->is_string()) {
      msgs.push_back({{"role", role}, {"content", c->get<std::string>()}});
      continue;
    }
    if (!c->is_array()) bad_request(w + ".content", fmt::format("'{}.content' must be a string or an array of blocks", w));
    Json a = {{"role", "assistant"}, {"content", ""}};
    std::string text, reasoning;
    Json calls = Json::array();
    auto flush_user = [&] {
      if (!text.empty()) msgs.push_back({{"role", "user"}, {"content", text}});
      text.clear();
    };
    for (size_t k = 0; k < c->size(); ++k) {
      const std::string b = fmt::format("{}.content[{}]", w, k);
      const Json& blk = (*c)[k];
      if (!blk.is_object()) bad_request(b, fmt::format("'{}' must be an object", b));
      const std::string type = opt_string(blk, "type", b).value_or("");
      if (type == "text") {
        text += (text.empty() ? "" : "\n\n") + opt_string(blk, "text", b).value_or("");
      } else if (type == "thinking" && role == "assistant") {
        reasoning += opt_string(blk, "thinking", b).value_or("");
      } else if (type == "redacted_thinking" && role == "assistant") {
        // Opaque to this server: nothing to render.
      } else if (type == "tool_use" && role == "assistant") {
        auto name = opt_string(blk, "name", b);
        check_tool_name(name.value_or(""), b + ".name");
        const Json* input = opt_object(blk, "input", b);
        calls.push_back({{"id", opt_string(blk, "id", b).value_or("")},
                         {"type", "function"},
                         {"function", {{"name", *name}, {"arguments", input ? *input : Json::object()}}}});
      } else if (type == "tool_result" && role == "user") {
        flush_user();
        const Json* rc = field(blk, "content");
        std::string out = rc ? blocks_text(*rc, b + ".content") : "";
        if (opt_bool(blk, "is_error", b).value_or(false)) out = "Error: " + out;
        msgs.push_back({{"role", "tool"}, {"tool_call_id", opt_string(blk, "tool_use_id", b).value_or("")}, {"content", out}});
      } else {
        bad_request(b + ".type", fmt::format("'{}': block type '{}' is not supported in a {} message", b, type, role));
      }
    }
    if (role == "user") {
      flush_user();
    } else {
      a["content"] = text;
      if (!reasoning.empty()) a["reasoning_content"] = reasoning;
      if (!calls.empty()) a["tool_calls"] = calls;
      msgs.push_back(std::move(a));
    }
  }
  return msgs;
}

Json chat_tools(const Json* tools) {
  Json out = Json::array();
  if (!tools) return out;
  for (size_t k = 0; k < tools->size(); ++k) {
    const std::string w = fmt::format("tools[{}]", k);
    const Json& t = (*tools)[k];
    if (!t.is_object()) bad_request(w, fmt::format("'{}' must be an object", w));
    const auto type = opt_string(t, "type", w).value_or("custom");
    if (type != "custom") bad_request(w + ".type", fmt::format("'{}': only custom (client) tools are supported, got '{}'", w, type));
    auto name = opt_string(t, "name", w);
    check_tool_name(name.value_or(""), w + ".name");
    Json fn = {{"name", *name}};
    if (auto d = opt_string(t, "description", w)) fn["description"] = *d;
    if (const Json* s = opt_object(t, "input_schema", w)) fn["parameters"] = *s;
    out.push_back({{"type", "function"}, {"function", fn}});
  }
  return out;
}

// Anthropic's tool_choice {type: auto|any|none} or {type: tool, name}, each with an optional
// disable_parallel_tool_use, in the shape select_tools reads; any other shape is a 400.
Json tool_choice_of(const Json& body) {
  const Json* tc = opt_object(body, "tool_choice", "");
  if (!tc) return nullptr;
  for (const auto& [key, v] : tc->items())
    if (key != "type" && key != "name" && key != "disable_parallel_tool_use")
      bad_request("tool_choice." + key,
                  fmt::format("'tool_choice.{}' is not a tool_choice field (type, name, disable_parallel_tool_use)", key));
  opt_bool(*tc, "disable_parallel_tool_use", "tool_choice");
  const auto type = opt_string(*tc, "type", "tool_choice");
  const auto name = opt_string(*tc, "name", "tool_choice");
  if (!type) bad_request("tool_choice.type", "'tool_choice.type' is required (auto, any, tool or none)");
  if (*type == "tool") {
    if (!name) bad_request("tool_choice.name", "'tool_choice.name' is required when 'tool_choice.type' is 'tool'");
    check_tool_name(*name, "tool_choice.name");
    return {{"type", "function"}, {"name", *name}};
  }
  if (*type != "auto" && *type != "any" && *type != "none")
    bad_request("tool_choice.type", fmt::format("'tool_choice.type' must be auto, any, tool or none, got '{}'", *type));
  if (name) bad_request("tool_choice.name", "'tool_choice.name' is only allowed when 'tool_choice.type' is 'tool'");
  return *type;
}

struct Job {
  ChatPrompt prompt;
  GenerationRequest req;
  OutputMode mode;
  bool stream = false;
};

Job messages_job(Context& ctx, const Json& body, bool count_only) {
  ctx.check_model(body);
  ChatInputs in;
  in.messages = openai_messages(chat_messages(body), "messages");
  const Json tools = chat_tools(opt_array(body, "tools", ""));
  const Json choice = tool_choice_of(body);
  in.tools = select_tools(&tools, choice.is_null() ? nullptr : &choice, "tools");
  in.thinking = ctx.opt.default_thinking;
  if (const Json* t = opt_object(body, "thinking", "")) {
    const auto type = opt_string(*t, "type", "thinking").value_or("");
    if (type == "enabled" || type == "adaptive") in.thinking = true;
    else if (type == "disabled") in.thinking = false;
    else bad_request("thinking.type", "'thinking.type' must be enabled or disabled");
  }
  if (const Json* oc = opt_object(body, "output_config", ""))
    if (auto e = opt_string(*oc, "effort", "output_config")) {
      if (!map_effort(*e, "output_config.effort", in.effort)) in.thinking = false;
    }
  check_n(body);
  // Prefill: a final assistant message is continued; its text is the start of the answer.
  const bool prefill = continue_final_message(in.messages, "messages");
  Job job;
  job.mode = in.thinking && !prefill ? OutputMode::ChatThinking : OutputMode::Chat;
  job.prompt = render_chat(ctx, std::move(in));
  if (count_only) return job;
  auto mt = opt_int(body, "max_tokens", "");
  if (!mt) bad_request("max_tokens", "'max_tokens' is required");
  job.stream = opt_bool(body, "stream", "").value_or(false);
  job.req.prompt = job.prompt.ids;
  job.req.sampling = parse_sampling(ctx, body, 1.0);  // Anthropic's temperature range is [0, 1]
  job.req.stop = opt_stop(body, "stop_sequences", "");
  apply_ignore_eos(ctx, body, job.req, job.mode);
  set_max_tokens(ctx, job.req, mt, "max_tokens");
  return job;
}

std::string stop_reason(const Outcome& o) {
  if (o.finish_reason == FinishReason::ToolCalls) return "tool_use";
  if (o.finish_reason == FinishReason::Length) return "max_tokens";
  if (!o.stop_sequence.empty()) return "stop_sequence";
  return "end_turn";
}

Json usage_json(const Usage& u) {
  return {{"input_tokens", u.prompt_tokens - u.cached_tokens},
          {"cache_creation_input_tokens", 0},
          {"cache_read_input_tokens", u.cached_tokens},
          {"output_tokens", u.completion_tokens}};
}

Json tool_use(const chat::ToolCall& c) {
  // The parser rebuilds arguments as JSON text; a value the model wrote unquoted may not parse.
  Json input;
  try {
    input = parse_json<Json>(c.arguments, "tool arguments");
  } catch (const std::exception&) {
  }
  if (!input.is_object()) input = {{"arguments", c.arguments}};
  return {{"type", "tool_use"}, {"id", random_id("toolu_")}, {"name", c.name}, {"input", input}};
}

void messages(Context& ctx, const httplib::Request& http, httplib::Response& res) {
  const Json body = parse_body(http.body);
  Job job = messages_job(ctx, body, false);
  const bool thinking = job.mode == OutputMode::ChatThinking;
  auto gen = std::make_shared<Generation>(ctx, std::move(job.req), job.mode, ConnectionWatch::of(http));
  const std::string id = random_id("msg_");
  const std::string model = opt_string(body, "model", "").value_or(ctx.model_id());
  if (!job.stream) {
    Delta d = run_to_end(*gen);
    const Outcome& o = gen->outcome();
    if (auto e = outcome_error(ctx, o)) throw *e;
    Json content = Json::array();
    if (thinking && !d.reasoning.empty()) content.push_back({{"type", "thinking"}, {"thinking", d.reasoning}, {"signature", ""}});
    // A text block when there is text, or when nothing else came (at least one block, as streamed).
    if (!d.content.empty() || (content.empty() && d.tool_calls.empty())) content.push_back({{"type", "text"}, {"text", d.content}});
    for (const auto& c : d.tool_calls) content.push_back(tool_use(c));
    send_json(res, {{"id", id},
                    {"type", "message"},
                    {"role", "assistant"},
                    {"model", model},
                    {"content", content},
                    {"stop_reason", stop_reason(o)},
                    {"stop_sequence", o.stop_sequence.empty() ? Json() : Json(o.stop_sequence)},
                    {"usage", usage_json(o.usage)}});
    return;
  }
  struct State {
    int index = -1;
    std::string open;  // "", "thinking" or "text"
    bool started = false;
  };
  auto st = std::make_shared<State>();
  auto stop_block = [st](SseWriter& w) {
    if (st->open.empty()) return;
    if (st->open == "thinking")
      w.event("content_block_delta", {{"type", "content_block_delta"}, {"index", st->index},
                                      {"delta", {{"type", "signature_delta"}, {"signature", ""}}}});
    w.event("content_block_stop", {{"type", "content_block_stop"}, {"index", st->index}});
    st->open.clear();
  };
  auto start_block = [st, stop_block](SseWriter& w, const std::string& kind, Json block) {
    stop_block(w);
    st->open = kind;
    ++st->index;
    w.event("content_block_start", {{"type", "content_block_start"}, {"index", st->index}, {"content_block", block}});
  };
  // message_start waits until the prefix-cache hit is known (the scheduler's first event for the request:
  // a hit, or the first token), so its usage is the final one.
  auto start = [=](SseWriter& w) {
    if (st->started) return;
    st->started = true;
    Usage u = gen->outcome().usage;
    u.completion_tokens = 0;
    Json msg = {{"id", id}, {"type", "message"}, {"role", "assistant"}, {"model", model}, {"content", Json::array()},
                {"stop_reason", nullptr}, {"stop_sequence", nullptr}, {"usage", usage_json(u)}};
    w.event("message_start", {{"type", "message_start"}, {"message", msg}});
  };
  StreamHooks h;
  h.on_wait = [=](SseWriter& w) {
    const Usage& u = gen->outcome().usage;
    if (u.cached_tokens > 0 || u.completion_tokens > 0) start(w);
  };
  h.on_delta = [=](SseWriter& w, Delta& d) {
    start(w);
    if (!d.reasoning.empty()) {
      if (st->open != "thinking") start_block(w, "thinking", {{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
      w.event("content_block_delta", {{"type", "content_block_delta"}, {"index", st->index},
                                      {"delta", {{"type", "thinking_delta"}, {"thinking", d.reasoning}}}});
    }
    if (!d.content.empty()) {
      if (st->open != "text") start_block(w, "text", {{"type", "text"}, {"text", ""}});
      w.event("content_block_delta", {{"type", "content_block_delta"}, {"index", st->index},
                                      {"delta", {{"type", "text_delta"}, {"text", d.content}}}});
    }
    for (const auto& c : d.tool_calls) {
      Json tu = tool_use(c);
      Json input = tu["input"];
      tu["input"] = Json::object();
      start_block(w, "tool_use", tu);
      w.event("content_block_delta", {{"type", "content_block_delta"}, {"index", st->index},
                                      {"delta", {{"type", "input_json_delta"}, {"partial_json", dump(input)}}}});
      stop_block(w);
    }
  };
  h.keep_alive = [st](SseWriter& w) {
    // Nothing may precede message_start but an SSE comment, which every parser skips.
    if (st->started) w.event("ping", {{"type", "ping"}});
    else w.text(": keep-alive\n\n");
  };
  h.on_done = [=, &ctx](SseWriter& w, const Outcome& o) {
    if (auto e = outcome_error(ctx, o)) {
      w.event("error", error_body(*e, ErrorStyle::Anthropic));
      return;
    }
    start(w);
    if (st->index < 0) start_block(w, "text", {{"type", "text"}, {"text", ""}});  // at least one block
    stop_block(w);
    w.event("message_delta", {{"type", "message_delta"},
                              {"delta", {{"stop_reason", stop_reason(o)},
                                         {"stop_sequence", o.stop_sequence.empty() ? Json() : Json(o.stop_sequence)}}},
                              {"usage", usage_json(o.usage)}});
    w.event("message_stop", {{"type", "message_stop"}});
  };
  stream_response(ctx, res, gen, std::move(h));
}

void count_tokens(Context& ctx, const httplib::Request& http, httplib::Response& res) {
  const Json body = parse_body(http.body);
  Job job = messages_job(ctx, body, true);
  send_json(res, {{"input_tokens", job.prompt.ids.size()}});
}

}  // namespace

void add_anthropic_routes(httplib::Server& svr, Context& ctx) {
  auto S = ErrorStyle::Anthropic;
  add_route(svr, ctx, "POST", "/v1/messages", "/v1/messages", S, [&ctx](auto& q, auto& r) { messages(ctx, q, r); });
  add_route(svr, ctx, "POST", "/v1/messages/count_tokens", "/v1/messages/count_tokens", S,
            [&ctx](auto& q, auto& r) { count_tokens(ctx, q, r); });
}

}  // namespace dsv4::server
