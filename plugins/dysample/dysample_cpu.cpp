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

// One output row of `Channels` channels at once: out_c[ox] = sum_k in_c[index_k[ox]] *
// weight_k[ox], summed in the reference's order (products first, then left to right, no
// fused multiply-add). Several channels per pass share each load of the taps.
template <int Channels, typename T>
void interpolate_rows(const T* const* in, const RowTaps& taps, T* const* out, int64_t width) {
  const int32_t *i0 = taps.index[0].data(), *i1 = taps.index[1].data();
  const int32_t *i2 = taps.index[2].data(), *i3 = taps.index[3].data();
  const float *w0 = taps.weight[0].data(), *w1 = taps.weight[1].data();
  const float *w2 = taps.weight[2].data(), *w3 = taps.weight[3].data();
  for (int64_t ox = 0; ox < width; ++ox) {
    const int32_t a = i0[ox], b = i1[ox], c = i2[ox], e = i3[ox];
    const float wa = w0[ox], wb = w1[ox], wc = w2[ox], we = w3[ox];
    for (int k = 0; k < Channels; ++k) {
      const T* plane = in[k];
      const float v = static_cast<float>(plane[a]) * wa + static_cast<float>(plane[b]) * wb +
                      static_cast<float>(plane[c]) * wc + static_cast<float>(plane[e]) * we;
      out[k][ox] = static_cast<T>(v);
    }
  }
}

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
      constexpr int kBlock = 4;
      const T* in[kBlock];
      T* rows_out[kBlock];
      for (int64_t cc = 0; cc < group_channels; cc += kBlock) {
        const int count = static_cast<int>(group_channels - cc < kBlock ? group_channels - cc : kBlock);
        for (int k = 0; k < count; ++k) {
          const int64_t c = g * group_channels + cc + k;
          in[k] = x + (b * d.channels + c) * plane;
          rows_out[k] = out + (b * d.channels + c) * out_plane + oy * out_w;
        }
        if (count == kBlock) {
          interpolate_rows<kBlock>(in, taps, rows_out, out_w);
        } else {
          for (int k = 0; k < count; ++k) interpolate_rows<1>(in + k, taps, rows_out + k, out_w);
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
