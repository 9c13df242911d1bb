// deploykit::DySample for ONNX Runtime: a custom-op library, so the plugin graph that TensorRT
// runs is the graph ONNX Runtime runs too.
//
//   CPU execution provider    the fused kernel's CPU rows (dysample_cpu.cpp) on ONNX Runtime's
//                             own intra-op thread pool, so --threads / intra_op_num_threads hold
//   CUDA execution provider   the CUDA kernel (dysample_cuda.cu) on ONNX Runtime's stream, when
//                             built with DEPLOYKIT_ORT_WITH_CUDA
//
// Written against the C API alone and asking for API version 17 (the oldest with shape
// inference contexts and ParallelFor), so one build loads in every ONNX Runtime from 1.17 on.
// Attributes, ranks and dtypes are checked when the kernel is created and again when it runs:
// a bad node is an ONNX Runtime error naming the node, never a crash.
#include <onnxruntime_c_api.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "dysample_cpu.h"
#include "dysample_sample.h"

#if defined(DEPLOYKIT_ORT_WITH_CUDA)
#include <cuda_fp16.h>

#include "dysample_cuda.h"
#endif

#if !defined(__FLT16_MAX__)
#error "deploykit's ONNX Runtime library needs a compiler with _Float16 (GCC 12 or Clang 15 and newer) for fp16"
#endif

namespace {

using deploykit::dysample::Dims;

constexpr uint32_t kApiVersion = 17;
constexpr const char* kDomain = "deploykit";
constexpr const char* kOpName = "DySample";
const OrtApi* g_api = nullptr;  // set by RegisterCustomOps before any op is used

OrtStatus* error(const std::string& message) { return g_api->CreateStatus(ORT_INVALID_ARGUMENT, message.c_str()); }

// Releases an OrtStatus that only says "absent" (an attribute not set) and reports whether it was one.
bool failed(OrtStatus* status) {
  if (status == nullptr) return false;
  g_api->ReleaseStatus(status);
  return true;
}

#define DEPLOYKIT_RETURN_IF_ERROR(expr) \
  do {                                  \
    OrtStatus* status_ = (expr);        \
    if (status_ != nullptr) return status_; \
  } while (0)

bool is_sample_type(ONNXTensorElementDataType type) {
  return type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
}

const char* type_name(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return "bfloat16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
    default: return "a type other than float32 or float16";
  }
}

// Why (scale, groups) cannot be a DySample node, or "": the checks shared by shape inference and
// kernel creation. 2 * groups * scale^2 (the offset's channels) must fit in int64.
std::string attribute_problem(int64_t scale, int64_t groups) {
  if (scale < 1 || groups < 1 || scale > INT32_MAX || groups > INT32_MAX)
    return "scale and groups must be positive 32-bit integers (got scale " + std::to_string(scale) + ", groups " +
           std::to_string(groups) + ")";
  int64_t channels = 0;
  if (__builtin_mul_overflow(scale, scale, &channels) || __builtin_mul_overflow(channels, 2 * groups, &channels))
    return "2 * groups * scale^2 offset channels overflow (scale " + std::to_string(scale) + ", groups " +
           std::to_string(groups) + ")";
  return "";
}

std::string types_problem(ONNXTensorElementDataType x, ONNXTensorElementDataType offset) {
  if (!is_sample_type(x)) return std::string("x is ") + type_name(x) + "; DySample takes float32 or float16";
  if (x != offset)
    return std::string("x is ") + type_name(x) + " but offset is " + type_name(offset) + "; both must be the same type";
  return "";
}

std::string dims_text(const std::vector<int64_t>& dims) {
  std::string text = "(";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + (dims[i] < 0 ? std::string("?") : std::to_string(dims[i]));
  return text + ")";
}

struct TensorInfo {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> dims;  // -1: unknown
  std::vector<std::string> symbols;
};

OrtStatus* read_info(const OrtTensorTypeAndShapeInfo* info, TensorInfo& out) {
  DEPLOYKIT_RETURN_IF_ERROR(g_api->GetTensorElementType(info, &out.type));
  size_t rank = 0;
  DEPLOYKIT_RETURN_IF_ERROR(g_api->GetDimensionsCount(info, &rank));
  out.dims.assign(rank, -1);
  if (rank > 0) DEPLOYKIT_RETURN_IF_ERROR(g_api->GetDimensions(info, out.dims.data(), rank));
  std::vector<const char*> symbols(rank, nullptr);
  if (rank > 0) DEPLOYKIT_RETURN_IF_ERROR(g_api->GetSymbolicDimensions(info, symbols.data(), rank));
  out.symbols.clear();
  for (const char* symbol : symbols) out.symbols.emplace_back(symbol ? symbol : "");
  return nullptr;
}

