#pragma once
// GPT-2 byte-level alphabet: every byte maps to one printable code point, so a byte string can be
// spelled as text in vocab.json / tokenizer.json ("Ġ" is the space byte 0x20).
#include <cstdint>
#include <string>
#include <string_view>

namespace dsv4::tok::byte_level {

char32_t byte_to_cp(uint8_t b);

// The byte a code point stands for, or -1 when the code point is outside the alphabet.
int cp_to_byte(char32_t cp);

// Spells raw bytes in the alphabet (UTF-8 of the mapped code points).
std::string map(std::string_view raw);

// Maps an alphabet string back to bytes. Returns false (out unspecified) when some character is
// outside the alphabet; the input must be valid UTF-8.
bool unmap(std::string_view text, std::string& out);

// What HF's ByteLevel decoder gives for one token: unmapped bytes when every character is in the
// alphabet, else the token's own UTF-8 bytes unchanged.
std::string decode_token(std::string_view token);

}  // namespace dsv4::tok::byte_level
