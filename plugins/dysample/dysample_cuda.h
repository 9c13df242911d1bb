// CUDA entry point of the fused DySample sample step; used by the PyTorch op and the
// TensorRT plugin alike.
#pragma once

#include <cuda_runtime.h>

#include "dysample_sample.h"

namespace deploykit {
namespace dysample {

// T is float or __half; x, offset, out are contiguous NCHW device pointers.
template <typename T>
cudaError_t sample_cuda(const T* x, const T* offset, T* out, const Dims& dims, cudaStream_t stream);

}  // namespace dysample
}  // namespace deploykit
