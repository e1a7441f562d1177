#pragma once
// One exception type for every user-facing failure: the message names the file, key or tensor at fault.
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace dsv4 {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A step could not run because something outside this process is gone (a peer rank of an MPI job):
// the server answers 503, so a client retries elsewhere and a supervisor restarts the job.
struct Unavailable : Error {
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace dsv4

#define DSV4_CHECK(cond, ...)            \
  do {                                   \
    if (!(cond)) ::dsv4::fail(__VA_ARGS__); \
  } while (0)
