#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "chat/pyjson.h"

namespace dsv4::chat {
namespace {

TEST(PyJson, FloatReprMatchesPython) {
  // Expected strings are Python's repr() of the same doubles.
  EXPECT_EQ(py_float_repr(0.25), "0.25");
  EXPECT_EQ(py_float_repr(1.0), "1.0");
  EXPECT_EQ(py_float_repr(-2.0), "-2.0");
  EXPECT_EQ(py_float_repr(0.0), "0.0");
  EXPECT_EQ(py_float_repr(-0.0), "-0.0");
  EXPECT_EQ(py_float_repr(10.5), "10.5");
  EXPECT_EQ(py_float_repr(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(py_float_repr(1e15), "1000000000000000.0");
  EXPECT_EQ(py_float_repr(1e16), "1e+16");
  EXPECT_EQ(py_float_repr(1.5e16), "1.5e+16");
  EXPECT_EQ(py_float_repr(123456789012345678.0), "1.2345678901234568e+17");
  EXPECT_EQ(py_float_repr(0.0001), "0.0001");
  EXPECT_EQ(py_float_repr(0.00001), "1e-05");
  EXPECT_EQ(py_float_repr(1.5e-7), "1.5e-07");
  EXPECT_EQ(py_float_repr(123.456), "123.456");
  EXPECT_EQ(py_float_repr(1.7976931348623157e308), "1.7976931348623157e+308");
  EXPECT_EQ(py_float_repr(5e-324), "5e-324");
  EXPECT_EQ(py_float_repr(std::numeric_limits<double>::infinity()), "Infinity");
  EXPECT_EQ(py_float_repr(-std::numeric_limits<double>::infinity()), "-Infinity");
  EXPECT_EQ(py_float_repr(std::nan("")), "NaN");
}

TEST(PyJson, DumpsLikePython) {
  Json v = Json::parse(R"({"b": [1, -2, 3.0, true, null], "a": {"x": "y\"\\\n\t\u0001\u007f é 🙂"}, "e": {}, "f": []})");
  EXPECT_EQ(py_json_dumps(v),
            "{\"b\": [1, -2, 3.0, true, null], \"a\": {\"x\": \"y\\\"\\\\\\n\\t\\u0001\x7f é 🙂\"}, \"e\": {}, \"f\": []}");
  EXPECT_EQ(py_json_dumps(Json::parse("18446744073709551615")), "18446744073709551615");
  EXPECT_EQ(py_json_dumps(Json::parse("-9223372036854775808")), "-9223372036854775808");
  EXPECT_EQ(py_json_dumps(Json::parse("1E2")), "100.0");
  EXPECT_EQ(py_json_dumps(Json("\b\f\r\x1f")), "\"\\b\\f\\r\\u001f\"");
}

TEST(PyJson, Truthiness) {
  for (const char* f : {"null", "false", "0", "0.0", "\"\"", "[]", "{}"}) EXPECT_FALSE(py_truthy(Json::parse(f))) << f;
  for (const char* t : {"true", "1", "-1", "0.5", "\"a\"", "[0]", "{\"a\":0}"}) EXPECT_TRUE(py_truthy(Json::parse(t))) << t;
}

TEST(PyJson, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("｜DSML｜ é 🙂"));
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(is_valid_utf8("\xEF\xBD"));           // truncated
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));           // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));       // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));   // above U+10FFFF
}

}  // namespace
}  // namespace dsv4::chat
