// OpenAI Responses API: POST /v1/responses (stateless: the client sends the whole conversation; reasoning,
// message and function_call output items; streaming in the Responses event schema).
#include <algorithm>

#include "server/chat_request.h"
#include "server/http.h"
#include "server/routes.h"

namespace dsv4::server {

namespace {

// Responses tools are flat ({type, name, parameters}); chat-format tools are accepted too.
Json chat_tools(const Json* tools) {
  Json out = Json::array();
  if (!tools) return out;
  for (size_t k = 0; k < tools->size(); ++k) {
    const std::string w = fmt::format("tools[{}]", k);
    const Json& t = (*tools)[k];
    if (!t.is_object()) bad_request(w, fmt::format("'{}' must be an object", w));
    const auto type = opt_string(t, "type", w).value_or("function");
    if (type != "function")
      bad_request(w + ".type", fmt::format("'{}.type': only function tools are supported, got '{}'", w, type));
    if (field(t, "function")) {
      out.push_back(t);
      continue;
    }
    auto name = opt_string(t, "name", w);
    check_tool_name(name.value_or(""), w + ".name");
    Json fn = {{"name", *name}};
    if (auto d = opt_string(t, "description", w)) fn["description"] = *d;
    if (const Json* p = opt_object(t, "parameters", w)) fn["parameters"] = *p;
    out.push_back({{"type", "function"}, {"function", fn}});
  }
  return out;
}

// Input items to chat messages: function_call items join the assistant turn before them, reasoning
// items give the next assistant turn its reasoning_content.
Json input_messages(const Json& body) {
  Json msgs = Json::array();
  if (auto ins = opt_string(body, "instructions", "")) msgs.push_back({{"role", "system"}, {"content", *ins}});
  const Json* input = field(body, "input");
  if (!input) bad_request("input", "'input' is required");
  if (input->is_string()) {
    msgs.push_back({{"role", "user"}, {"content", input->get<std::string>()}});
    return msgs;
  }
  if (!input->is_array()) bad_request("input", "'input' must be a string or an array of items");
  std::optional<std::string> reasoning;
  auto assistant = [&]() -> Json& {
    if (msgs.empty() || msgs.back()["role"] != "assistant" || msgs.back().contains("tool_calls") ||
        !msgs.back()["content"].get_ref<const std::string&>().empty()) {
      msgs.push_back({{"role", "assistant"}, {"content", ""}});
    }
    if (reasoning) msgs.back()["reasoning_content"] = *reasoning, reasoning.reset();
    return msgs.back();
  };
  for (size_t i = 0; i < input->size(); ++i) {
    const std::string w = fmt::format("input[{}]", i);
    const Json& it = (*input)[i];
    if (!it.is_object()) bad_request(w, fmt::format("'{}' must be an object", w));
    const std::string type = opt_string(it, "type", w).value_or("message");
    if (type == "message") {
      const std::string role = opt_string(it, "role", w).value_or("");
      const Json* c = field(it, "content");
      const std::string text = c ? content_text(*c, w + ".content") : "";
      if (role == "user") {
        msgs.push_back({{"role", "user"}, {"content", text}});
      } else if (role == "system" || role == "developer") {
        msgs.push_back({{"role", "system"}, {"content", text}});
      } else if (role == "assistant") {
        Json& a = assistant();
        a["content"] = a["content"].get<std::string>() + text;
      } else {
        bad_request(w + ".role", fmt::format("'{}.role' must be user, assistant, system or developer", w));
      }
    } else if (type == "function_call") {
      auto name = opt_string(it, "name", w);
      check_tool_name(name.value_or(""), w + ".name");
      auto call_id = opt_string(it, "call_id", w).value_or("");
      auto args = check_arguments(opt_string(it, "arguments", w).value_or("{}"), w + ".arguments");
      Json& a = assistant();
      if (!a.contains("tool_calls")) a["tool_calls"] = Json::array();
      a["tool_calls"].push_back(
          {{"id", call_id}, {"type", "function"}, {"function", {{"name", *name}, {"arguments", args}}}});
    } else if (type == "function_call_output") {
      const Json* out = field(it, "output");
      msgs.push_back({{"role", "tool"},
                      {"tool_call_id", opt_string(it, "call_id", w).value_or("")},
                      {"content", out ? content_text(*out, w + ".output") : ""}});
    } else if (type == "reasoning") {
      std::string r;
      for (const char* key : {"content", "summary"}) {
        const Json* parts = opt_array(it, key, w);
        if (!parts || parts->empty()) continue;
        for (const auto& p : *parts)
          if (p.is_object() && p.contains("text") && p["text"].is_string()) r += p["text"].get<std::string>();
        break;
      }
      reasoning = r;
    } else {
      bad_request(w + ".type", fmt::format("'{}.type' '{}' is not supported", w, type));
    }
  }
  return msgs;
}

// The keys of a tool_choice object other than `allowed` are a 400 naming the first.
void only_keys(const Json& tc, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, v] : tc.items())
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end())
      bad_request("tool_choice." + key, fmt::format("'tool_choice.{}' is not a field of this tool_choice", key));
}

