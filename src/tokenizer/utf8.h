#pragma once
// UTF-8 helpers shared by the tokenizer: validation, lossy decoding (U+FFFD for each maximal
// ill-formed subpart, the rule Rust's from_utf8_lossy and HF tokenizers follow), code points.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv4::tok::utf8 {

enum class Seq { kValid, kInvalid, kIncomplete };

// Classifies the sequence that starts at p[0] (n >= 1 bytes available). *len receives the
// sequence length (kValid), the maximal ill-formed subpart length (kInvalid, >= 1), or n
// (kIncomplete: every byte so far is a valid prefix but the sequence runs past the end).
Seq classify(const unsigned char* p, size_t n, size_t* len);

// Offset of the first byte that is not part of a well-formed sequence; s.size() when valid.
size_t first_invalid(std::string_view s);

// Appends bytes to out, replacing each maximal ill-formed subpart with U+FFFD.
void append_lossy(std::string& out, std::string_view bytes);

void append_cp(std::string& out, char32_t cp);

// Decodes the code point at s[i] of valid UTF-8; *len receives its byte length.
char32_t decode_at(std::string_view s, size_t i, size_t* len);

// Start of the code point that ends at s[end - 1] (s valid UTF-8, end > 0).
size_t prev_start(std::string_view s, size_t end);

// Unicode White_Space property (what Rust's char::is_whitespace tests).
bool is_white_space(char32_t cp);

}  // namespace dsv4::tok::utf8
