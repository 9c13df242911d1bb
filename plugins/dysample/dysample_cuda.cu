// The CUDA kernel: one thread per (batch, group, output pixel). It computes the taps once from
// the offsets, then loops over the group's channels; neighbouring threads write neighbouring
// output pixels, so stores coalesce, and the gathers hit the two input rows around the
// sample, which stay in L1/L2.
#include <cuda_fp16.h>

#include "dysample_cuda.h"

namespace deploykit {
namespace dysample {
namespace {

struct ToFloat {
  __device__ __forceinline__ float operator()(float v) const { return v; }
  __device__ __forceinline__ float operator()(__half v) const { return __half2float(v); }
};

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }

template <typename T>
__global__ void sample_kernel(const T* __restrict__ x, const T* __restrict__ offset, T* __restrict__ out, Dims d) {
  const int64_t out_h = d.out_height(), out_w = d.out_width();
  const int64_t plane = d.height * d.width, out_plane = out_h * out_w;
  const int64_t group_channels = d.group_channels();
  const int64_t total = d.batch * d.groups * out_plane;
  const ToFloat load;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ox = idx % out_w;
    const int64_t oy = (idx / out_w) % out_h;
    const int64_t g = (idx / out_plane) % d.groups;
    const int64_t b = idx / (out_plane * d.groups);
    const Taps taps = taps_for(offset + b * d.offset_channels() * plane, d, g, oy, ox, load);
    const T* in_plane = x + (b * d.channels + g * group_channels) * plane;
    T* out_pixel = out + (b * d.channels + g * group_channels) * out_plane + oy * out_w + ox;
    for (int64_t cc = 0; cc < group_channels; ++cc) {
      store(out_pixel + cc * out_plane, interpolate(in_plane + cc * plane, taps, load));
    }
  }
}

}  // namespace

template <typename T>
cudaError_t sample_cuda(const T* x, const T* offset, T* out, const Dims& d, cudaStream_t stream) {
  const int64_t total = d.batch * d.groups * d.out_height() * d.out_width();
  if (total == 0 || d.channels == 0) return cudaSuccess;
  constexpr int threads = 256;
  const int64_t wanted = (total + threads - 1) / threads;
  const int blocks = static_cast<int>(wanted < 65535 * 32 ? wanted : 65535 * 32);
  sample_kernel<T><<<blocks, threads, 0, stream>>>(x, offset, out, d);
  return cudaGetLastError();
}

template cudaError_t sample_cuda<float>(const float*, const float*, float*, const Dims&, cudaStream_t);
template cudaError_t sample_cuda<__half>(const __half*, const __half*, __half*, const Dims&, cudaStream_t);

}  // namespace dysample
}  // namespace deploykit
