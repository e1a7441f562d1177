// Tokenizer commands:
//   dsv4 tokenize -m PATH [--no-special]   stdin: UTF-8 text (read exactly)  stdout: JSON array of ids
//   dsv4 detokenize -m PATH                stdin: JSON array of ids          stdout: the text, as is
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/json.h"
#include "tokenizer/tokenizer.h"

namespace dsv4::cli {
namespace {

std::string read_stdin() {
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, stdin)) > 0) data.append(buf, n);
  if (std::ferror(stdin)) fail("error reading standard input");
  return data;
}

void write_stdout(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size() || std::fflush(stdout) != 0) {
    fail("error writing standard output");
  }
}

std::vector<int32_t> parse_id_array(const std::string& text, size_t vocab_size) {
  nlohmann::json j;
  try {
    j = parse_json(text, "standard input");
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a huge number
    fail("standard input is not valid JSON (expected an array of token ids): {}", e.what());
  }
  if (!j.is_array()) fail("standard input must be a JSON array of token ids, got a JSON {}", j.type_name());
  std::vector<int32_t> ids;
  ids.reserve(j.size());
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& v = j[i];
    if (!v.is_number_integer()) fail("element {} of the id array is not an integer: {}", i, v.dump());
    const int64_t id = v.get<int64_t>();
    if (id < 0 || static_cast<uint64_t>(id) >= vocab_size) {
      fail("element {} of the id array: token id {} is out of range (vocab size {})", i, id, vocab_size);
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

}  // namespace

void register_tokenizer_commands(CLI::App& app) {
  struct Args {
    std::string model;
    bool no_special = false;
  };
  auto args = std::make_shared<Args>();

  CLI::App* tok = app.add_subcommand("tokenize", "encode UTF-8 text from stdin; print a JSON array of token ids");
  tok->add_option("-m,--model", args->model, "checkpoint folder or tokenizer.json")->required();
  tok->add_flag("--no-special", args->no_special, "do not match added/special tokens: encode them as plain text");
  tok->callback([args] {
    const Tokenizer t = Tokenizer::load(args->model);
    const std::string text = read_stdin();
    std::vector<int32_t> ids;
    try {
      ids = t.encode(text, !args->no_special);
    } catch (const Error& e) {
      fail("standard input: {}", e.what());
    }
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ',';
      out += std::to_string(ids[i]);
    }
    out += "]\n";
    write_stdout(out);
    set_exit_code(0);
  });

  CLI::App* detok = app.add_subcommand("detokenize", "decode a JSON array of token ids from stdin; print the text");
  detok->add_option("-m,--model", args->model, "checkpoint folder or tokenizer.json")->required();
  detok->callback([args] {
    const Tokenizer t = Tokenizer::load(args->model);
    const std::vector<int32_t> ids = parse_id_array(read_stdin(), t.vocab_size());
    write_stdout(t.decode(ids));  // exactly the text: no newline added
    set_exit_code(0);
  });
}

}  // namespace dsv4::cli