// ---- shape inference ----------------------------------------------------------------------

OrtStatus* read_int_attribute(const OrtShapeInferContext* context, const char* name, int64_t& value) {
  const OrtOpAttr* attribute = nullptr;
  if (failed(g_api->ShapeInferContext_GetAttribute(context, name, &attribute)) || attribute == nullptr)
    return error(std::string(kOpName) + " needs the int attribute '" + name + "'");
  size_t size = 0;
  if (failed(g_api->ReadOpAttr(attribute, ORT_OP_ATTR_INT, &value, sizeof(value), &size)))
    return error(std::string(kOpName) + " attribute '" + name + "' must be an int");
  return nullptr;
}

OrtStatus* infer_output(const OrtShapeInferContext* context) {
  int64_t scale = 0, groups = 0;
  DEPLOYKIT_RETURN_IF_ERROR(read_int_attribute(context, "scale", scale));
  DEPLOYKIT_RETURN_IF_ERROR(read_int_attribute(context, "groups", groups));
  const std::string attributes = attribute_problem(scale, groups);
  if (!attributes.empty()) return error(std::string(kOpName) + ": " + attributes);

  TensorInfo x, offset;
  for (size_t index = 0; index < 2; ++index) {
    // Borrowed: the context owns it (ONNX Runtime's own C++ wrapper never releases it either).
    OrtTensorTypeAndShapeInfo* info = nullptr;
    DEPLOYKIT_RETURN_IF_ERROR(g_api->ShapeInferContext_GetInputTypeShape(context, index, &info));
    DEPLOYKIT_RETURN_IF_ERROR(read_info(info, index == 0 ? x : offset));
  }
  const std::string types = types_problem(x.type, offset.type);
  if (!types.empty()) return error(std::string(kOpName) + ": " + types);
  // Rank 0 here is a shape ONNX Runtime does not know; a known rank other than 4 is an error.
  for (const TensorInfo* input : {&x, &offset})
    if (!input->dims.empty() && input->dims.size() != 4)
      return error(std::string(kOpName) + ": " + (input == &x ? "x" : "offset") + " must be 4-D (B, C, H, W), got " +
                   dims_text(input->dims));

  // A dim ONNX Runtime cannot compute gets a name, never -1 (which it would take for a size):
  // "H*2" for a named input dim, so two outputs of one input agree; a fresh name otherwise.
  static std::atomic<uint64_t> unnamed{0};
  std::vector<int64_t> dims(4, -1);
  std::vector<std::string> symbols(4);
  for (size_t axis = 0; axis < 4; ++axis) {
    int64_t value = x.dims.size() == 4 ? x.dims[axis] : -1;
    const std::string symbol = x.dims.size() == 4 ? x.symbols[axis] : "";
    if (axis >= 2 && value >= 0 && __builtin_mul_overflow(value, scale, &value)) value = -1;
    dims[axis] = value;
    if (value < 0)
      symbols[axis] = !symbol.empty() ? (axis < 2 || scale == 1 ? symbol : symbol + "*" + std::to_string(scale))
                                      : "deploykit_dysample_" + std::to_string(unnamed++);
  }
  std::vector<const char*> symbol_pointers;
  for (const std::string& symbol : symbols) symbol_pointers.push_back(symbol.c_str());

  OrtTensorTypeAndShapeInfo* output = nullptr;
  DEPLOYKIT_RETURN_IF_ERROR(g_api->CreateTensorTypeAndShapeInfo(&output));
  OrtStatus* status = g_api->SetTensorElementType(output, x.type);
  if (status == nullptr) status = g_api->SetDimensions(output, dims.data(), dims.size());
  if (status == nullptr) status = g_api->SetSymbolicDimensions(output, symbol_pointers.data(), symbol_pointers.size());
  if (status == nullptr) status = g_api->ShapeInferContext_SetOutputTypeShape(context, 0, output);
  g_api->ReleaseTensorTypeAndShapeInfo(output);
  return status;
}

