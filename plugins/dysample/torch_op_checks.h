// Argument checks shared by the CPU and CUDA PyTorch kernels: every bad call raises a clear
// error before any memory is touched.
#pragma once

#include <ATen/ATen.h>

#include "dysample_sample.h"

namespace deploykit {
namespace dysample {

inline Dims checked_dims(const at::Tensor& x, const at::Tensor& offset, int64_t scale, int64_t groups,
                         at::DeviceType device) {
  TORCH_CHECK(x.dim() == 4, "dysample_sample: x must be 4-D (B, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK(offset.dim() == 4, "dysample_sample: offset must be 4-D (B, 2*G*s^2, H, W), got ", offset.dim(), "-D");
  TORCH_CHECK(x.device().type() == device && offset.device() == x.device(),
              "dysample_sample: x and offset must be on the same device, got ", x.device(), " and ", offset.device());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf,
              "dysample_sample: x must be float32 or float16, got ", x.scalar_type());
  TORCH_CHECK(offset.scalar_type() == x.scalar_type(), "dysample_sample: offset must have the dtype of x (",
              x.scalar_type(), "), got ", offset.scalar_type());
  const Dims d{x.size(0), x.size(1), x.size(2), x.size(3), groups, scale};
  const char* problem = dims_problem(d, offset.size(0), offset.size(1), offset.size(2), offset.size(3));
  TORCH_CHECK(problem == nullptr, "dysample_sample: ", problem ? problem : "", " (x ", x.sizes(), ", offset ",
              offset.sizes(), ", scale ", scale, ", groups ", groups, ")");
  return d;
}

}  // namespace dysample
}  // namespace deploykit