// Responses tool_choice: "none" | "auto" | "required", {type: "function", name}, or
// {type: "allowed_tools", mode: "auto"|"required", tools: [{type: "function", name}]} (which narrows
// `tools` to those listed). Hosted-tool choices and other shapes are a 400. Returns the shape
// select_tools reads.
Json tool_choice_of(const Json& body, Json& tools) {
  const Json* tc = field(body, "tool_choice");
  if (!tc) return nullptr;
  if (tc->is_string()) {
    const auto& c = tc->get_ref<const std::string&>();
    if (c != "none" && c != "auto" && c != "required")
      bad_request("tool_choice", fmt::format("'tool_choice' must be none, auto, required or an object, got '{}'", c));
    return *tc;
  }
  if (!tc->is_object()) bad_request("tool_choice", "'tool_choice' must be a string or an object");
  const auto type = opt_string(*tc, "type", "tool_choice");
  if (!type) bad_request("tool_choice.type", "'tool_choice.type' is required (function or allowed_tools)");
  if (*type == "function") {
    only_keys(*tc, {"type", "name"});
    const auto name = opt_string(*tc, "name", "tool_choice");
    if (!name) bad_request("tool_choice.name", "'tool_choice.name' is required when 'tool_choice.type' is 'function'");
    check_tool_name(*name, "tool_choice.name");
    return {{"type", "function"}, {"name", *name}};
  }
  if (*type != "allowed_tools")
    bad_request("tool_choice.type",
                fmt::format("'tool_choice.type' must be function or allowed_tools (only function tools exist here), got '{}'",
                            *type));
  only_keys(*tc, {"type", "mode", "tools"});
  const auto mode = opt_string(*tc, "mode", "tool_choice");
  if (!mode || (*mode != "auto" && *mode != "required"))
    bad_request("tool_choice.mode", "'tool_choice.mode' must be auto or required");
  const Json* list = opt_array(*tc, "tools", "tool_choice");
  if (!list) bad_request("tool_choice.tools", "'tool_choice.tools' is required");
  std::vector<std::string> names;
  for (size_t k = 0; k < list->size(); ++k) {
    const std::string w = fmt::format("tool_choice.tools[{}]", k);
    const Json& t = (*list)[k];
    if (!t.is_object() || opt_string(t, "type", w).value_or("") != "function")
      bad_request(w, fmt::format("'{}' must be a function tool {{\"type\": \"function\", \"name\"}}", w));
    const auto name = opt_string(t, "name", w);
    check_tool_name(name.value_or(""), w + ".name");
    names.push_back(*name);
  }
  Json kept = Json::array();
  for (const auto& t : tools)
    if (std::find(names.begin(), names.end(), t["function"].value("name", "")) != names.end()) kept.push_back(t);
  tools = std::move(kept);
  return *mode;
}