// ---- the kernel ----------------------------------------------------------------------------

struct Kernel {
  int64_t scale = 0;
  int64_t groups = 0;
  std::string node;  // the node's name, in every message
  bool cuda = false;

  OrtStatus* fail(const std::string& message) const {
    return error(std::string(kOpName) + " node '" + node + "': " + message);
  }
};

std::string node_name(const OrtKernelInfo* info) {
  size_t size = 0;
  if (failed(g_api->KernelInfo_GetNodeName(info, nullptr, &size)) && size == 0) return "?";
  std::string name(size, '\0');
  if (size == 0 || failed(g_api->KernelInfo_GetNodeName(info, name.data(), &size))) return "?";
  name.resize(size > 0 ? size - 1 : 0);  // size counts the terminating NUL
  return name.empty() ? "(unnamed)" : name;
}

OrtStatus* input_info(const OrtKernelInfo* info, size_t index, TensorInfo& out, bool& known) {
  OrtTypeInfo* type_info = nullptr;
  DEPLOYKIT_RETURN_IF_ERROR(g_api->KernelInfo_GetInputTypeInfo(info, index, &type_info));
  const OrtTensorTypeAndShapeInfo* tensor = nullptr;
  OrtStatus* status = g_api->CastTypeInfoToTensorInfo(type_info, &tensor);
  known = status == nullptr && tensor != nullptr;
  if (known) status = read_info(tensor, out);
  g_api->ReleaseTypeInfo(type_info);
  return status;
}

OrtStatus* create_kernel(const OrtKernelInfo* info, bool cuda, void** out) {
  auto kernel = std::make_unique<Kernel>();
  kernel->cuda = cuda;
  kernel->node = node_name(info);
  if (failed(g_api->KernelInfoGetAttribute_int64(info, "scale", &kernel->scale)))
    return kernel->fail("needs the int attribute 'scale'");
  if (failed(g_api->KernelInfoGetAttribute_int64(info, "groups", &kernel->groups)))
    return kernel->fail("needs the int attribute 'groups'");
  const std::string attributes = attribute_problem(kernel->scale, kernel->groups);
  if (!attributes.empty()) return kernel->fail(attributes);

  size_t inputs = 0;
  DEPLOYKIT_RETURN_IF_ERROR(g_api->KernelInfo_GetInputCount(info, &inputs));
  if (inputs != 2) return kernel->fail("takes 2 inputs (x, offset), got " + std::to_string(inputs));
  TensorInfo x, offset;
  bool x_known = false, offset_known = false;
  DEPLOYKIT_RETURN_IF_ERROR(input_info(info, 0, x, x_known));
  DEPLOYKIT_RETURN_IF_ERROR(input_info(info, 1, offset, offset_known));
  if (!x_known || !offset_known) return kernel->fail("x and offset must be tensors");
  const std::string types = types_problem(x.type, offset.type);
  if (!types.empty()) return kernel->fail(types);
  for (const TensorInfo* input : {&x, &offset})
    if (!input->dims.empty() && input->dims.size() != 4)
      return kernel->fail(std::string(input == &x ? "x" : "offset") + " must be 4-D (B, C, H, W), got " +
                          dims_text(input->dims));
  *out = kernel.release();
  return nullptr;
}

struct CpuRows {
  const void* x;
  const void* offset;
  void* out;
  Dims dims;
  bool half;
  int64_t rows, tasks;
};

void run_rows(void* data, size_t task) {
  const CpuRows& work = *static_cast<const CpuRows*>(data);
  const int64_t first = work.rows * static_cast<int64_t>(task) / work.tasks;
  const int64_t end = work.rows * (static_cast<int64_t>(task) + 1) / work.tasks;
  if (work.half) {
    deploykit::dysample::sample_cpu_rows(static_cast<const _Float16*>(work.x), static_cast<const _Float16*>(work.offset),
                                         static_cast<_Float16*>(work.out), work.dims, first, end);
  } else {
    deploykit::dysample::sample_cpu_rows(static_cast<const float*>(work.x), static_cast<const float*>(work.offset),
                                         static_cast<float*>(work.out), work.dims, first, end);
  }
}

