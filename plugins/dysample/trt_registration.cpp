#include "trt_registration.h"

#include <string>

#include "trt_log.h"

namespace deploykit {
namespace trt {

CreatorRegistration::CreatorRegistration(nvinfer1::IPluginCreatorV3One& creator) noexcept
    : creator_(creator), creators_{&creator} {}

bool CreatorRegistration::register_on_load(nvinfer1::IPluginRegistry* registry) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (registry == nullptr) {
    report("no TensorRT plugin registry when the library was loaded: the creator is not registered",
           nvinfer1::ILogger::Severity::kWARNING);
    return false;
  }
  if (!registry->registerCreator(creator_, creator_.getPluginNamespace())) {
    report(std::string("a creator of ") + creator_.getPluginName() + " version " + creator_.getPluginVersion() +
               " is already registered in namespace \"" + creator_.getPluginNamespace() +
               "\" (another copy of this library?): this copy's creator is left to IPluginRegistry::loadLibrary",
           nvinfer1::ILogger::Severity::kWARNING);
    return false;
  }
  registered_on_load_in_ = registry;
  return true;
}

nvinfer1::IPluginCreatorInterface* const* CreatorRegistration::creators_for_load_library(int32_t& nbCreators) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (nvinfer1::IPluginRegistry* registry = registered_on_load_in_) {
    registered_on_load_in_ = nullptr;
    // Only this library's own registration is taken back, never another library's creator of
    // the same name.
    bool const still_ours = registry->getCreator(creator_.getPluginName(), creator_.getPluginVersion(),
                                                 creator_.getPluginNamespace()) == &creator_;
    if (still_ours && !registry->deregisterCreator(creator_)) {
      report("could not take back the load-time registration: loadLibrary will refuse this library",
             nvinfer1::ILogger::Severity::kWARNING);
    }
  }
  nbCreators = static_cast<int32_t>(sizeof(creators_) / sizeof(creators_[0]));
  return creators_;
}

}  // namespace trt
}  // namespace deploykit
