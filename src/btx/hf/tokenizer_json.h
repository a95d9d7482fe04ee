// The tokenizer files other tools read, written from btx's sentencepiece model so that each of
// them tokenizes exactly as btx does:
//  - tokenizer.json, Hugging Face's fast tokenizer (Rust `tokenizers`, transformers.js,
//    text-generation-inference): a BPE over the same pieces, its merges ranked by the pieces'
//    scores, byte fallback, the normaliser that btx applies (space -> "▁", a "▁" before the text
//    only when the model adds one) and no pre-tokeniser (no btx piece spans a word boundary, so
//    none is needed to stop a merge there);
//  - tokenizer_config.json, whose flags (`add_prefix_space`, `legacy`, no BOS/EOS added) make
//    the consumers that rebuild the fast tokenizer from tokenizer.model (transformers' Llama
//    converter, llama.cpp's convert_hf_to_gguf.py) build the same one, plus the chat template.
// The one text tokenized differently: a literal "▁" (U+2581) in the input, which btx keeps as its
// bytes and every sentencepiece-style normaliser reads as a space.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "btx/data/tokenizer.h"

namespace btx {

// tokenizer.json for `tok`. Models with user-defined or unused pieces (none of btx's or Llama's)
// are an error naming the tokenizer's file.
nlohmann::json hf_tokenizer_json(const Tokenizer& tok);

// tokenizer_config.json; `chat_template` is the Jinja text ("" writes none).
nlohmann::json hf_tokenizer_config(const Tokenizer& tok, int64_t model_max_length,
                                   const std::string& chat_template);

}  // namespace btx