Json usage_json(const Usage& u) {
  return {{"input_tokens", u.prompt_tokens},
          {"input_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"output_tokens", u.completion_tokens},
          {"output_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

// `text`: {format: {type: text} | {type: json_object} | {type: json_schema, name, schema, strict?,
// description?}, verbosity?}. Sets the encoder's response format; returns the object the response echoes.
Json text_param(const Json& body, ChatInputs& in) {
  Json echo = {{"format", {{"type", "text"}}}};
  const Json* text = opt_object(body, "text", "");
  if (!text) return echo;
  if (auto v = opt_string(*text, "verbosity", "text")) {
    if (*v != "low" && *v != "medium" && *v != "high")
      bad_request("text.verbosity", fmt::format("'text.verbosity' must be low, medium or high, got '{}'", *v));
    echo["verbosity"] = *v;
  }
  const Json* f = opt_object(*text, "format", "text");
  if (!f) return echo;
  const auto type = opt_string(*f, "type", "text.format");
  if (!type) bad_request("text.format.type", "'text.format.type' is required (text, json_object or json_schema)");
  if (*type == "json_schema") {
    const auto name = opt_string(*f, "name", "text.format");
    if (!name || name->empty()) bad_request("text.format.name", "'text.format.name' is required for json_schema");
    const Json* schema = opt_object(*f, "schema", "text.format");
    if (!schema) bad_request("text.format.schema", "'text.format.schema' (a JSON Schema object) is required for json_schema");
    Json s = {{"name", *name}, {"schema", *schema}};
    Json e = {{"type", "json_schema"}, {"name", *name}, {"schema", *schema}};
    if (auto d = opt_string(*f, "description", "text.format")) s["description"] = *d, e["description"] = *d;
    if (auto st = opt_bool(*f, "strict", "text.format")) s["strict"] = *st, e["strict"] = *st;
    in.response_format = {{"type", "json_schema"}, {"json_schema", s}};
    echo["format"] = e;
  } else if (*type == "json_object") {
    in.response_format = {{"type", "json_object"}};
    echo["format"] = {{"type", "json_object"}};
  } else if (*type != "text") {
    bad_request("text.format.type", fmt::format("'text.format.type' must be text, json_object or json_schema, got '{}'", *type));
  }
  return echo;
}

struct Job {
  Json head;  // the response object's fixed fields
  GenerationRequest req;
  OutputMode mode;
  bool stream = false, logprobs = false;
};

Job responses_job(Context& ctx, const Json& body) {
  ctx.check_model(body);
  if (field(body, "previous_response_id"))
    bad_request("previous_response_id",
                "'previous_response_id' is not supported: responses are not stored, send the whole conversation in 'input'");
  ChatInputs in;
  in.messages = openai_messages(input_messages(body), "input");
  Json tools = chat_tools(opt_array(body, "tools", ""));
  const Json choice = tool_choice_of(body, tools);
  in.tools = select_tools(&tools, choice.is_null() ? nullptr : &choice, "tools");
  check_n(body);
  const Json text_echo = text_param(body, in);
  apply_thinking(ctx, body, in);
  std::string effort_name;
  if (const Json* r = opt_object(body, "reasoning", ""))
    if (auto e = opt_string(*r, "effort", "reasoning")) {
      effort_name = *e;
      in.thinking = map_effort(*e, "reasoning.effort", in.effort);
    }
  // A final assistant message is continued (as on the other chat routes); content follows it.
  const bool prefill = continue_final_message(in.messages, "input");
  Job job;
  job.mode = in.thinking && !prefill ? OutputMode::ChatThinking : OutputMode::Chat;
  ChatPrompt p = render_chat(ctx, std::move(in));
  job.stream = opt_bool(body, "stream", "").value_or(false);
  auto top = opt_int(body, "top_logprobs", "");
  if (top && (*top < 0 || *top > 20)) bad_request("top_logprobs", "'top_logprobs' must be between 0 and 20");
  job.logprobs = top.has_value();
  job.req.prompt = p.ids;
  job.req.sampling = parse_sampling(ctx, body);
  job.req.top_logprobs = top ? int(*top) : -1;
  apply_ignore_eos(ctx, body, job.req, job.mode);
  set_max_tokens(ctx, job.req, opt_int(body, "max_output_tokens", ""), "max_output_tokens", "input");
  const Json* meta = opt_object(body, "metadata", "");
  job.head = {{"id", random_id("resp_")},
              {"object", "response"},
              {"created_at", unix_time()},
              {"model", ctx.model_id()},
              {"instructions", body.contains("instructions") ? body["instructions"] : Json()},
              {"max_output_tokens", body.contains("max_output_tokens") ? body["max_output_tokens"] : Json()},
              {"parallel_tool_calls", true},
              {"previous_response_id", nullptr},
              {"reasoning", {{"effort", effort_name.empty() ? Json() : Json(effort_name)}, {"summary", nullptr}}},
              {"store", false},
              {"temperature", job.req.sampling.temperature},
              {"top_p", job.req.sampling.top_p},
              {"text", text_echo},
              {"tool_choice", body.contains("tool_choice") ? body["tool_choice"] : Json("auto")},
              {"tools", body.contains("tools") ? body["tools"] : Json::array()},
              {"truncation", "disabled"},
              {"metadata", meta ? *meta : Json::object()},
              {"error", nullptr},
              {"incomplete_details", nullptr},
              {"usage", nullptr}};
  return job;
}

Json reasoning_item(const std::string& id, const std::string& text) {
  return {{"id", id},
          {"type", "reasoning"},
          {"summary", Json::array()},
          {"content", Json::array({{{"type", "reasoning_text"}, {"text", text}}})}};
}
Json text_part(const std::string& text, const Json& logprobs) {
  return {{"type", "output_text"}, {"text", text}, {"annotations", Json::array()}, {"logprobs", logprobs}};
}
Json message_item(const std::string& id, const std::string& status, Json content) {
  return {{"id", id}, {"type", "message"}, {"status", status}, {"role", "assistant"}, {"content", std::move(content)}};
}
Json call_item(const std::string& id, const std::string& call_id, const chat::ToolCall& c, const std::string& status) {
  return {{"id", id}, {"type", "function_call"}, {"status", status}, {"call_id", call_id}, {"name", c.name},
          {"arguments", c.arguments}};
}

// The final state of the response object.
void finish_response(Json& r, const Outcome& o) {
  r["usage"] = usage_json(o.usage);
  if (o.finish_reason == FinishReason::Length) {
    r["status"] = "incomplete";
    r["incomplete_details"] = {{"reason", "max_output_tokens"}};
  } else if (o.finish_reason == FinishReason::Error || o.finish_reason == FinishReason::Cancelled) {
    r["status"] = "failed";
    const bool failed = o.finish_reason == FinishReason::Error;
    r["error"] = {{"code", failed ? "model_error" : "server_error"},
                  {"message", failed ? "generation failed: " + o.error : "generation cancelled"}};
  } else {
    r["status"] = "completed";
  }
}

void responses(Context& ctx, const httplib::Request& http, httplib::Response& res) {
  const Json body = parse_body(http.body);
  Job job = responses_job(ctx, body);
  auto gen = std::make_shared<Generation>(ctx, std::move(job.req), job.mode, ConnectionWatch::of(http));
  Json r = job.head;
  auto lp_json = [&ctx](const std::vector<TokenInfo>& toks) {
    Json a = Json::array();
    for (const auto& t : toks) a.push_back(token_logprob_json(ctx.tok(), t));
    return a;
  };
  if (!job.stream) {
    Delta d = run_to_end(*gen);
    const Outcome& o = gen->outcome();
    // The model failed (500) or the server is shutting down (503), as on the other routes.
    if (auto e = outcome_error(ctx, o)) throw *e;
    Json out = Json::array();
    if (!d.reasoning.empty()) out.push_back(reasoning_item(random_id("rs_"), d.reasoning));
    // A message when there is text, or when nothing else came (as streamed).
    if (!d.content.empty() || (out.empty() && d.tool_calls.empty()))
      out.push_back(message_item(random_id("msg_"), "completed", Json::array({text_part(d.content, lp_json(d.tokens))})));
    for (const auto& c : d.tool_calls) out.push_back(call_item(random_id("fc_"), random_id("call_"), c, "completed"));
    r["output"] = out;
    finish_response(r, o);
    send_json(res, r);
    return;
  }

  // Streaming: one output item open at a time (reasoning, then the message, then function calls).
  struct State {
    Json r;
    int seq = 0;
    std::string open;  // "", "reasoning" or "message"
    std::string item_id, text;
    Json lps = Json::array();
  };
  auto st = std::make_shared<State>();
  st->r = r;
  st->r["status"] = "in_progress";
  st->r["output"] = Json::array();
  const bool want_lp = job.logprobs;
  auto emit = [st](SseWriter& w, const std::string& type, Json ev) {
    ev["type"] = type;
    ev["sequence_number"] = st->seq++;
    w.event(type, ev);
  };
  auto close_item = [st, emit](SseWriter& w) {
    if (st->open.empty()) return;
    const int idx = int(st->r["output"].size());
    Json item;
    if (st->open == "reasoning") {
      emit(w, "response.reasoning_text.done", {{"item_id", st->item_id}, {"output_index", idx}, {"content_index", 0}, {"text", st->text}});
      emit(w, "response.content_part.done", {{"item_id", st->item_id}, {"output_index", idx}, {"content_index", 0},
                                             {"part", {{"type", "reasoning_text"}, {"text", st->text}}}});
      item = reasoning_item(st->item_id, st->text);
    } else {
      emit(w, "response.output_text.done", {{"item_id", st->item_id}, {"output_index", idx}, {"content_index", 0},
                                            {"text", st->text}, {"logprobs", st->lps}});
      emit(w, "response.content_part.done", {{"item_id", st->item_id}, {"output_index", idx}, {"content_index", 0},
                                             {"part", text_part(st->text, st->lps)}});
      item = message_item(st->item_id, "completed", Json::array({text_part(st->text, st->lps)}));
    }
    emit(w, "response.output_item.done", {{"output_index", idx}, {"item", item}});
    st->r["output"].push_back(item);
    st->open.clear();
    st->text.clear();
    st->lps = Json::array();
  };
  auto open_item = [st, emit, close_item](SseWriter& w, const std::string& kind) {
    if (st->open == kind) return;
    close_item(w);
    st->open = kind;
    st->item_id = random_id(kind == "reasoning" ? "rs_" : "msg_");
    const int idx = int(st->r["output"].size());
    if (kind == "reasoning") {
      Json item = reasoning_item(st->item_id, "");
      item["content"] = Json::array();
      emit(w, "response.output_item.added", {{"output_index", idx}, {"item", item}});
      emit(w, "response.content_part.added", {{"item_id", st->item_id}, {"output_index", idx}, {"content_index", 0},
                                              {"part", {{"type", "reasoning_text"}, {"text", ""}}}});
    } else {
      emit(w, "response.output_item.added", {{"output_index", idx}, {"item", message_item(st->item_id, "in_progress", Json::array())}});
      emit(w, "response.content_part.added", {{"item_id", st->item_id}, {"output_index", idx}, {"content_index", 0},
                                              {"part", text_part("", Json::array())}});
    }
  };
  StreamHooks h;
  h.on_start = [st, emit](SseWriter& w) {
    emit(w, "response.created", {{"response", st->r}});
    emit(w, "response.in_progress", {{"response", st->r}});
  };
  h.on_delta = [=](SseWriter& w, Delta& d) {
    if (!d.reasoning.empty()) {
      open_item(w, "reasoning");
      st->text += d.reasoning;
      emit(w, "response.reasoning_text.delta", {{"item_id", st->item_id}, {"output_index", int(st->r["output"].size())},
                                                {"content_index", 0}, {"delta", d.reasoning}});
    }
    if (!d.content.empty()) {
      open_item(w, "message");
      st->text += d.content;
      Json lp = want_lp ? lp_json(d.tokens) : Json::array();
      for (const auto& x : lp) st->lps.push_back(x);
      emit(w, "response.output_text.delta", {{"item_id", st->item_id}, {"output_index", int(st->r["output"].size())},
                                             {"content_index", 0}, {"delta", d.content}, {"logprobs", lp}});
    }
    for (const auto& c : d.tool_calls) {
      close_item(w);
      const int i = int(st->r["output"].size());
      const std::string id = random_id("fc_"), call_id = random_id("call_");
      chat::ToolCall empty{c.name, ""};
      emit(w, "response.output_item.added", {{"output_index", i}, {"item", call_item(id, call_id, empty, "in_progress")}});
      emit(w, "response.function_call_arguments.delta", {{"item_id", id}, {"output_index", i}, {"delta", c.arguments}});
      emit(w, "response.function_call_arguments.done",
           {{"item_id", id}, {"output_index", i}, {"name", c.name}, {"arguments", c.arguments}});
      Json item = call_item(id, call_id, c, "completed");
      emit(w, "response.output_item.done", {{"output_index", i}, {"item", item}});
      st->r["output"].push_back(item);
    }
  };
  h.keep_alive = [](SseWriter& w) { w.text(": keep-alive\n\n"); };
  h.on_done = [=, &ctx](SseWriter& w, const Outcome& o) {
    if (auto e = outcome_error(ctx, o); e && e->status == 503) {
      // Shutting down: an error event (the openai client raises it), as chat completions' streams end.
      Json ev = error_body(*e, ErrorStyle::OpenAI);
      ev["code"] = e->code.empty() ? Json(e->type) : Json(e->code);
      ev["message"] = e->what();
      ev["param"] = nullptr;
      emit(w, "error", ev);
      return;
    }
    if (st->r["output"].empty() && st->open.empty()) open_item(w, "message");  // an empty answer is still a message
    close_item(w);
    finish_response(st->r, o);
    const std::string s = st->r["status"];
    emit(w, s == "completed" ? "response.completed" : s == "incomplete" ? "response.incomplete" : "response.failed",
         {{"response", st->r}});
  };
  stream_response(ctx, res, gen, std::move(h));
}

}  // namespace

void add_responses_routes(httplib::Server& svr, Context& ctx) {
  auto fn = [&ctx](const httplib::Request& q, httplib::Response& r) { responses(ctx, q, r); };
  add_route(svr, ctx, "POST", "/v1/responses", "/v1/responses", ErrorStyle::OpenAI, fn);
  add_route(svr, ctx, "POST", "/responses", "/v1/responses", ErrorStyle::OpenAI, fn);
}

}  // namespace dsv4::server
