#include "tokenizer/model_fit.h"

#include "core/error.h"

namespace dsv4 {

void check_tokenizer_fits(const Tokenizer& tok, const ModelVocab& m, const std::string& where) {
  // An id past the embedding rows would index outside the weights.
  if (tok.vocab_size() > static_cast<size_t>(m.vocab_size))
    fail("{}: tokenizer.json has ids up to {}, beyond config.json vocab_size = {} (the model's rows)", where,
         tok.vocab_size() - 1, m.vocab_size);
  // Without its EOS token generation never stops; without BOS no prompt can be encoded.
  for (auto [key, id] : {std::pair{"eos_token_id", m.eos_id}, std::pair{"bos_token_id", m.bos_id}})
    if (!tok.has_token(id)) fail("{}: config.json {} = {} is not a token of tokenizer.json", where, key, id);
}

}  // namespace dsv4
