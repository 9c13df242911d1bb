#include "trt_log.h"

#include <atomic>
#include <cstdio>

#include "trt_plugin.h"

namespace deploykit {
namespace trt {
namespace {

std::atomic<nvinfer1::ILoggerFinder*> logger_finder{nullptr};

}  // namespace

void set_logger_finder(nvinfer1::ILoggerFinder* finder) noexcept { logger_finder.store(finder); }

void report(std::string const& message, nvinfer1::ILogger::Severity severity) noexcept {
  try {
    std::string const line = std::string(kPluginNamespace) + "::" + kPluginName + ": " + message;
    nvinfer1::ILogger* logger = nullptr;
    // findLogger must run on the thread of the plugin call being reported, which this is.
    if (nvinfer1::ILoggerFinder* finder = logger_finder.load()) logger = finder->findLogger();
    if (logger != nullptr) {
      logger->log(severity, line.c_str());
    } else {
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  } catch (...) {
    // Reporting must never be the thing that takes the process down.
  }
}

}  // namespace trt
}  // namespace deploykit
