// DySample TensorRT plugin: shape and type rules for the builder, the CUDA kernel for the
// runtime, and the entry points TensorRT looks for in a plugin library.
//
// Written against the IPluginV3 API, which is the same in TensorRT 10.x and 11.x for
// everything used here (checked by compiling against both header sets), so no
// NV_TENSORRT_MAJOR branches are needed. What 11.x did change (ILogger and ILoggerFinder now
// derive from IVersionedInterface; implicit-batch IPluginV2 methods removed) only matters to
// code that implements those classes; this file only calls them.
#include "trt_plugin.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstring>
#include <initializer_list>
#include <limits>
#include <new>
#include <string>

#include "dysample_cuda.h"
#include "dysample_sample.h"
#include "trt_log.h"
#include "trt_registration.h"

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

#if defined(_WIN32)
#define DEPLOYKIT_TRT_EXPORT __declspec(dllexport)
#else
// Explicit, because TENSORRTAPI only exports when building TensorRT itself.
#define DEPLOYKIT_TRT_EXPORT __attribute__((visibility("default")))
#endif

namespace deploykit {
namespace trt {
namespace {

constexpr int32_t kNbInputs = 2;
constexpr int32_t kNbOutputs = 1;
constexpr int32_t kRank = 4;

bool supported_type(DataType t) { return t == DataType::kFLOAT || t == DataType::kHALF; }

std::string dims_text(Dims const& d) {
  std::string s = "(";
  for (int32_t i = 0; i < d.nbDims; ++i) s += (i ? ", " : "") + std::to_string(d.d[i]);
  return s + ")";
}

dysample::Dims sample_dims(Dims const& x, int32_t scale, int32_t groups) {
  return dysample::Dims{x.d[0], x.d[1], x.d[2], x.d[3], groups, scale};
}

// dims_problem for shapes that may hold -1 (unknown until runtime): each unknown extent is
// replaced by a value that satisfies the rule it takes part in, so only a conflict between
// known extents is reported, with the same words as every other entry point.
char const* partial_dims_problem(Dims x, Dims offset, int32_t scale, int32_t groups) {
  if (x.nbDims != kRank || offset.nbDims != kRank) return "x and offset must be 4-D (B, C, H, W)";
  auto known = [](int64_t v) { return v >= 0; };
  if (!known(x.d[1])) x.d[1] = groups;
  if (!known(offset.d[1])) offset.d[1] = 2 * int64_t{groups} * scale * scale;
  for (int i : {0, 2, 3}) {
    if (!known(x.d[i]) && !known(offset.d[i])) x.d[i] = offset.d[i] = 1;
    if (!known(x.d[i])) x.d[i] = offset.d[i];
    if (!known(offset.d[i])) offset.d[i] = x.d[i];
  }
  return dysample::dims_problem(sample_dims(x, scale, groups), offset.d[0], offset.d[1], offset.d[2], offset.d[3]);
}

// dims_problem for concrete shapes (onShapeChange, enqueue), with the rank checked first.
char const* concrete_dims_problem(Dims const& x, Dims const& offset, int32_t scale, int32_t groups) {
  if (x.nbDims != kRank || offset.nbDims != kRank) return "x and offset must be 4-D (B, C, H, W)";
  return dysample::dims_problem(sample_dims(x, scale, groups), offset.d[0], offset.d[1], offset.d[2], offset.d[3]);
}

std::string problem_text(char const* problem, Dims const& x, Dims const& offset, int32_t scale, int32_t groups) {
  return std::string(problem) + ": x " + dims_text(x) + ", offset " + dims_text(offset) + ", scale " +
         std::to_string(scale) + ", groups " + std::to_string(groups);
}

// Reads one integer field whatever integer type the producer chose (the ONNX parser narrows
// INT attributes to kINT32; a hand-built collection may carry kINT64).
bool read_int_field(PluginField const& f, int64_t& value) {
  if (f.data == nullptr || f.length != 1) return false;
  switch (f.type) {
    case PluginFieldType::kINT8: value = *static_cast<int8_t const*>(f.data); return true;
    case PluginFieldType::kINT16: value = *static_cast<int16_t const*>(f.data); return true;
    case PluginFieldType::kINT32: value = *static_cast<int32_t const*>(f.data); return true;
    case PluginFieldType::kINT64: value = *static_cast<int64_t const*>(f.data); return true;
    default: return false;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// DySamplePlugin

DySamplePlugin::DySamplePlugin(int32_t scale, int32_t groups) noexcept
    : scale_(scale), groups_(groups), serial_fields_{}, serial_collection_{} {}

DySamplePlugin::DySamplePlugin(DySamplePlugin const& other) noexcept
    : IPluginV3(other),
      IPluginV3OneCore(other),
      IPluginV3OneBuild(other),
      IPluginV3OneRuntime(other),
      scale_(other.scale_),
      groups_(other.groups_),
      serial_fields_{},
      serial_collection_{} {}

nvinfer1::IPluginCapability* DySamplePlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  return nullptr;
}

nvinfer1::IPluginV3* DySamplePlugin::clone() noexcept {
  auto* copy = new (std::nothrow) DySamplePlugin(*this);
  if (copy == nullptr) report("out of memory while cloning the plugin");
  return copy;
}

char const* DySamplePlugin::getPluginName() const noexcept { return kPluginName; }
char const* DySamplePlugin::getPluginVersion() const noexcept { return kPluginVersion; }
char const* DySamplePlugin::getPluginNamespace() const noexcept { return kPluginNamespace; }

int32_t DySamplePlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                        DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || in == nullptr || out == nullptr) {
    report("expects 2 inputs (x, offset) and 1 output");
    return 1;
  }
  // Shapes here still hold -1 for dynamic extents; the concrete check is onShapeChange's.
  if (char const* problem = partial_dims_problem(in[0].desc.dims, in[1].desc.dims, scale_, groups_)) {
    report(problem_text(problem, in[0].desc.dims, in[1].desc.dims, scale_, groups_));
    return 1;
  }
  if (!supported_type(in[0].desc.type) || in[1].desc.type != in[0].desc.type || out[0].desc.type != in[0].desc.type) {
    report("x, offset and the output must all be float32 or all float16");
    return 1;
  }
  return 0;
}

int32_t DySamplePlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                           int32_t nbInputs) const noexcept {
  if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || outputTypes == nullptr || inputTypes == nullptr) {
    report("expects 2 inputs (x, offset) and 1 output");
    return 1;
  }
  if (!supported_type(inputTypes[0]) || inputTypes[1] != inputTypes[0]) {
    report("x and offset must both be float32 or both be float16");
    return 1;
  }
  outputTypes[0] = inputTypes[0];
  return 0;
}

