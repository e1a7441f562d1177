// render-prompt and parse-completion: the chat format, from stdin to stdout, without a model.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "chat/encoder.h"
#include "chat/parser.h"
#include "chat/pyjson.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::cli {
namespace {

std::string read_stdin_utf8() {
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (std::cin.bad()) fail("cannot read stdin");
  size_t bad = chat::utf8_error_offset(text);
  if (bad != std::string::npos) fail("stdin is not valid UTF-8 (invalid byte sequence at offset {})", bad);
  return text;
}

void write_stdout(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size() || std::fflush(stdout) != 0) fail("cannot write stdout");
}

struct RenderArgs {
  std::string model_dir;
  bool ids = false;
};

void render_prompt_cmd(const RenderArgs& args) {
  if (args.ids && args.model_dir.empty()) fail("--ids needs -m DIR (a checkpoint folder or its tokenizer.json)");
  std::string text = read_stdin_utf8();
  chat::Json in;
  try {
    in = parse_json<chat::Json>(text, "stdin");
  } catch (const chat::Json::exception& e) {  // parse_error, or out_of_range for a huge number
    fail("stdin: invalid JSON ({})", e.what());
  }
  if (!in.is_object()) fail("stdin: expected a JSON object with \"messages\" and \"options\", got {}", in.type_name());
  // Other fields (id, name, prompt, ids of a golden vector) are ignored, so vectors can be piped in.
  auto msgs = in.find("messages");
  if (msgs == in.end()) fail("stdin: missing \"messages\"");
  auto opts = in.find("options");
  chat::EncodeOptions opt = opts == in.end() ? chat::EncodeOptions{} : chat::options_from_json(*opts);
  const chat::Prompt prompt = chat::render_prompt_pieces(*msgs, opt);
  if (!args.ids) {
    write_stdout(prompt.str());
    return;
  }
  // The prompt already holds BOS where the format wants it; markers are control tokens, content is text.
  std::vector<int32_t> ids = chat::encode_prompt(Tokenizer::load(args.model_dir), prompt);
  write_stdout(chat::Json(ids).dump() + "\n");
}

void parse_completion_cmd(const std::string& mode) {
  std::string text = read_stdin_utf8();
  chat::ParsedCompletion p = chat::parse_completion(text, mode == "thinking");
  // Python json.dumps layout, as in golden-parse.jsonl's "result".
  write_stdout(chat::py_json_dumps(chat::to_json(p)) + "\n");
}

}  // namespace

void register_chat_commands(CLI::App& app) {
  auto* render = app.add_subcommand(
      "render-prompt",
      "Render a conversation to the DeepSeek V4 prompt text. Reads one JSON object on stdin: "
      "{\"messages\": [...], \"options\": {\"thinking_mode\", \"drop_thinking\", \"add_default_bos_token\", "
      "\"reasoning_effort\", \"context\"}}; prints the prompt exactly, with no newline added.");
  auto rargs = std::make_shared<RenderArgs>();
  render->add_option("-m,--model", rargs->model_dir, "checkpoint folder (or tokenizer.json) for --ids");
  render->add_flag("--ids", rargs->ids, "print the prompt's token ids as a JSON array instead of the text");
  render->callback([rargs] {
    render_prompt_cmd(*rargs);
    set_exit_code(0);
  });

  auto mode = std::make_shared<std::string>();
  auto* parse = app.add_subcommand(
      "parse-completion",
      "Parse generated text (stdin, special tokens kept, normally ending with EOS) into "
      "{\"role\", \"content\", \"reasoning_content\", \"tool_calls\"} JSON; malformed text exits 1.");
  parse->add_option("--thinking-mode", *mode, "chat or thinking: the mode the prompt was rendered in")
      ->required()
      ->check(CLI::IsMember({"chat", "thinking"}));
  parse->callback([mode] {
    parse_completion_cmd(*mode);
    set_exit_code(0);
  });
}

}  // namespace dsv4::cli
