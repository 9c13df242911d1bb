// CPU entry point of the fused DySample sample step (OpenMP over output rows).
#pragma once

#include "dysample_sample.h"

namespace deploykit {
namespace dysample {

// x, offset, out are contiguous NCHW; T is float or a 16-bit float type that converts to and
// from float (c10::Half, _Float16). Arithmetic is float throughout.
template <typename T>
void sample_cpu(const T* x, const T* offset, T* out, const Dims& dims);

}  // namespace dysample
}  // namespace deploykit
