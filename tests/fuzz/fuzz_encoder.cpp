// Prompt encoder: a JSON conversation → prompt text. The input is a golden-chat.jsonl style object
// {"messages": [...], "options": {...}} or a bare messages array. render_prompt must return text or
// throw dsv4::Error naming the problem; nothing else may escape (a route would answer 500).
#include "chat/encoder.h"
#include "core/error.h"
#include "core/json.h"
#include "fuzz_util.h"

using namespace dsv4;
using namespace dsv4::chat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Json in;
  try {
    in = parse_json<Json>(fuzz::as_text(data, size), "conversation");
  } catch (const Json::exception&) {
    return 0;
  } catch (const Error&) {
    return 0;  // too deep
  }
  try {
    EncodeOptions opt;
    const Json* messages = &in;
    if (in.is_object()) {
      if (in.contains("options")) opt = options_from_json(in["options"]);
      if (!in.contains("messages")) return 0;
      messages = &in["messages"];
    }
    const std::string prompt = render_prompt(*messages, opt);
    FUZZ_CHECK(is_valid_utf8(prompt), "the prompt is not valid UTF-8");
    // Rendering is a pure function of its input.
    FUZZ_CHECK(render_prompt(*messages, opt) == prompt, "two renders differ");
    // The pieces the ids are encoded from spell the same prompt, each piece valid UTF-8 on its own.
    const Prompt pieces = render_prompt_pieces(*messages, opt);
    FUZZ_CHECK(pieces.str() == prompt, "the prompt pieces do not concatenate to the prompt");
    for (const auto& p : pieces.pieces()) FUZZ_CHECK(is_valid_utf8(p.text), "a prompt piece is not valid UTF-8");
  } catch (const Error&) {
  }
  return 0;
}
