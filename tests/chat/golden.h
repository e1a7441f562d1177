#pragma once
// Loads the golden vectors copied from the official encoder (tests/data/encoding/).
#include <fstream>
#include <string>
#include <vector>

#include "chat/pyjson.h"

namespace dsv4::chat::testing {

inline std::vector<Json> load_jsonl(const std::string& name) {
  std::string path = std::string(DSV4_TEST_DATA) + "/encoding/" + name;
  std::ifstream in(path);
  std::vector<Json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(Json::parse(line));
  return out;
}

// gtest parameter names allow only [A-Za-z0-9_].
inline std::string test_name(const Json& rec) {
  std::string s = rec.at("id").get<std::string>();
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

}  // namespace dsv4::chat::testing
