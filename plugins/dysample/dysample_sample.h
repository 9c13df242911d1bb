// DySample's sample step as one gather: output pixel -> offset channels -> source coordinate
// -> border clamp -> bilinear weights. Shared verbatim by the CPU loop, the CUDA kernel and the
// TensorRT plugin, so every backend runs the same float arithmetic.
//
// Conventions (those of the published DySample sample()):
//   x      (B, C, H, W)             C divisible by G; channel c belongs to group c / (C / G)
//   offset (B, 2 * G * S * S, H, W) channel (k * G + g) * S * S + i * S + j holds coordinate k
//                                   (0: x, 1: y) of sub-pixel (i, j) of group g, in input pixels
//   out    (B, C, S * H, S * W)     out[b, c, h*S+i, w*S+j] = bilinear(x[b, c], w + dx, h + dy)
// The coordinate goes through the same normalise / unnormalise round trip as
// F.grid_sample(align_corners=False, padding_mode="border") on the CPU, operation for
// operation, so results match the reference to the last bits rather than to ~1e-5.
#pragma once

#include <climits>
#include <cstdint>

#if defined(__CUDACC__)
#define DYSAMPLE_HD __host__ __device__ __forceinline__
#else
#define DYSAMPLE_HD inline
#endif

namespace deploykit {
namespace dysample {

struct Dims {
  int64_t batch, channels, height, width;  // of x
  int64_t groups, scale;

  DYSAMPLE_HD int64_t out_height() const { return height * scale; }
  DYSAMPLE_HD int64_t out_width() const { return width * scale; }
  DYSAMPLE_HD int64_t group_channels() const { return channels / groups; }
  DYSAMPLE_HD int64_t offset_channels() const { return 2 * groups * scale * scale; }
};

// The four taps of one bilinear sample inside one H x W plane. A tap that falls outside the
// plane (only the far neighbour, at the clamped border) has weight 0 and valid == false.
struct Taps {
  int64_t index[4];  // nw, ne, sw, se
  float weight[4];
  bool valid[4];
};

// Unnormalised, border-clamped source coordinate along one axis of length `size`, from the
// pixel index `pixel` plus the learned `offset` (input pixels), as the reference computes it.
DYSAMPLE_HD float source_coordinate(int64_t pixel, float offset, int64_t size) {
  const float normalised = 2.0f * ((static_cast<float>(pixel) + 0.5f) + offset) / static_cast<float>(size) - 1.0f;
  const float unnormalised = (normalised + 1.0f) * (static_cast<float>(size) / 2.0f) - 0.5f;
  const float upper = static_cast<float>(size - 1);
  // min(upper, max(v, 0)), written so that NaN propagates as it does in the reference.
  const float low_clamped = unnormalised > 0.0f ? unnormalised : (unnormalised != unnormalised ? unnormalised : 0.0f);
  return low_clamped < upper ? low_clamped : (low_clamped != low_clamped ? low_clamped : upper);
}

DYSAMPLE_HD float floor_f(float v) {
#if defined(__CUDA_ARCH__)
  return floorf(v);
#else
  return __builtin_floorf(v);
#endif
}

DYSAMPLE_HD Taps bilinear_taps(float sx, float sy, int64_t height, int64_t width) {
  Taps t;
  const float x0 = floor_f(sx);
  const float y0 = floor_f(sy);
  const float we = sx - x0;        // weight towards the east neighbour
  const float ww = 1.0f - we;
  const float ws = sy - y0;        // weight towards the south neighbour
  const float wn = 1.0f - ws;
  const int64_t ix = static_cast<int64_t>(x0);
  const int64_t iy = static_cast<int64_t>(y0);
  const int64_t xs[4] = {ix, ix + 1, ix, ix + 1};
  const int64_t ys[4] = {iy, iy, iy + 1, iy + 1};
  t.weight[0] = wn * ww;
  t.weight[1] = wn * we;
  t.weight[2] = ws * ww;
  t.weight[3] = ws * we;
  for (int k = 0; k < 4; ++k) {
    t.valid[k] = xs[k] >= 0 && xs[k] < width && ys[k] >= 0 && ys[k] < height;
    t.index[k] = t.valid[k] ? ys[k] * width + xs[k] : 0;
  }
  return t;
}

// Taps for output pixel (oy, ox) of group g in batch b; `offset` points at the batch's first
// offset channel, `load` converts one offset element to float.
template <typename T, typename Load>
DYSAMPLE_HD Taps taps_for(const T* offset, const Dims& d, int64_t g, int64_t oy, int64_t ox, Load load) {
  const int64_t h = oy / d.scale, i = oy % d.scale;
  const int64_t w = ox / d.scale, j = ox % d.scale;
  const int64_t plane = d.height * d.width;
  const int64_t sub = i * d.scale + j;
  const int64_t x_channel = (0 * d.groups + g) * d.scale * d.scale + sub;
  const int64_t y_channel = (1 * d.groups + g) * d.scale * d.scale + sub;
  const float dx = load(offset[x_channel * plane + h * d.width + w]);
  const float dy = load(offset[y_channel * plane + h * d.width + w]);
  return bilinear_taps(source_coordinate(w, dx, d.width), source_coordinate(h, dy, d.height), d.height, d.width);
}

// The one accumulation rule of every backend, F.grid_sample's: an in-plane tap is multiplied by
// its weight even when the weight is 0, so a NaN or Inf there reaches the output (Inf * 0 is
// NaN), while an out-of-plane tap adds exactly 0 whatever `value` holds for it. Products first,
// then summed left to right, as the reference rounds.
DYSAMPLE_HD float bilinear_sum(const float value[4], const float weight[4], const bool valid[4]) {
  float acc = 0.0f;
  for (int k = 0; k < 4; ++k) {
    const float term = (valid[k] ? value[k] : 0.0f) * weight[k];
    acc = k == 0 ? term : acc + term;
  }
  return acc;
}

// One interpolated value from one input plane; out-of-plane taps are never read.
template <typename T, typename Load>
DYSAMPLE_HD float interpolate(const T* plane, const Taps& t, Load load) {
  float value[4];
  for (int k = 0; k < 4; ++k) value[k] = t.valid[k] ? load(plane[t.index[k]]) : 0.0f;
  return bilinear_sum(value, t.weight, t.valid);
}

// Why a call cannot run, or nullptr: shared by every entry point so messages agree.
inline const char* dims_problem(const Dims& d, int64_t offset_batch, int64_t offset_channels, int64_t offset_height,
                                int64_t offset_width) {
  if (d.scale < 1) return "scale must be at least 1";
  if (d.groups < 1) return "groups must be at least 1";
  if (d.channels % d.groups != 0) return "channels of x must be divisible by groups";
  // The CPU loop keeps a row's tap indices in 32 bits (half the memory traffic of 64).
  if (d.width > 0 && d.height > INT32_MAX / d.width) return "an H x W plane of more than 2^31 - 1 values is not supported";
  if (offset_channels != d.offset_channels()) return "offset must have 2 * groups * scale^2 channels";
  if (offset_batch != d.batch) return "offset and x must have the same batch size";
  if (offset_height != d.height || offset_width != d.width) return "offset and x must have the same height and width";
  return nullptr;
}

}  // namespace dysample
}  // namespace deploykit