int32_t DySamplePlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                                        int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                                        nvinfer1::IExprBuilder& exprBuilder) noexcept {
  if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || inputs == nullptr || outputs == nullptr) {
    report("expects 2 inputs (x, offset) and 1 output");
    return 1;
  }
  if (inputs[0].nbDims != kRank || inputs[1].nbDims != kRank) {
    report("x and offset must be 4-D (B, C, H, W)");
    return 1;
  }
  nvinfer1::IDimensionExpr const* scale = exprBuilder.constant(scale_);
  nvinfer1::IDimensionExpr const* height = nullptr;
  nvinfer1::IDimensionExpr const* width = nullptr;
  if (scale != nullptr && inputs[0].d[2] != nullptr && inputs[0].d[3] != nullptr) {
    height = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[2], *scale);
    width = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[0].d[3], *scale);
  }
  if (height == nullptr || width == nullptr) {
    report("could not build the output shape expressions");
    return 1;
  }
  outputs[0].nbDims = kRank;
  outputs[0].d[0] = inputs[0].d[0];
  outputs[0].d[1] = inputs[0].d[1];
  outputs[0].d[2] = height;
  outputs[0].d[3] = width;
  return 0;
}

bool DySamplePlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                               int32_t nbOutputs) noexcept {
  if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs) {
    return false;
  }
  PluginTensorDesc const& desc = inOut[pos].desc;
  if (desc.format != TensorFormat::kLINEAR) return false;
  // The kernel reads x and offset and writes the output in one element type.
  return pos == 0 ? supported_type(desc.type) : desc.type == inOut[0].desc.type;
}

