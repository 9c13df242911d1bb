// CPU entry point of the fused DySample sample step (OpenMP over output rows).
#pragma once

#include "dysample_sample.h"

namespace deploykit {
namespace dysample {

// x, offset, out are contiguous NCHW; T is float or a 16-bit float type that converts to and
// from float (c10::Half, _Float16). Arithmetic is float throughout.
template <typename T>
void sample_cpu(const T* x, const T* offset, T* out, const Dims& dims);  // OpenMP over the rows

// The same work split for a caller's own thread pool: rows [first_row, end_row) of
// row_count(dims), each one output row of one (batch, group), independent of every other.
// T is float, or _Float16 where the compiler has it.
int64_t row_count(const Dims& dims);
template <typename T>
void sample_cpu_rows(const T* x, const T* offset, T* out, const Dims& dims, int64_t first_row, int64_t end_row);

}  // namespace dysample
}  // namespace deploykit
