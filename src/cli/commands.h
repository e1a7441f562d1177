#pragma once
// Every subcommand lives in its own cmd_*.cpp with one register function, listed in register_all.
#include <CLI/CLI.hpp>

namespace dsv4::cli {

// Commands report their exit status here (CLI11 callbacks return void).
void set_exit_code(int code);
int exit_code();

void register_model_commands(CLI::App& app);      // inspect, logits, generate
void register_tokenizer_commands(CLI::App& app);  // tokenize, detokenize
void register_chat_commands(CLI::App& app);       // render-prompt, parse-completion
void register_run_commands(CLI::App& app);        // run, chat
void register_eval_commands(CLI::App& app);       // perplexity
void register_serve_commands(CLI::App& app);      // serve
void register_quantize_commands(CLI::App& app);   // quantize, imatrix

inline void register_all(CLI::App& app) {
  register_model_commands(app);
  register_tokenizer_commands(app);
  register_chat_commands(app);
  register_run_commands(app);
  register_eval_commands(app);
  register_serve_commands(app);
  register_quantize_commands(app);
}

}  // namespace dsv4::cli
