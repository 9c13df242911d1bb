// The CPU loop: one task per (batch, group, output row). The row's taps are computed once from
// the offsets, then reused for every channel of the group, so offsets are read once per output
// pixel and each channel's output row is written contiguously.
#include "dysample_cpu.h"

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(DYSAMPLE_WITH_TORCH)
#include <c10/util/Half.h>
#endif

namespace deploykit {
namespace dysample {

// A row's taps as structure-of-arrays with 32-bit indices: out-of-plane taps get index 0 and
// weight 0 (0 * finite = 0, as the reference's masked load), so the channel loop is
// branch-free loads and multiply-adds.
struct RowTaps {
  std::vector<int32_t> index[4];
  std::vector<float> weight[4];

  explicit RowTaps(int64_t width) {
    for (int k = 0; k < 4; ++k) {
      index[k].resize(static_cast<std::size_t>(width));
      weight[k].resize(static_cast<std::size_t>(width));
    }
  }

  void set(int64_t ox, const Taps& t) {
    for (int k = 0; k < 4; ++k) {
      index[k][ox] = static_cast<int32_t>(t.index[k]);
      weight[k][ox] = t.valid[k] ? t.weight[k] : 0.0f;
    }
  }
};

template <typename T>
void sample_cpu(const T* x, const T* offset, T* out, const Dims& d) {
  const int64_t out_h = d.out_height(), out_w = d.out_width();
  const int64_t plane = d.height * d.width, out_plane = out_h * out_w;
  const int64_t group_channels = d.group_channels();
  const int64_t rows = d.batch * d.groups * out_h;
  auto load = [](T v) { return static_cast<float>(v); };

#pragma omp parallel
  {
    RowTaps taps(out_w);
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t oy = row % out_h;
      const int64_t g = (row / out_h) % d.groups;
      const int64_t b = row / (out_h * d.groups);
      const T* batch_offset = offset + b * d.offset_channels() * plane;
      for (int64_t ox = 0; ox < out_w; ++ox) taps.set(ox, taps_for(batch_offset, d, g, oy, ox, load));
      const int32_t *i0 = taps.index[0].data(), *i1 = taps.index[1].data();
      const int32_t *i2 = taps.index[2].data(), *i3 = taps.index[3].data();
      const float *w0 = taps.weight[0].data(), *w1 = taps.weight[1].data();
      const float *w2 = taps.weight[2].data(), *w3 = taps.weight[3].data();
      for (int64_t cc = 0; cc < group_channels; ++cc) {
        const int64_t c = g * group_channels + cc;
        const T* in = x + (b * d.channels + c) * plane;
        T* out_row = out + (b * d.channels + c) * out_plane + oy * out_w;
        for (int64_t ox = 0; ox < out_w; ++ox) {
          const float v = load(in[i0[ox]]) * w0[ox] + load(in[i1[ox]]) * w1[ox] + load(in[i2[ox]]) * w2[ox] +
                          load(in[i3[ox]]) * w3[ox];
          out_row[ox] = static_cast<T>(v);
        }
      }
    }
  }
}

template void sample_cpu<float>(const float*, const float*, float*, const Dims&);
#if defined(DYSAMPLE_WITH_TORCH)
template void sample_cpu<c10::Half>(const c10::Half*, const c10::Half*, c10::Half*, const Dims&);
#endif

}  // namespace dysample
}  // namespace deploykit
