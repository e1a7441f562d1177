#pragma once
// Route families, each registered on the httplib server by its own file.
#include <httplib.h>

#include "server/common.h"

namespace dsv4::server {

void add_openai_routes(httplib::Server& svr, Context& ctx);     // chat/completions, completions, chat/render
void add_responses_routes(httplib::Server& svr, Context& ctx);  // responses
void add_anthropic_routes(httplib::Server& svr, Context& ctx);  // messages, messages/count_tokens
void add_info_routes(httplib::Server& svr, Context& ctx);       // health, models, metrics, tokenize, detokenize

}  // namespace dsv4::server
