// OpenAI routes: POST /v1/chat/completions, /v1/completions and /v1/chat/render (the prompt a chat
// request renders to, for checking clients' history conversion and the prefix cache).
#include "server/chat_request.h"
#include "server/http.h"
#include "server/routes.h"

namespace dsv4::server {

namespace {

Json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}},
          {"completion_tokens_details", {{"reasoning_tokens", u.reasoning_tokens}}}};
}

// A generation that ended without an answer: the model failed, or the server is shutting down.
void check_outcome(const Context& ctx, const Outcome& o) {
  if (auto e = outcome_error(ctx, o)) throw *e;
}

Json tool_calls_json(const std::vector<chat::ToolCall>& calls, size_t first_index, bool with_index) {
  Json out = Json::array();
  for (size_t i = 0; i < calls.size(); ++i) {
    Json c = {{"id", random_id("call_")},
              {"type", "function"},
              {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (with_index) c["index"] = first_index + i;
    out.push_back(std::move(c));
  }
  return out;
}

struct ChatJob {
  ChatPrompt prompt;
  GenerationRequest req;
  OutputMode mode = OutputMode::Chat;
  bool stream = false, include_usage = false, logprobs = false;
};

// `render_only`: for /v1/chat/render, which may show a closed conversation.
ChatJob chat_job(Context& ctx, const Json& body, bool render_only = false) {
  ctx.check_model(body);
  const Json* msgs = field(body, "messages");
  if (!msgs) bad_request("messages", "'messages' is required");
  ChatInputs in;
  in.messages = openai_messages(*msgs, "messages");
  in.tools = select_tools(opt_array(body, "tools", ""), field(body, "tool_choice"), "tools");
  if (const Json* rf = opt_object(body, "response_format", "")) {
    const auto type = opt_string(*rf, "type", "response_format").value_or("text");
    if (type != "text" && type != "json_object" && type != "json_schema")
      bad_request("response_format.type", "'response_format.type' must be text, json_object or json_schema");
    if (type != "text") in.response_format = *rf;
  }
  apply_thinking(ctx, body, in);
  // A final assistant message is continued, as llama.cpp and Anthropic do; vLLM's explicit flag is read
  // too. Its reasoning is already closed: content follows.
  const auto cont = opt_bool(body, "continue_final_message", "");
  const bool ends_assistant = in.messages.back()["role"] == "assistant";
  if (cont && *cont && !ends_assistant)
    bad_request("continue_final_message", "'continue_final_message' is true but the last message is not an assistant message");
  // false keeps the final turn closed, as the encoder renders a whole conversation: /v1/chat/render shows
  // it, but there is nothing to answer (this prompt format has no new assistant turn after an assistant's).
  const bool closed = cont && !*cont && ends_assistant;
  if (closed && !render_only)
    bad_request("continue_final_message",
                "'continue_final_message' is false but the last message is an assistant message: this model's prompt "
                "cannot open a new assistant turn after it; drop it, add a user message, or let it be continued");
  const bool prefix = !closed && continue_final_message(in.messages, "messages");
  ChatJob job;
  job.mode = in.thinking && !prefix ? OutputMode::ChatThinking : OutputMode::Chat;
  job.prompt = render_chat(ctx, std::move(in));
  check_n(body);
  job.stream = opt_bool(body, "stream", "").value_or(false);
  if (const Json* so = opt_object(body, "stream_options", ""))
    job.include_usage = opt_bool(*so, "include_usage", "stream_options").value_or(false);
  job.logprobs = opt_bool(body, "logprobs", "").value_or(false);
  auto top = opt_int(body, "top_logprobs", "");
  if (top && (*top < 0 || *top > 20)) bad_request("top_logprobs", "'top_logprobs' must be between 0 and 20");
  if (top && !job.logprobs) bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  job.req.prompt = job.prompt.ids;
  job.req.sampling = parse_sampling(ctx, body);
  job.req.stop = opt_stop(body, "stop", "");
  apply_ignore_eos(ctx, body, job.req, job.mode);
  job.req.top_logprobs = job.logprobs ? int(top.value_or(0)) : -1;
  auto mt = opt_int(body, "max_completion_tokens", "");
  const char* mt_name = "max_completion_tokens";
  if (!mt) mt = opt_int(body, "max_tokens", ""), mt_name = "max_tokens";
  set_max_tokens(ctx, job.req, mt, mt_name);
  return job;
}

void chat_completions(Context& ctx, const httplib::Request& http, httplib::Response& res) {
  const Json body = parse_body(http.body);
  ChatJob job = chat_job(ctx, body);
  const bool thinking = job.mode == OutputMode::ChatThinking;
  auto gen = std::make_shared<Generation>(ctx, std::move(job.req), job.mode, ConnectionWatch::of(http));
  const std::string id = random_id("chatcmpl-");
  const int64_t created = unix_time();
  const std::string model = ctx.model_id();
  auto logprobs_json = [&ctx](const std::vector<TokenInfo>& toks) {
    Json c = Json::array();
    for (const auto& t : toks) c.push_back(token_logprob_json(ctx.tok(), t));
    return Json{{"content", c}, {"refusal", nullptr}};
  };

  if (!job.stream) {
    Delta d = run_to_end(*gen);
    const Outcome& o = gen->outcome();
    check_outcome(ctx, o);
    Json msg = {{"role", "assistant"}, {"content", d.content}};
    if (thinking) msg["reasoning_content"] = d.reasoning;
    if (!d.tool_calls.empty()) {
      msg["tool_calls"] = tool_calls_json(d.tool_calls, 0, false);
      if (d.content.empty()) msg["content"] = nullptr;
    }
    Json choice = {{"index", 0},
                   {"message", msg},
                   {"logprobs", job.logprobs ? logprobs_json(d.tokens) : Json()},
                   {"finish_reason", finish_reason_name(o.finish_reason)}};
    send_json(res, {{"id", id},
                    {"object", "chat.completion"},
                    {"created", created},
                    {"model", model},
                    {"system_fingerprint", "dsv4"},
                    {"choices", Json::array({choice})},
                    {"usage", usage_json(o.usage)}});
    return;
  }

  struct State {
    bool role_sent = false;
    size_t calls = 0;
  };
  auto st = std::make_shared<State>();
  const bool include_usage = job.include_usage, want_lp = job.logprobs;
  auto chunk = [=](Json delta, Json finish, Json lp) {
    Json c = {{"id", id},
              {"object", "chat.completion.chunk"},
              {"created", created},
              {"model", model},
              {"system_fingerprint", "dsv4"},
              {"choices", Json::array({{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(lp)},
                                        {"finish_reason", std::move(finish)}}})}};
    if (include_usage) c["usage"] = nullptr;
    return c;
  };
  StreamHooks h;
  h.on_delta = [=](SseWriter& w, Delta& d) {
    Json delta = Json::object();
    if (!st->role_sent) {
      delta["role"] = "assistant";
      delta["content"] = "";
      st->role_sent = true;
    }
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty()) delta["content"] = d.content;
    if (!d.tool_calls.empty()) {
      delta["tool_calls"] = tool_calls_json(d.tool_calls, st->calls, true);
      st->calls += d.tool_calls.size();
    }
    w.data(chunk(std::move(delta), nullptr, want_lp && !d.tokens.empty() ? logprobs_json(d.tokens) : Json()));
  };
  h.keep_alive = [](SseWriter& w) { w.text(": keep-alive\n\n"); };
  h.on_done = [=, &ctx](SseWriter& w, const Outcome& o) {
    if (auto e = outcome_error(ctx, o)) {
      w.data(error_body(*e, ErrorStyle::OpenAI));
    } else {
      Json delta = Json::object();
      if (!st->role_sent) delta = {{"role", "assistant"}, {"content", ""}};
      w.data(chunk(std::move(delta), finish_reason_name(o.finish_reason), nullptr));
      if (include_usage) {
        Json u = chunk(Json::object(), nullptr, nullptr);
        u["choices"] = Json::array();
        u["usage"] = usage_json(o.usage);
        w.data(u);
      }
    }
    w.text("data: [DONE]\n\n");
  };
  stream_response(ctx, res, gen, std::move(h));
}

