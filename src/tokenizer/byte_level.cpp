#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace dsv4::tok::byte_level {
namespace {

struct Tables {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 512> to_byte{};  // every mapped code point is below 512
  Tables() {
    to_byte.fill(-1);
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? char32_t(b) : char32_t(256 + extra++);
      to_cp[b] = cp;
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_to_cp(uint8_t b) { return tables().to_cp[b]; }

int cp_to_byte(char32_t cp) { return cp < 512 ? tables().to_byte[cp] : -1; }

std::string map(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) utf8::append_cp(out, byte_to_cp(b));
  return out;
}

bool unmap(std::string_view text, std::string& out) {
  out.clear();
  for (size_t i = 0; i < text.size();) {
    size_t len;
    const int b = cp_to_byte(utf8::decode_at(text, i, &len));
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
    i += len;
  }
  return true;
}

std::string decode_token(std::string_view token) {
  std::string out;
  if (!unmap(token, out)) out.assign(token);
  return out;
}

}  // namespace dsv4::tok::byte_level
