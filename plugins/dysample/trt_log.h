// Where the TensorRT plugin's messages go.
//
// TensorRT hands a plugin library an ILoggerFinder through the library's exported
// setLoggerFinder when it loads the library with IPluginRegistry::loadLibrary (trtexec
// --dynamicPlugins, deploykit, plugin libraries serialized into an engine); findLogger() then
// returns the logger of the builder, runtime or context calling the plugin, the one the
// application shows. Without a finder (the library only dlopen'ed or preloaded) there is no
// logger to find: libnvinfer's getLogger() is reserved for standalone functions, so messages go
// to stderr rather than to a logger nobody reads.
#pragma once

#include <NvInferRuntime.h>

#include <string>

namespace deploykit {
namespace trt {

// What the exported setLoggerFinder stores; nullptr forgets the previous finder.
void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept;

// One line "deploykit::DySample: <message>" to the finder's logger, or to stderr. Never throws.
void report(std::string const& message,
            nvinfer1::ILogger::Severity severity = nvinfer1::ILogger::Severity::kERROR) noexcept;

}  // namespace trt
}  // namespace deploykit