void chat_render(Context& ctx, const httplib::Request& http, httplib::Response& res) {
  const Json body = parse_body(http.body);
  ChatJob job = chat_job(ctx, body, true);
  send_json(res, {{"prompt", job.prompt.text},
                  {"tokens", job.prompt.ids},
                  {"num_tokens", job.prompt.ids.size()},
                  {"thinking", job.prompt.enc.thinking},
                  {"reasoning_effort", job.prompt.enc.reasoning_effort},
                  {"messages", job.prompt.messages}});
}

// The prompt of /v1/completions: text (special tokens parsed, no BOS added) or token ids.
std::vector<int32_t> completion_prompt(const Context& ctx, const Json& body, std::string& text) {
  const Json* p = field(body, "prompt");
  if (!p) bad_request("prompt", "'prompt' is required");
  const Json* one = p;
  if (p->is_array() && !p->empty() && (p->front().is_string() || p->front().is_array())) {
    if (p->size() != 1) bad_request("prompt", "'prompt' may hold one prompt per request");
    one = &p->front();
  }
  if (one->is_string()) {
    text = one->get<std::string>();
    return ctx.tok().encode(text, true);
  }
  if (!one->is_array()) bad_request("prompt", "'prompt' must be a string, an array of token ids, or an array of one of those");
  std::vector<int32_t> ids;
  const int64_t V = ctx.sched.model().config().vocab_size;
  for (const auto& t : *one) {
    if (!t.is_number_integer()) bad_request("prompt", "'prompt' token ids must be integers");
    const int64_t v = t.get<int64_t>();
    if (v < 0 || v >= V) bad_request("prompt", fmt::format("'prompt' token id {} is outside the vocabulary [0, {})", v, V));
    ids.push_back(int32_t(v));
  }
  text = ctx.tok().decode(ids);
  return ids;
}

