// The CPU loop: one task per (batch, group, output row), on OpenMP (sample_cpu) or on a
// runtime's own thread pool (sample_cpu_rows, ONNX Runtime's). The row's taps are computed once from
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

// A row's taps as structure-of-arrays with 32-bit indices. An out-of-plane tap keeps index 0 (an
// address inside the plane, so the channel loop reads without branching) and valid == false,
// which bilinear_sum turns into a term of exactly 0 whatever that address holds.
struct RowTaps {
  std::vector<int32_t> index[4];
  std::vector<float> weight[4];
  std::vector<unsigned char> valid[4];

  explicit RowTaps(int64_t width) {
    for (int k = 0; k < 4; ++k) {
      index[k].resize(static_cast<std::size_t>(width));
      weight[k].resize(static_cast<std::size_t>(width));
      valid[k].resize(static_cast<std::size_t>(width));
    }
  }

  void set(int64_t ox, const Taps& t) {
    for (int k = 0; k < 4; ++k) {
      index[k][ox] = static_cast<int32_t>(t.index[k]);
      weight[k][ox] = t.weight[k];
      valid[k][ox] = t.valid[k];
    }
  }
};

// One output row of `Channels` channels at once, with bilinear_sum (the rule the CUDA kernel
// uses too). Several channels per pass share each load of the taps.
template <int Channels, typename T>
void interpolate_rows(const T* const* in, const RowTaps& taps, T* const* out, int64_t width) {
  for (int64_t ox = 0; ox < width; ++ox) {
    const float weight[4] = {taps.weight[0][ox], taps.weight[1][ox], taps.weight[2][ox], taps.weight[3][ox]};
    const bool valid[4] = {taps.valid[0][ox] != 0, taps.valid[1][ox] != 0, taps.valid[2][ox] != 0,
                           taps.valid[3][ox] != 0};
    const int32_t index[4] = {taps.index[0][ox], taps.index[1][ox], taps.index[2][ox], taps.index[3][ox]};
    for (int k = 0; k < Channels; ++k) {
      const T* plane = in[k];
      const float value[4] = {static_cast<float>(plane[index[0]]), static_cast<float>(plane[index[1]]),
                              static_cast<float>(plane[index[2]]), static_cast<float>(plane[index[3]])};
      out[k][ox] = static_cast<T>(bilinear_sum(value, weight, valid));
    }
  }
}

// One task: output row `row` (of batch_rows(d)) of one (batch, group), all the group's channels.
template <typename T>
void sample_row(const T* x, const T* offset, T* out, const Dims& d, int64_t row, RowTaps& taps) {
  const int64_t out_h = d.out_height(), out_w = d.out_width();
  const int64_t plane = d.height * d.width, out_plane = out_h * out_w;
  const int64_t group_channels = d.group_channels();
  auto load = [](T v) { return static_cast<float>(v); };
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

int64_t row_count(const Dims& d) { return d.batch * d.groups * d.out_height(); }

template <typename T>
void sample_cpu_rows(const T* x, const T* offset, T* out, const Dims& d, int64_t first_row, int64_t end_row) {
  RowTaps taps(d.out_width());
  for (int64_t row = first_row; row < end_row; ++row) sample_row(x, offset, out, d, row, taps);
}

template <typename T>
void sample_cpu(const T* x, const T* offset, T* out, const Dims& d) {
  const int64_t rows = row_count(d);
#pragma omp parallel
  {
    RowTaps taps(d.out_width());
#pragma omp for schedule(static)
    for (int64_t row = 0; row < rows; ++row) sample_row(x, offset, out, d, row, taps);
  }
}

template void sample_cpu<float>(const float*, const float*, float*, const Dims&);
template void sample_cpu_rows<float>(const float*, const float*, float*, const Dims&, int64_t, int64_t);
#if defined(DYSAMPLE_WITH_TORCH)
template void sample_cpu<c10::Half>(const c10::Half*, const c10::Half*, c10::Half*, const Dims&);
#endif
#if defined(__FLT16_MAX__)
template void sample_cpu_rows<_Float16>(const _Float16*, const _Float16*, _Float16*, const Dims&, int64_t, int64_t);
#endif

}  // namespace dysample
}  // namespace deploykit