int32_t DySamplePlugin::getNbOutputs() const noexcept { return kNbOutputs; }

size_t DySamplePlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
                                        DynamicPluginTensorDesc const* /*outputs*/,
                                        int32_t /*nbOutputs*/) const noexcept {
  return 0;  // a pure gather: every output element is computed straight from the inputs
}

int32_t DySamplePlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                                      int32_t nbOutputs) noexcept {
  if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || in == nullptr || out == nullptr) {
    report("expects 2 inputs (x, offset) and 1 output");
    return 1;
  }
  Dims const& x = in[0].dims;
  if (char const* problem = concrete_dims_problem(x, in[1].dims, scale_, groups_)) {
    report(problem_text(problem, x, in[1].dims, scale_, groups_));
    return 1;
  }
  dysample::Dims const d = sample_dims(x, scale_, groups_);
  Dims const& y = out[0].dims;
  if (y.nbDims != kRank || y.d[0] != d.batch || y.d[1] != d.channels || y.d[2] != d.out_height() ||
      y.d[3] != d.out_width()) {
    report("output shape " + dims_text(y) + " does not match x " + dims_text(x) + " upsampled by " +
           std::to_string(scale_));
    return 1;
  }
  return 0;
}

int32_t DySamplePlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
                                void const* const* inputs, void* const* outputs, void* /*workspace*/,
                                cudaStream_t stream) noexcept {
  if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
    report("enqueue called without tensors");
    return 1;
  }
  // Cheap next to the kernel, and it keeps a bad shape from becoming an out-of-bounds read.
  if (char const* problem = concrete_dims_problem(inputDesc[0].dims, inputDesc[1].dims, scale_, groups_)) {
    report(problem_text(problem, inputDesc[0].dims, inputDesc[1].dims, scale_, groups_));
    return 1;
  }
  dysample::Dims const d = sample_dims(inputDesc[0].dims, scale_, groups_);
  DataType const type = inputDesc[0].type;
  if (inputDesc[1].type != type || outputDesc[0].type != type) {
    report("x, offset and the output must share one data type");
    return 1;
  }
  cudaError_t status = cudaSuccess;
  if (type == DataType::kFLOAT) {
    status = dysample::sample_cuda<float>(static_cast<float const*>(inputs[0]), static_cast<float const*>(inputs[1]),
                                          static_cast<float*>(outputs[0]), d, stream);
  } else if (type == DataType::kHALF) {
    status = dysample::sample_cuda<__half>(static_cast<__half const*>(inputs[0]),
                                           static_cast<__half const*>(inputs[1]), static_cast<__half*>(outputs[0]),
                                           d, stream);
  } else {
    report("unsupported data type (float32 and float16 only)");
    return 1;
  }
  if (status != cudaSuccess) {
    report(std::string("kernel launch failed: ") + cudaGetErrorString(status));
    return 1;
  }
  return 0;
}

nvinfer1::IPluginV3* DySamplePlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept {
  // No per-context state: every context gets its own copy of the two integers.
  return clone();
}

PluginFieldCollection const* DySamplePlugin::getFieldsToSerialize() noexcept {
  serial_fields_[0] = PluginField("scale", &scale_, PluginFieldType::kINT32, 1);
  serial_fields_[1] = PluginField("groups", &groups_, PluginFieldType::kINT32, 1);
  serial_collection_.nbFields = static_cast<int32_t>(serial_fields_.size());
  serial_collection_.fields = serial_fields_.data();
  return &serial_collection_;
}

// ---------------------------------------------------------------------------------------------
// DySamplePluginCreator

