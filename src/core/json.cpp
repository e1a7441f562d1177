#include "core/json.h"

#include <vector>

namespace dsv4 {

namespace {

// Tracks the path to the current value; stops at the first container past the limit.
struct DepthCheck {
  struct Level {
    bool array;
    size_t index = 0;
    std::string key;
  };
  int max_depth;
  std::vector<Level> stack;
  bool too_deep = false;

  void value() {
    if (!stack.empty() && stack.back().array) ++stack.back().index;
  }
  bool open(bool array) {
    if (int(stack.size()) >= max_depth) {
      too_deep = true;
      return false;
    }
    stack.push_back(Level{array, 0, {}});
    return true;
  }
  bool close() {
    stack.pop_back();
    value();
    return true;
  }

  bool null() { return value(), true; }
  bool boolean(bool) { return value(), true; }
  bool number_integer(nlohmann::json::number_integer_t) { return value(), true; }
  bool number_unsigned(nlohmann::json::number_unsigned_t) { return value(), true; }
  bool number_float(nlohmann::json::number_float_t, const std::string&) { return value(), true; }
  bool string(std::string&) { return value(), true; }
  bool binary(nlohmann::json::binary_t&) { return value(), true; }
  bool start_object(size_t) { return open(false); }
  bool key(std::string& k) {
    stack.back().key = k;
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(size_t) { return open(true); }
  bool end_array() { return close(); }
  bool parse_error(size_t, const std::string&, const nlohmann::json::exception&) { return false; }

  // "tools[0].function.parameters.properties.a…": the first levels name the field; the rest is noise.
  std::string path() const {
    std::string p;
    const size_t shown = std::min<size_t>(stack.size(), 8);
    for (size_t i = 0; i < shown; ++i) {
      if (stack[i].array) {
        p += '[' + std::to_string(stack[i].index) + ']';
      } else {
        if (!p.empty()) p += '.';
        p += stack[i].key;
      }
    }
    if (stack.size() > shown) p += "…";
    return p.empty() ? "$" : p;
  }
};

}  // namespace

void check_json_depth(std::string_view text, std::string_view what, int max_depth) {
  DepthCheck c{max_depth, {}};
  nlohmann::json::sax_parse(text.begin(), text.end(), &c);
  if (c.too_deep) {
    std::string path = c.path();
    // Formatted before the move: argument evaluation order is unspecified.
    std::string msg = fmt::format("{} nests deeper than {} levels (at {})", what, max_depth, path);
    throw JsonTooDeep(std::move(msg), std::move(path));
  }
}

}  // namespace dsv4
