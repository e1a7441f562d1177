// A checkpoint folder from the input: pieces separated by kSep are model.safetensors.index.json
// (the first; empty means no index) and the shard files s1.safetensors, s2.safetensors, ... .
// Checkpoint must reject a bad folder with dsv4::Error; every tensor it lists must be bound.
#include "core/error.h"
#include "fuzz_util.h"
#include "io/safetensors.h"

namespace {
constexpr std::string_view kSep = "\n--8<--\n";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto pieces = fuzz::split(fuzz::as_text(data, size), kSep);
  if (pieces.size() > 9) return -1;  // a handful of shards covers every rule; reject from the corpus
  const auto dir = fuzz::scratch_dir() / "ckpt";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  if (!pieces[0].empty()) fuzz::write_file(dir / "model.safetensors.index.json", pieces[0]);
  for (size_t i = 1; i < pieces.size(); ++i)
    fuzz::write_file(dir / ("s" + std::to_string(i) + ".safetensors"), pieces[i]);
  try {
    dsv4::Checkpoint ck(dir.string());
    for (const auto& [name, t] : ck.tensors()) {
      FUZZ_CHECK(t && ck.find(name) == t, "%s: unbound", name.c_str());
      if (t->nbytes) {
        volatile uint8_t sink = t->data[0] ^ t->data[t->nbytes - 1];
        (void)sink;
      }
    }
  } catch (const dsv4::Error&) {
  }
  return 0;
}
