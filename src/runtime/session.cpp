#include "runtime/session.h"

#include <algorithm>

#include "chat/markers.h"

namespace dsv4 {

OutputParser::OutputParser(const Tokenizer& tok, OutputMode mode, int32_t eos_id, int32_t think_close_id,
                           std::vector<std::string> stops, bool logprobs, int64_t prompt_tokens)
    : tok_(tok), eos_id_(eos_id), think_close_id_(think_close_id), stops_(std::move(stops)), logprobs_(logprobs) {
  in_reasoning_ = mode == OutputMode::ChatThinking;
  if (mode != OutputMode::Raw) parser_ = std::make_unique<chat::StreamParser>(mode == OutputMode::ChatThinking);
  out_.usage.prompt_tokens = prompt_tokens;
}

void OutputParser::feed(std::string_view text, Delta& d) {
  if (text.empty()) return;
  if (!parser_) {
    d.content += text;
    return;
  }
  if (broken_) return;
  try {
    d += parser_->push(text);
  } catch (const Error& e) {
    malformed(e);
  }
}

bool OutputParser::event(const GenerationEvent& e, Delta& d) {
  using K = GenerationEvent::Kind;
  if (done_) return !broken_;
  out_.usage.cached_tokens = e.cached_tokens;
  if (e.kind == K::Token) {
    out_.usage.completion_tokens = e.completion_tokens;
    if (e.token >= 0) {
      generated_.push_back(e.token);
      if (in_reasoning_) {
        ++out_.usage.reasoning_tokens;
        if (e.token == think_close_id_) in_reasoning_ = false;
      }
      if (logprobs_) d.tokens.push_back({e.token, e.logprob, e.top});
    }
    raw_ += e.text;
    feed(e.text, d);
  } else if (e.kind == K::Done || e.kind == K::Error) {
    finish(e, d);
  }
  if (!d.tool_calls.empty()) any_call_ = true;
  if (done_ && any_call_ && out_.finish_reason == FinishReason::Stop) out_.finish_reason = FinishReason::ToolCalls;
  return !broken_;
}

void OutputParser::finish(const GenerationEvent& e, Delta& d) {
  done_ = true;
  out_.usage.prompt_tokens = e.prompt_tokens;
  out_.usage.completion_tokens = e.completion_tokens;
  if (e.kind == GenerationEvent::Kind::Error) {
    out_.finish_reason = FinishReason::Error;
    out_.error = e.error;
    out_.unavailable = e.unavailable;
    return;
  }
  out_.finish_reason = e.finish_reason;
  const bool stop = e.finish_reason == FinishReason::Stop;
  out_.eos = stop && e.stop_token >= 0 && e.stop_token == eos_id_;
  if (stop && e.stop_token < 0 && !stops_.empty()) {
    // Which stop string ended the text: the one that starts where the emitted text ends.
    const std::string all = tok_.decode(generated_);
    if (all.size() >= raw_.size())
      for (const auto& s : stops_)
        if (all.compare(raw_.size(), s.size(), s) == 0) {
          out_.stop_sequence = s;
          break;
        }
  }
  if (parser_ && !broken_) {
    try {
      // As `dsv4 run` does: the EOS text completes the parser's input.
      if (out_.eos) d += parser_->push(tok_.token_text(e.stop_token));
      d += out_.eos ? parser_->finish() : parser_->finish_truncated();
    } catch (const Error& ex) {
      malformed(ex);
    }
  }
  // Stopped because the text was malformed: it ends where it became unreadable.
  if (broken_ && out_.finish_reason == FinishReason::Cancelled) out_.finish_reason = FinishReason::Stop;
}

void OutputParser::malformed(const Error& e) {
  broken_ = true;
  parse_error_ = e.what();
}

Session::Session(Scheduler& sched, GenerationRequest req, OutputMode mode)
    : sched_(sched),
      q_(std::make_shared<Queue>()),
      out_(sched.tokenizer(), mode, int32_t(sched.model().config().eos_token_id),
           sched.tokenizer().token_id(chat::marker::kThinkClose), req.stop, req.top_logprobs >= 0,
           int64_t(req.prompt.size())) {
  t0_ = std::chrono::steady_clock::now();
  auto q = q_;  // the callback may outlive this object (it runs until the scheduler's Done)
  id_ = sched.submit(std::move(req), [q](const GenerationEvent& e) {
    {
      std::lock_guard<std::mutex> lk(q->mu);
      q->events.push_back(e);
    }
    q->cv.notify_one();
  });
}

Session::~Session() {
  if (!done()) sched_.cancel(id_);
}

void Session::cancel() {
  if (!cancelled_.exchange(true)) sched_.cancel(id_);
}

Session::Status Session::next(Delta& d, std::chrono::milliseconds wait) {
  if (done()) return Status::Done;
  std::deque<GenerationEvent> evs;
  {
    std::unique_lock<std::mutex> lk(q_->mu);
    q_->cv.wait_for(lk, wait, [&] { return !q_->events.empty(); });
    evs.swap(q_->events);
  }
  bool data = false;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& e : evs) {
    if (e.kind == GenerationEvent::Kind::Token) {
      data = true;
      if (ttft_ == 0) ttft_ = std::max(std::chrono::duration<double>(now - t0_).count(), 1e-9);
    }
    if (!out_.event(e, d) && !done()) cancel();  // malformed output: nothing more can be shown
    if (out_.done()) break;                      // nothing follows Done
  }
  if (done()) return Status::Done;
  return data && !d.empty() ? Status::Data : Status::Idle;
}

}  // namespace dsv4
