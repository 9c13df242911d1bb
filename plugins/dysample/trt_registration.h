// How the plugin library's creator reaches a plugin registry, whichever way the library is
// loaded, with one library and no build option:
//
//   dlopen, LD_PRELOAD (Triton), linking, trtexec --staticPlugins: nothing calls into the library
//     but its load-time initialiser, which registers the creator in the global registry
//     (register_on_load).
//   IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, deploykit, a plugin library
//     serialized into an engine): TensorRT dlopens the library, which runs the initialiser above,
//     then registers what getCreators returns and, per the header, fails "if any of the plugins
//     are already registered". So getCreators first takes back the library's own load-time
//     registration (creators_for_load_library): the creator ends up registered once, by the
//     registry that loaded the library, and deregisterLibrary removes it.
//
// Kept apart from the library's entry points so that every route can be driven against a
// registry test double (tests/plugins/trt_harness).
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <mutex>

namespace deploykit {
namespace trt {

class CreatorRegistration {
 public:
  explicit CreatorRegistration(nvinfer1::IPluginCreatorV3One& creator) noexcept;
  CreatorRegistration(CreatorRegistration const&) = delete;
  CreatorRegistration& operator=(CreatorRegistration const&) = delete;

  // Registers the creator under its own namespace (the ONNX node's plugin_namespace). False,
  // with a warning, when the registry is missing or refuses it (e.g. a second copy of the library).
  bool register_on_load(nvinfer1::IPluginRegistry* registry) noexcept;

  // What the exported getCreators returns, after taking the load-time registration back from
  // the registry it went to, if it is still there.
  nvinfer1::IPluginCreatorInterface* const* creators_for_load_library(int32_t& nbCreators) noexcept;

 private:
  nvinfer1::IPluginCreatorV3One& creator_;
  nvinfer1::IPluginCreatorInterface* const creators_[1];
  std::mutex mutex_;
  nvinfer1::IPluginRegistry* registered_on_load_in_ = nullptr;
};

}  // namespace trt
}  // namespace deploykit
