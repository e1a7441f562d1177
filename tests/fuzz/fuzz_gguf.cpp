// One GGUF file written from the input. GgufFile must reject it with dsv4::Error or bind tensors inside
// the file; the deepseek4 views (Checkpoint, load_config) must do the same on top of it.
#include "core/error.h"
#include "fuzz_util.h"
#include "io/config.h"
#include "io/gguf.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = fuzz::scratch_dir() / "model.gguf";
  fuzz::write_file(path, fuzz::as_text(data, size));
  try {
    dsv4::GgufFile f(path.string());
    const uint8_t* begin = f.mapped().data();
    for (const auto& t : f.tensors()) {
      FUZZ_CHECK(t.data >= begin && t.nbytes <= size && size_t(t.data - begin) <= size - t.nbytes,
                 "%s: [%zu, +%zu) outside a %zu-byte file", t.name.c_str(), size_t(t.data - begin), t.nbytes, size);
      volatile uint8_t sink = t.data[0] ^ t.data[t.nbytes - 1];  // an out-of-range span faults here
      (void)sink;
    }
  } catch (const dsv4::Error&) {
  }
  try {
    const dsv4::Checkpoint ck(path.string());
    for (const auto& [name, t] : ck.tensors()) {
      if (!t->nbytes) continue;
      volatile uint8_t sink = t->data[0] ^ t->data[t->nbytes - 1];
      (void)sink;
    }
  } catch (const dsv4::Error&) {
  }
  try {
    (void)dsv4::load_config(path.string());
  } catch (const dsv4::Error&) {
  }
  return 0;
}
