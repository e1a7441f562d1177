// run and chat: talk to a checkpoint in text, through the same scheduler the server uses.
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "chat/encoder.h"
#include "chat/parser.h"
#include "cli/commands.h"
#include "cli/generation_args.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "runtime/scheduler.h"
#include "runtime/session.h"

namespace dsv4::cli {

namespace {

std::atomic<Scheduler*> g_sched{nullptr};
std::atomic<uint64_t> g_request{0};

void on_sigint(int) {
  // Stops the current answer; a second Ctrl-C while idle exits.
  if (auto* s = g_sched.load(); s && g_request.load()) s->cancel(g_request.load());
  else std::_Exit(130);
}

struct TurnResult {
  std::string content, reasoning;
  std::vector<chat::ToolCall> tool_calls;
  Outcome outcome;
  double prefill_seconds = 0, decode_seconds = 0;
  uint64_t spec_steps = 0, spec_drafted = 0, spec_accepted = 0;  // this turn's share (one request at a time)
};

// Streams one assistant turn: reasoning dimmed (or hidden), content plain.
TurnResult run_turn(Scheduler& sched, const GenerationArgs& ga, const chat::Json& messages, bool thinking,
                    bool show_reasoning) {
  chat::EncodeOptions eo;
  eo.thinking = thinking;
  eo.reasoning_effort = ga.reasoning_effort;
  // Message content is encoded as text: only the encoder's markers become control tokens.
  GenerationRequest req = ga.request(chat::encode_prompt(sched.tokenizer(), chat::render_prompt_pieces(messages, eo)));
  const bool tty = isatty(STDOUT_FILENO);
  TurnResult out;
  bool in_reasoning = false;
  auto show = [&](const Delta& d) {
    if (!d.reasoning.empty()) {
      out.reasoning += d.reasoning;
      if (show_reasoning) {
        if (!in_reasoning && tty) std::fputs("\x1b[2m", stdout);
        in_reasoning = true;
        std::fwrite(d.reasoning.data(), 1, d.reasoning.size(), stdout);
      }
    }
    if (!d.content.empty()) {
      if (in_reasoning) {
        std::fputs(tty ? "\x1b[0m\n" : "\n", stdout);
        in_reasoning = false;
      }
      out.content += d.content;
      std::fwrite(d.content.data(), 1, d.content.size(), stdout);
    }
    for (auto& tc : d.tool_calls) out.tool_calls.push_back(tc);
    std::fflush(stdout);
  };
  const auto t0 = std::chrono::steady_clock::now();
  const SchedulerStats before = sched.stats();
  Session s(sched, std::move(req), thinking ? OutputMode::ChatThinking : OutputMode::Chat);
  g_request = s.id();
  bool reported = false;
  for (;;) {
    Delta d;
    const Session::Status st = s.next(d, std::chrono::milliseconds(100));
    show(d);
    if (s.output().broken() && !reported) {
      reported = true;  // malformed model output: what was shown stays
      std::fprintf(stderr, "\n[completion not well-formed: %s]\n", s.output().parse_error().c_str());
    }
    if (st == Session::Status::Done) break;
  }
  g_request = 0;
  if (in_reasoning && tty) std::fputs("\x1b[0m", stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  out.outcome = s.outcome();
  const SchedulerStats after = sched.stats();
  out.spec_steps = after.spec_steps - before.spec_steps;
  out.spec_drafted = after.spec_drafted - before.spec_drafted;
  out.spec_accepted = after.spec_accepted - before.spec_accepted;
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ttft = s.time_to_first_token();
  out.prefill_seconds = ttft > 0 ? ttft : total;
  out.decode_seconds = ttft > 0 ? std::max(total - ttft, 0.0) : 0;
  return out;
}

void print_speed(const TurnResult& r) {
  const Usage& u = r.outcome.usage;
  const double pp = double(u.prompt_tokens - u.cached_tokens) / std::max(r.prefill_seconds, 1e-9);
  const double tg = u.completion_tokens > 1 ? double(u.completion_tokens - 1) / std::max(r.decode_seconds, 1e-9) : 0;
  std::string spec;
  if (r.spec_drafted > 0)
    spec = fmt::format(" | drafts: {:.1f}% accepted, {:.2f} tokens per step", 100.0 * double(r.spec_accepted) / double(r.spec_drafted),
                       1.0 + double(r.spec_accepted) / double(std::max<uint64_t>(r.spec_steps, 1)));
  std::fprintf(stderr, "prompt: %lld tokens (%lld cached), %.2f tokens/s | generation: %lld tokens, %.2f tokens/s%s | %s\n",
               (long long)u.prompt_tokens, (long long)u.cached_tokens, pp, (long long)u.completion_tokens, tg,
               spec.c_str(), finish_reason_name(r.outcome.finish_reason));
}

chat::Json base_messages(const std::string& system) {
  chat::Json m = chat::Json::array();
  if (!system.empty()) m.push_back({{"role", "system"}, {"content", system}});
  return m;
}

void cmd_run(const GenerationArgs& ga, const std::string& prompt, const std::string& system) {
  auto eng = ga.load();
  std::signal(SIGINT, on_sigint);
  g_sched = eng->sched.get();
  chat::Json msgs = base_messages(system);
  msgs.push_back({{"role", "user"}, {"content", prompt}});
  TurnResult r = run_turn(*eng->sched, ga, msgs, ga.think, true);
  print_speed(r);
  g_sched = nullptr;
  if (r.outcome.finish_reason == FinishReason::Error) fail("generation failed: {}", r.outcome.error);
}

void cmd_chat(const GenerationArgs& ga, const std::string& system, bool hide_reasoning) {
  auto eng = ga.load();
  std::signal(SIGINT, on_sigint);
  g_sched = eng->sched.get();
  bool think = ga.think;
  chat::Json msgs = base_messages(system);
  const bool tty = isatty(STDIN_FILENO);
  if (tty) std::fprintf(stderr, "dsv4 chat: /reset clears the history, /think on|off, /exit quits, Ctrl-C stops an answer\n");
  std::string line;
  for (;;) {
    if (tty) std::fputs("> ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      msgs = base_messages(system);
      std::fputs("[history cleared]\n", stdout);
      continue;
    }
    if (line.rfind("/think", 0) == 0) {
      think = line.find("on") != std::string::npos;
      std::printf("[thinking %s]\n", think ? "on" : "off");
      continue;
    }
    msgs.push_back({{"role", "user"}, {"content", line}});
    TurnResult r = run_turn(*eng->sched, ga, msgs, think, !hide_reasoning);
    if (r.outcome.finish_reason == FinishReason::Error) {
      // The turn is dropped from the history; the session goes on (a later turn may work).
      std::fprintf(stderr, "error: generation failed: %s\n", r.outcome.error.c_str());
      msgs.erase(msgs.end() - 1);
      continue;
    }
    chat::Json reply = {{"role", "assistant"}, {"content", r.content}};
    if (think) reply["reasoning_content"] = r.reasoning;
    msgs.push_back(reply);
    print_speed(r);
  }
  g_sched = nullptr;
}

}  // namespace

void register_run_commands(CLI::App& app) {
  static GenerationArgs run_args, chat_args;
  static std::string prompt, system, chat_system;
  static bool hide = false;
  auto* run = app.add_subcommand("run", "answer one prompt, streaming the text");
  run_args.add(run);
  run->add_option("-p,--prompt", prompt, "the user message")->required();
  run->add_option("--system", system, "system prompt");
  run->callback([] { cmd_run(run_args, prompt, system); });

  auto* ch = app.add_subcommand("chat", "interactive multi-turn chat");
  chat_args.add(ch);
  ch->add_option("--system", chat_system, "system prompt");
  ch->add_flag("--hide-reasoning", hide, "do not show the reasoning of thinking mode");
  ch->callback([] { cmd_chat(chat_args, chat_system, hide); });
}

}  // namespace dsv4::cli
