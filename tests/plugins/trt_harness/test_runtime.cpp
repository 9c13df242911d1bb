// The runtime side: onShapeChange and enqueue, which must refuse bad shapes and types before
// anything is launched (the kernel double records launches; none may happen on a refusal).
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "doubles.h"
#include "trt_plugin.h"

using nvinfer1::DataType;
using nvinfer1::PluginTensorDesc;

namespace harness {
namespace {

using Plugin = deploykit::trt::DySamplePlugin;

struct Call {
  PluginTensorDesc in[2];
  PluginTensorDesc out[1];
};

// x (2, 8, 5, 7), offset (2, 2*2*2^2 = 16, 5, 7), out (2, 8, 10, 14): scale 2, groups 2.
Call good_call(DataType type = DataType::kFLOAT) {
  return Call{{tensor(type, 2, 8, 5, 7), tensor(type, 2, 16, 5, 7)}, {tensor(type, 2, 8, 10, 14)}};
}

float x_buffer[1], offset_buffer[1], out_buffer[1];
void const* const inputs[2] = {x_buffer, offset_buffer};
void* const outputs[1] = {out_buffer};
cudaStream_t const stream = reinterpret_cast<cudaStream_t>(0x5);

void launches_for_good_calls() {
  Plugin plugin(2, 2);
  for (DataType type : {DataType::kFLOAT, DataType::kHALF}) {
    Call call = good_call(type);
    kernel_calls().clear();
    CHECK(plugin.onShapeChange(call.in, 2, call.out, 1) == 0, "onShapeChange accepts matching shapes");
    CHECK(plugin.enqueue(call.in, call.out, inputs, outputs, nullptr, stream) == 0, "enqueue succeeds");
    bool const one = kernel_calls().size() == 1;
    CHECK(one, "enqueue launches the kernel once");
    if (!one) continue;
    KernelCall const& k = kernel_calls()[0];
    CHECK(k.half == (type == DataType::kHALF), "enqueue picks the kernel for the tensors' type");
    CHECK(k.dims.batch == 2 && k.dims.channels == 8 && k.dims.height == 5 && k.dims.width == 7 && k.dims.groups == 2 &&
              k.dims.scale == 2,
          "the kernel gets (B, C, H, W, G, s) = (2, 8, 5, 7, 2, 2)");
    CHECK(k.x == x_buffer && k.offset == offset_buffer && k.out == out_buffer && k.stream == stream,
          "the kernel gets TensorRT's buffers and stream");
  }
}

struct BadCall {
  char const* what;
  Call call;
  char const* message;
};

void refusals_launch_nothing() {
  Plugin plugin(2, 2);
  std::vector<BadCall> cases;
  auto add = [&](char const* what, char const* message, auto change) {
    Call call = good_call();
    change(call);
    cases.push_back({what, call, message});
  };
  add("3-D x", "x and offset must be 4-D", [](Call& c) { c.in[0].dims.nbDims = 3; });
  add("offset channels", "offset must have 2 * groups * scale^2 channels", [](Call& c) { c.in[1].dims.d[1] = 12; });
  add("batch", "offset and x must have the same batch size", [](Call& c) { c.in[1].dims.d[0] = 1; });
  add("height", "offset and x must have the same height and width", [](Call& c) { c.in[1].dims.d[2] = 4; });
  add("channels not divisible by groups", "channels of x must be divisible by groups", [](Call& c) { c.in[0].dims.d[1] = 7; });
  add("float16 offset with float32 x", "share one data type", [](Call& c) { c.in[1].type = DataType::kHALF; });
  add("float16 output with float32 inputs", "share one data type", [](Call& c) { c.out[0].type = DataType::kHALF; });
  add("int8 tensors", "unsupported data type", [](Call& c) {
    c.in[0].type = c.in[1].type = c.out[0].type = DataType::kINT8;
  });
  add("bfloat16 tensors", "unsupported data type", [](Call& c) {
    c.in[0].type = c.in[1].type = c.out[0].type = DataType::kBF16;
  });
  for (BadCall& c : cases) {
    CapturedMessages messages;
    kernel_calls().clear();
    int32_t const status = plugin.enqueue(c.call.in, c.call.out, inputs, outputs, nullptr, stream);
    CHECK(status != 0 && kernel_calls().empty(), std::string("enqueue refuses ") + c.what + " and launches nothing");
    CHECK(messages.logger.logged(c.message),
          std::string("enqueue says why (") + c.what + "): '" + c.message + "', got '" + messages.logger.last() + "'");
  }
  {
    CapturedMessages messages;
    Call call = good_call();
    call.in[1].dims.d[1] = 12;
    CHECK(plugin.onShapeChange(call.in, 2, call.out, 1) != 0 && messages.logger.logged("2 * groups * scale^2"),
          "onShapeChange refuses a bad offset shape");
  }
  {
    CapturedMessages messages;
    kernel_calls().clear();
    Call call = good_call();
    CHECK(plugin.enqueue(call.in, call.out, nullptr, outputs, nullptr, stream) != 0 && kernel_calls().empty() &&
              messages.logger.logged("enqueue called without tensors"),
          "enqueue refuses missing buffers");
  }
}

void launch_failures_are_reported() {
  Plugin plugin(2, 2);
  Call call = good_call();
  CapturedMessages messages;
  next_kernel_status() = cudaErrorInvalidConfiguration;
  int32_t const status = plugin.enqueue(call.in, call.out, inputs, outputs, nullptr, stream);
  next_kernel_status() = cudaSuccess;
  CHECK(status != 0, "a failed launch fails enqueue");
  CHECK(messages.logger.logged(std::string("kernel launch failed: ") + cudaGetErrorString(cudaErrorInvalidConfiguration)),
        "a failed launch is reported with CUDA's words, got '" + messages.logger.last() + "'");
}

}  // namespace

void test_runtime() {
  launches_for_good_calls();
  refusals_launch_nothing();
  launch_failures_are_reported();
}

}  // namespace harness