void completions(Context& ctx, const httplib::Request& http, httplib::Response& res) {
  const Json body = parse_body(http.body);
  ctx.check_model(body);
  std::string prompt_text;
  GenerationRequest req;
  req.prompt = completion_prompt(ctx, body, prompt_text);
  check_n(body);
  if (auto b = opt_int(body, "best_of", ""); b && *b != 1) bad_request("best_of", "'best_of' must be 1");
  if (auto s = opt_string(body, "suffix", ""); s && !s->empty()) bad_request("suffix", "'suffix' is not supported");
  const bool echo = opt_bool(body, "echo", "").value_or(false);
  const bool stream = opt_bool(body, "stream", "").value_or(false);
  bool include_usage = false;
  if (const Json* so = opt_object(body, "stream_options", ""))
    include_usage = opt_bool(*so, "include_usage", "stream_options").value_or(false);
  auto lp = opt_int(body, "logprobs", "");
  if (lp && (*lp < 0 || *lp > 20)) bad_request("logprobs", "'logprobs' must be between 0 and 20");
  req.top_logprobs = lp ? int(*lp) : -1;
  req.sampling = parse_sampling(ctx, body);
  req.stop = opt_stop(body, "stop", "");
  apply_ignore_eos(ctx, body, req, OutputMode::Raw);
  // OpenAI's default for this route is 16 tokens.
  set_max_tokens(ctx, req, opt_int(body, "max_tokens", "").value_or(16), "max_tokens", "prompt");
  auto gen = std::make_shared<Generation>(ctx, std::move(req), OutputMode::Raw, ConnectionWatch::of(http));
  const std::string id = random_id("cmpl-");
  const int64_t created = unix_time();
  const std::string model = ctx.model_id();
  const bool want_lp = lp.has_value();
  // Legacy logprobs: parallel arrays, text offsets counted in bytes from the start of `text`.
  auto lp_json = [&ctx](const std::vector<TokenInfo>& toks, size_t offset) {
    Json tokens = Json::array(), lps = Json::array(), tops = Json::array(), offs = Json::array();
    for (const auto& t : toks) {
      const std::string s = ctx.tok().token_text(t.id);
      tokens.push_back(s);
      lps.push_back(t.logprob);
      Json top = Json::object();
      for (const auto& a : t.top) top[ctx.tok().token_text(a.id)] = a.logprob;
      tops.push_back(top);
      offs.push_back(offset);
      offset += s.size();
    }
    return Json{{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
  };
  auto usage = [](const Usage& u) {
    return Json{{"prompt_tokens", u.prompt_tokens},
                {"completion_tokens", u.completion_tokens},
                {"total_tokens", u.prompt_tokens + u.completion_tokens},
                {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
  };
  auto body_of = [=](Json choices) {
    return Json{{"id", id}, {"object", "text_completion"}, {"created", created}, {"model", model},
                {"system_fingerprint", "dsv4"}, {"choices", std::move(choices)}};
  };
  const std::string prefix = echo ? prompt_text : "";
  if (!stream) {
    Delta d = run_to_end(*gen);
    check_outcome(ctx, gen->outcome());
    Json c = {{"index", 0},
              {"text", prefix + d.content},
              {"logprobs", want_lp ? lp_json(d.tokens, prefix.size()) : Json()},
              {"finish_reason", finish_reason_name(gen->outcome().finish_reason)}};
    Json out = body_of(Json::array({c}));
    out["usage"] = usage(gen->outcome().usage);
    send_json(res, out);
    return;
  }
  auto offset = std::make_shared<size_t>(0);
  StreamHooks h;
  h.on_start = [=](SseWriter& w) {
    if (!prefix.empty())
      w.data(body_of(Json::array({{{"index", 0}, {"text", prefix}, {"logprobs", nullptr}, {"finish_reason", nullptr}}})));
    *offset = prefix.size();
  };
  h.on_delta = [=](SseWriter& w, Delta& d) {
    Json c = {{"index", 0},
              {"text", d.content},
              {"logprobs", want_lp ? lp_json(d.tokens, *offset) : Json()},
              {"finish_reason", nullptr}};
    *offset += d.content.size();
    w.data(body_of(Json::array({c})));
  };
  h.keep_alive = [](SseWriter& w) { w.text(": keep-alive\n\n"); };
  h.on_done = [=, &ctx](SseWriter& w, const Outcome& o) {
    if (auto e = outcome_error(ctx, o)) {
      w.data(error_body(*e, ErrorStyle::OpenAI));
    } else {
      w.data(body_of(Json::array({{{"index", 0}, {"text", ""}, {"logprobs", nullptr}, {"finish_reason", finish_reason_name(o.finish_reason)}}})));
      if (include_usage) {
        Json u = body_of(Json::array());
        u["usage"] = usage(o.usage);
        w.data(u);
      }
    }
    w.text("data: [DONE]\n\n");
  };
  stream_response(ctx, res, gen, std::move(h));
}

}  // namespace

void add_openai_routes(httplib::Server& svr, Context& ctx) {
  auto S = ErrorStyle::OpenAI;
  auto chat = [&ctx](auto& q, auto& r) { chat_completions(ctx, q, r); };
  auto comp = [&ctx](auto& q, auto& r) { completions(ctx, q, r); };
  add_route(svr, ctx, "POST", "/v1/chat/completions", "/v1/chat/completions", S, chat);
  add_route(svr, ctx, "POST", "/v1/chat/render", "/v1/chat/render", S, [&ctx](auto& q, auto& r) { chat_render(ctx, q, r); });
  add_route(svr, ctx, "POST", "/v1/completions", "/v1/completions", S, comp);
  // The same routes without the /v1 prefix, as other OpenAI-compatible servers accept them.
  add_route(svr, ctx, "POST", "/chat/completions", "/v1/chat/completions", S, chat);
  add_route(svr, ctx, "POST", "/completions", "/v1/completions", S, comp);
}

}  // namespace dsv4::server
