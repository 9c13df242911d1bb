// The CUDA kernel of torch.ops.deploykit.dysample_sample, on PyTorch's current stream.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_fp16.h>
#include <torch/library.h>

#include "dysample_cuda.h"
#include "torch_op_checks.h"

namespace deploykit {
namespace dysample {

at::Tensor sample_cuda_op(const at::Tensor& x, const at::Tensor& offset, int64_t scale, int64_t groups) {
  const Dims d = checked_dims(x, offset, scale, groups, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), oc = offset.contiguous();
  at::Tensor out = at::empty({d.batch, d.channels, d.out_height(), d.out_width()}, x.options());
  if (out.numel() == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  cudaError_t status;
  if (x.scalar_type() == at::kFloat) {
    status = sample_cuda<float>(xc.data_ptr<float>(), oc.data_ptr<float>(), out.data_ptr<float>(), d, stream);
  } else {
    status = sample_cuda<__half>(reinterpret_cast<const __half*>(xc.data_ptr<at::Half>()),
                                 reinterpret_cast<const __half*>(oc.data_ptr<at::Half>()),
                                 reinterpret_cast<__half*>(out.data_ptr<at::Half>()), d, stream);
  }
  TORCH_CHECK(status == cudaSuccess, "dysample_sample: CUDA launch failed: ", cudaGetErrorString(status));
  return out;
}

}  // namespace dysample
}  // namespace deploykit

TORCH_LIBRARY_IMPL(deploykit, CUDA, m) {
  m.impl("dysample_sample", &deploykit::dysample::sample_cuda_op);
}
