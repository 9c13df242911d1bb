// torch.ops.deploykit.dysample_sample: the schema, argument checks and the CPU kernel.
// The CUDA kernel registers itself from torch_op_cuda.cu when that file is compiled in.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "dysample_cpu.h"
#include "torch_op_checks.h"

namespace deploykit {
namespace dysample {

at::Tensor sample_cpu_op(const at::Tensor& x, const at::Tensor& offset, int64_t scale, int64_t groups) {
  const Dims d = checked_dims(x, offset, scale, groups, at::kCPU);
  const at::Tensor xc = x.contiguous(), oc = offset.contiguous();
  at::Tensor out = at::empty({d.batch, d.channels, d.out_height(), d.out_width()}, x.options());
  if (out.numel() == 0) return out;
  if (x.scalar_type() == at::kFloat) {
    sample_cpu<float>(xc.data_ptr<float>(), oc.data_ptr<float>(), out.data_ptr<float>(), d);
  } else {
    sample_cpu<c10::Half>(xc.data_ptr<c10::Half>(), oc.data_ptr<c10::Half>(), out.data_ptr<c10::Half>(), d);
  }
  return out;
}

}  // namespace dysample
}  // namespace deploykit

TORCH_LIBRARY(deploykit, m) {
  m.def("dysample_sample(Tensor x, Tensor offset, int scale, int groups) -> Tensor");
}

TORCH_LIBRARY_IMPL(deploykit, CPU, m) {
  m.impl("dysample_sample", &deploykit::dysample::sample_cpu_op);
}
