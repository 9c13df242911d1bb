// TensorRT plugin for DySample's sample step: the deploykit::DySample ONNX node
// (x, offset; attributes scale, groups) runs the same CUDA kernel as the PyTorch op.
//
// IPluginV3 is the only plugin interface that is not deprecated in TensorRT 10 and the one
// TensorRT 11 keeps; the build, runtime and core capabilities live on one object because
// they share nothing but two integers.
#pragma once

#include <NvInferRuntime.h>

#include <array>
#include <cstdint>

namespace deploykit {
namespace trt {

// What the ONNX node names (plugin_version / plugin_namespace attributes) and what the
// registry is searched for; deploykit/ops/onnx_translation.py writes the same strings.
inline constexpr char kPluginName[] = "DySample";
inline constexpr char kPluginVersion[] = "1";
inline constexpr char kPluginNamespace[] = "deploykit";

class DySamplePlugin final : public nvinfer1::IPluginV3,
                             public nvinfer1::IPluginV3OneCore,
                             public nvinfer1::IPluginV3OneBuild,
                             public nvinfer1::IPluginV3OneRuntime {
 public:
  DySamplePlugin(int32_t scale, int32_t groups) noexcept;
  DySamplePlugin(DySamplePlugin const& other) noexcept;
  DySamplePlugin& operator=(DySamplePlugin const&) = delete;
  ~DySamplePlugin() noexcept override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  char const* getPluginNamespace() const noexcept override;

  // IPluginV3OneBuild
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t getNbOutputs() const noexcept override;
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

  // IPluginV3OneRuntime
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  int32_t scale_;
  int32_t groups_;
  // Filled by getFieldsToSerialize, pointing at this object's own members, so a copy never
  // hands out pointers into the object it was copied from.
  std::array<nvinfer1::PluginField, 2> serial_fields_;
  nvinfer1::PluginFieldCollection serial_collection_;
};

class DySamplePluginCreator final : public nvinfer1::IPluginCreatorV3One {
 public:
  DySamplePluginCreator() noexcept;
  // Not copyable: field_collection_ points into field_names_, and a copy's would point into
  // the original.
  DySamplePluginCreator(DySamplePluginCreator const&) = delete;
  DySamplePluginCreator& operator=(DySamplePluginCreator const&) = delete;
  ~DySamplePluginCreator() noexcept override = default;

  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  char const* getPluginNamespace() const noexcept override;

 private:
  std::array<nvinfer1::PluginField, 2> field_names_;
  nvinfer1::PluginFieldCollection field_collection_;
};

}  // namespace trt
}  // namespace deploykit