OrtStatus* compute(const Kernel& kernel, OrtKernelContext* context) {
  const OrtValue* inputs[2] = {nullptr, nullptr};
  TensorInfo info[2];
  for (size_t index = 0; index < 2; ++index) {
    DEPLOYKIT_RETURN_IF_ERROR(g_api->KernelContext_GetInput(context, index, &inputs[index]));
    if (inputs[index] == nullptr) return kernel.fail("input " + std::to_string(index) + " is missing");
    OrtTensorTypeAndShapeInfo* shape = nullptr;
    DEPLOYKIT_RETURN_IF_ERROR(g_api->GetTensorTypeAndShape(inputs[index], &shape));
    OrtStatus* status = read_info(shape, info[index]);
    g_api->ReleaseTensorTypeAndShapeInfo(shape);
    DEPLOYKIT_RETURN_IF_ERROR(status);
  }
  const TensorInfo& x = info[0];
  const TensorInfo& offset = info[1];
  const std::string types = types_problem(x.type, offset.type);
  if (!types.empty()) return kernel.fail(types);
  if (x.dims.size() != 4 || offset.dims.size() != 4)
    return kernel.fail("x and offset must be 4-D (B, C, H, W); got x " + dims_text(x.dims) + ", offset " +
                       dims_text(offset.dims));
  const Dims dims{x.dims[0], x.dims[1], x.dims[2], x.dims[3], kernel.groups, kernel.scale};
  const char* problem = deploykit::dysample::dims_problem(dims, offset.dims[0], offset.dims[1], offset.dims[2], offset.dims[3]);
  if (problem != nullptr)
    return kernel.fail(std::string(problem) + ": x " + dims_text(x.dims) + ", offset " + dims_text(offset.dims) +
                       ", scale " + std::to_string(kernel.scale) + ", groups " + std::to_string(kernel.groups));
  int64_t out_dims[4] = {dims.batch, dims.channels, 0, 0};
  if (__builtin_mul_overflow(dims.height, dims.scale, &out_dims[2]) ||
      __builtin_mul_overflow(dims.width, dims.scale, &out_dims[3]))
    return kernel.fail("the output's height or width overflows int64");
  OrtValue* output = nullptr;
  DEPLOYKIT_RETURN_IF_ERROR(g_api->KernelContext_GetOutput(context, 0, out_dims, 4, &output));
  if (dims.batch == 0 || dims.channels == 0 || dims.height == 0 || dims.width == 0) return nullptr;

  void* x_data = nullptr;
  void* offset_data = nullptr;
  void* out_data = nullptr;
  DEPLOYKIT_RETURN_IF_ERROR(g_api->GetTensorMutableData(const_cast<OrtValue*>(inputs[0]), &x_data));
  DEPLOYKIT_RETURN_IF_ERROR(g_api->GetTensorMutableData(const_cast<OrtValue*>(inputs[1]), &offset_data));
  DEPLOYKIT_RETURN_IF_ERROR(g_api->GetTensorMutableData(output, &out_data));
  const bool half = x.type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;

  if (kernel.cuda) {
#if defined(DEPLOYKIT_ORT_WITH_CUDA)
    void* stream = nullptr;
    DEPLOYKIT_RETURN_IF_ERROR(g_api->KernelContext_GetGPUComputeStream(context, &stream));
    const cudaError_t launched =
        half ? deploykit::dysample::sample_cuda(static_cast<const __half*>(x_data), static_cast<const __half*>(offset_data),
                                                static_cast<__half*>(out_data), dims, static_cast<cudaStream_t>(stream))
             : deploykit::dysample::sample_cuda(static_cast<const float*>(x_data), static_cast<const float*>(offset_data),
                                                static_cast<float*>(out_data), dims, static_cast<cudaStream_t>(stream));
    if (launched != cudaSuccess) return kernel.fail(std::string("CUDA kernel launch failed: ") + cudaGetErrorString(launched));
    return nullptr;
#else
    return kernel.fail("this build of the library has no CUDA kernel");
#endif
  }
  // Tasks of whole rows, several per thread so uneven rows balance; ONNX Runtime's pool runs them.
  const int64_t rows = deploykit::dysample::row_count(dims);
  CpuRows work{x_data, offset_data, out_data, dims, half, rows, rows < 256 ? rows : 256};
  return g_api->KernelContext_ParallelFor(context, run_rows, static_cast<size_t>(work.tasks), 0, &work);
}

// ---- the OrtCustomOp table -----------------------------------------------------------------