DySamplePluginCreator::DySamplePluginCreator() noexcept
    : field_names_{PluginField("scale", nullptr, PluginFieldType::kINT32, 1),
                   PluginField("groups", nullptr, PluginFieldType::kINT32, 1)},
      field_collection_{static_cast<int32_t>(field_names_.size()), field_names_.data()} {}

nvinfer1::IPluginV3* DySamplePluginCreator::createPlugin(char const* /*name*/, PluginFieldCollection const* fc,
                                                         nvinfer1::TensorRTPhase /*phase*/) noexcept {
  // Build and runtime phases get the same two fields (the runtime ones are what
  // getFieldsToSerialize wrote), so one path serves both.
  if (fc == nullptr || (fc->nbFields > 0 && fc->fields == nullptr)) {
    report("createPlugin needs the fields scale and groups");
    return nullptr;
  }
  int64_t scale = 0, groups = 0;
  bool has_scale = false, has_groups = false;
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    PluginField const& f = fc->fields[i];
    if (f.name == nullptr) continue;
    int64_t* value = nullptr;
    bool* seen = nullptr;
    if (std::strcmp(f.name, "scale") == 0) {
      value = &scale;
      seen = &has_scale;
    } else if (std::strcmp(f.name, "groups") == 0) {
      value = &groups;
      seen = &has_groups;
    } else {
      continue;  // e.g. plugin_version / plugin_namespace, which the ONNX parser may pass along
    }
    if (!read_int_field(f, *value)) {
      report(std::string("field ") + f.name + " must be a single integer");
      return nullptr;
    }
    *seen = true;
  }
  if (!has_scale || !has_groups) {
    report(!has_scale && !has_groups ? "missing required fields scale and groups"
                                     : std::string("missing required field ") + (has_scale ? "groups" : "scale"));
    return nullptr;
  }
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  if (scale < 1 || groups < 1 || scale > kMax || groups > kMax) {
    report("scale and groups must be positive 32-bit integers (got scale " + std::to_string(scale) + ", groups " +
           std::to_string(groups) + ")");
    return nullptr;
  }
  // 2 * scale^2 fits in int64 for any int32 scale; keep the offset channel count in int32 too.
  if (2 * scale * scale > kMax / groups) {
    report("2 * groups * scale^2 offset channels do not fit in a 32-bit integer");
    return nullptr;
  }
  auto* plugin = new (std::nothrow) DySamplePlugin(static_cast<int32_t>(scale), static_cast<int32_t>(groups));
  if (plugin == nullptr) report("out of memory while creating the plugin");
  return plugin;
}

PluginFieldCollection const* DySamplePluginCreator::getFieldNames() noexcept { return &field_collection_; }
char const* DySamplePluginCreator::getPluginName() const noexcept { return kPluginName; }
char const* DySamplePluginCreator::getPluginVersion() const noexcept { return kPluginVersion; }
char const* DySamplePluginCreator::getPluginNamespace() const noexcept { return kPluginNamespace; }

}  // namespace trt
}  // namespace deploykit

// ---------------------------------------------------------------------------------------------
// Library entry points: the same library serves every loading route (trt_registration.h).
// Not REGISTER_TENSORRT_PLUGIN: its registrar passes namespace "" to registerCreator, and the
// ONNX node asks for plugin_namespace "deploykit".

namespace {

deploykit::trt::CreatorRegistration& library_registration() {
  static deploykit::trt::DySamplePluginCreator creator;
  static deploykit::trt::CreatorRegistration registration(creator);
  return registration;
}

// Runs when the library is loaded, by any route. getPluginRegistry resolves even when the
// library is preloaded before the application loads TensorRT: the library links libnvinfer,
// which the loader therefore initialises first.
struct RegisterOnLoad {
  RegisterOnLoad() noexcept { library_registration().register_on_load(getPluginRegistry()); }
};
RegisterOnLoad const register_on_load;

}  // namespace

extern "C" DEPLOYKIT_TRT_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
  deploykit::trt::set_logger_finder(finder);
}

extern "C" DEPLOYKIT_TRT_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
  return library_registration().creators_for_load_library(nbCreators);
}
