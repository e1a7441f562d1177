#pragma once
// JSON text exactly as Python's json.dumps(value, ensure_ascii=False) writes it: the reference encoder
// serialises tool schemas and tool-call arguments this way, and the prompt must match byte for byte.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace dsv4::chat {

// Messages keep their key order (Python dicts do), so the chat layer works on ordered_json throughout.
using Json = nlohmann::ordered_json;

// json.dumps(v, ensure_ascii=False): ", " and ": " separators, non-ASCII raw, floats as Python repr.
std::string py_json_dumps(const Json& v);
void py_json_dump_to(std::string& out, const Json& v);

// A JSON string literal with Python's escapes (\" \\ \b \f \n \r \t, other controls as \u00xx).
void py_json_quote_to(std::string& out, std::string_view s);

// Python repr(float): shortest round-trip digits, exponent form below 1e-4 or from 1e16 up, ".0" on
// integral values; NaN and infinities as json.dumps writes them.
std::string py_float_repr(double d);

// Python truthiness of a JSON value (null, false, 0, "", [] and {} are false).
bool py_truthy(const Json& v);

// Byte offset of the first invalid UTF-8 sequence (overlong, surrogate, above U+10FFFF, truncated),
// or std::string_view::npos when the text is valid.
size_t utf8_error_offset(std::string_view s);
inline bool is_valid_utf8(std::string_view s) { return utf8_error_offset(s) == std::string_view::npos; }

}  // namespace dsv4::chat