struct DySampleOp : OrtCustomOp {
  const char* provider;
  bool cuda;
};

template <typename Body>
OrtStatus* guarded(Body body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return g_api->CreateStatus(ORT_FAIL, "DySample: out of memory");
  } catch (...) {
    return g_api->CreateStatus(ORT_FAIL, "DySample: unexpected C++ exception");
  }
}

DySampleOp make_op(const char* provider, bool cuda) {
  DySampleOp op{};
  op.version = kApiVersion;  // ONNX Runtime reads the table's fields up to this version only
  op.provider = provider;
  op.cuda = cuda;
  op.GetName = [](const OrtCustomOp*) { return kOpName; };
  op.GetExecutionProviderType = [](const OrtCustomOp* self) { return static_cast<const DySampleOp*>(self)->provider; };
  // Undefined types: every dtype reaches kernel creation, which names the node in its refusal.
  op.GetInputType = [](const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED; };
  op.GetInputTypeCount = [](const OrtCustomOp*) -> size_t { return 2; };
  op.GetOutputType = [](const OrtCustomOp*, size_t) { return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED; };
  op.GetOutputTypeCount = [](const OrtCustomOp*) -> size_t { return 1; };
  op.KernelDestroy = [](void* kernel) { delete static_cast<Kernel*>(kernel); };
  op.GetInputCharacteristic = [](const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; };
  op.GetOutputCharacteristic = [](const OrtCustomOp*, size_t) { return INPUT_OUTPUT_REQUIRED; };
  op.GetInputMemoryType = [](const OrtCustomOp*, size_t) { return OrtMemTypeDefault; };
  op.GetVariadicInputMinArity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicInputHomogeneity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicOutputMinArity = [](const OrtCustomOp*) { return 1; };
  op.GetVariadicOutputHomogeneity = [](const OrtCustomOp*) { return 1; };
  op.CreateKernelV2 = [](const OrtCustomOp* self, const OrtApi*, const OrtKernelInfo* info, void** kernel) {
    return guarded([&] { return create_kernel(info, static_cast<const DySampleOp*>(self)->cuda, kernel); });
  };
  op.KernelComputeV2 = [](void* kernel, OrtKernelContext* context) {
    return guarded([&] { return compute(*static_cast<const Kernel*>(kernel), context); });
  };
  op.InferOutputShapeFn = [](const OrtCustomOp*, OrtShapeInferContext* context) {
    return guarded([&] { return infer_output(context); });
  };
  op.GetStartVersion = [](const OrtCustomOp*) { return 1; };
  op.GetEndVersion = [](const OrtCustomOp*) { return INT_MAX; };
  return op;
}

const DySampleOp kCpuOp = make_op("CPUExecutionProvider", false);
#if defined(DEPLOYKIT_ORT_WITH_CUDA)
const DySampleOp kCudaOp = make_op("CUDAExecutionProvider", true);
#endif

// The domains handed to ONNX Runtime live until the library is unloaded (session options keep
// pointers to them); one per registration, released together.
struct Domains {
  std::mutex mutex;
  std::vector<OrtCustomOpDomain*> all;
  ~Domains() {
    for (OrtCustomOpDomain* domain : all) g_api->ReleaseCustomOpDomain(domain);
  }
};
Domains g_domains;

}  // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                            const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(kApiVersion);
  if (api == nullptr) {
    const std::string message = std::string("deploykit's DySample op needs ONNX Runtime 1.17 or newer; this is ") +
                                api_base->GetVersionString();
    return api_base->GetApi(1)->CreateStatus(ORT_FAIL, message.c_str());
  }
  g_api = api;
  return guarded([&]() -> OrtStatus* {
    OrtCustomOpDomain* domain = nullptr;
    DEPLOYKIT_RETURN_IF_ERROR(g_api->CreateCustomOpDomain(kDomain, &domain));
    {
      std::lock_guard<std::mutex> lock(g_domains.mutex);
      g_domains.all.push_back(domain);
    }
    DEPLOYKIT_RETURN_IF_ERROR(g_api->CustomOpDomain_Add(domain, &kCpuOp));
#if defined(DEPLOYKIT_ORT_WITH_CUDA)
    DEPLOYKIT_RETURN_IF_ERROR(g_api->CustomOpDomain_Add(domain, &kCudaOp));
#endif
    return g_api->AddCustomOpDomain(options, domain);
  });
}
