// One safetensors file written from the input: header length, JSON header, data region.
// SafetensorsFile must either reject it with dsv4::Error or bind tensors that lie inside the file.
#include "core/error.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = fuzz::scratch_dir() / "model.safetensors";
  fuzz::write_file(path, fuzz::as_text(data, size));
  try {
    dsv4::SafetensorsFile f(path.string());
    for (const auto& [name, t] : f.tensors()) {
      FUZZ_CHECK(uint64_t(t.numel()) * dsv4::dtype_size(t.dtype) == t.nbytes, "%s: size mismatch", name.c_str());
      if (!t.nbytes) continue;
      // Offsets are relative to the data region that starts after the header: both ends in the file.
      FUZZ_CHECK(t.nbytes <= size, "%s: %zu bytes in a %zu-byte file", name.c_str(), t.nbytes, size);
      volatile uint8_t sink = t.data[0] ^ t.data[t.nbytes - 1];  // an out-of-range span faults here
      (void)sink;
    }
  } catch (const dsv4::Error&) {
  }
  return 0;
}
