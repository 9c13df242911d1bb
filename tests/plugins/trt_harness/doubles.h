// Test doubles that let the DySample TensorRT plugin run on a machine without TensorRT's
// libraries or a GPU: the one libnvinfer symbol the plugin library needs (getPluginRegistry), a
// plugin registry that follows IPluginRegistry's documented contract, a logger and logger finder,
// an IExprBuilder / IDimensionExpr pair, and the CUDA kernel's entry point (so enqueue never
// launches anything). Only this harness links them; the plugin sources are compiled unchanged.
#pragma once

#include <NvInferRuntime.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dysample_sample.h"

// The plugin library's entry points (plugins/dysample/trt_plugin.cpp).
extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder);

namespace harness {

// ---- checks -------------------------------------------------------------------------------
// CHECK evaluates the condition first, then (only on failure) the description, which may
// describe what the condition produced.
void pass();
void fail(std::string const& what, char const* file, int line);
#define CHECK(condition, what)                          \
  do {                                                  \
    if (static_cast<bool>(condition)) {                 \
      ::harness::pass();                                \
    } else {                                            \
      ::harness::fail((what), __FILE__, __LINE__);      \
    }                                                   \
  } while (false)
int checks_passed();
int checks_failed();

// A linear tensor of ``nb_dims`` dims (a, b, c, d), as TensorRT describes one to enqueue.
inline nvinfer1::PluginTensorDesc tensor(nvinfer1::DataType type, int64_t a, int64_t b, int64_t c, int64_t d,
                                         int nb_dims = 4) {
  nvinfer1::PluginTensorDesc t{};
  t.type = type;
  t.format = nvinfer1::TensorFormat::kLINEAR;
  t.dims.nbDims = nb_dims;
  t.dims.d[0] = a;
  t.dims.d[1] = b;
  t.dims.d[2] = c;
  t.dims.d[3] = d;
  return t;
}

// ---- logging --------------------------------------------------------------------------------
class RecordingLogger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override;
  // Whether some message holds `part` (at `severity`, when given).
  bool logged(std::string const& part) const;
  bool logged(std::string const& part, Severity severity) const;
  std::string last() const;
  std::vector<std::pair<Severity, std::string>> messages;
};

class LoggerFinderDouble : public nvinfer1::ILoggerFinder {
 public:
  explicit LoggerFinderDouble(nvinfer1::ILogger* logger) : logger_(logger) {}
  nvinfer1::ILogger* findLogger() override { return logger_; }

 private:
  nvinfer1::ILogger* logger_;
};

// While alive, the plugin library's messages go to `logger` (through its setLoggerFinder).
class CapturedMessages {
 public:
  CapturedMessages();
  ~CapturedMessages();
  CapturedMessages(CapturedMessages const&) = delete;
  CapturedMessages& operator=(CapturedMessages const&) = delete;
  RecordingLogger logger;

 private:
  LoggerFinderDouble finder_;
};

// Everything written to stderr (fd 2) while alive, read back by text().
class CapturedStderr {
 public:
  CapturedStderr();
  ~CapturedStderr();
  CapturedStderr(CapturedStderr const&) = delete;
  CapturedStderr& operator=(CapturedStderr const&) = delete;
  std::string text();

 private:
  int saved_fd_;
  std::FILE* file_;
};

// ---- plugin registry -----------------------------------------------------------------------
// What a plugin library offers TensorRT: what dlopen runs the first time (its static
// initialisers) and its exported entry points.
struct LibraryDouble {
  std::function<void()> initialiser;
  std::function<nvinfer1::IPluginCreatorInterface* const*(int32_t&)> get_creators;
  std::function<void(nvinfer1::ILoggerFinder*)> set_logger_finder;
  bool loaded = false;  // dlopen runs the initialisers once per process
};

// getAllCreatorsRecursive is declared by TensorRT 10.x from some minor release on (not 10.3) and
// by 11.x: defined here without `override` so one double compiles against every header set.
class RecursiveListing : public nvinfer1::IPluginRegistry {
 public:
  virtual nvinfer1::IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept;
};

// Follows IPluginRegistry's header contract: registerCreator returns false when a creator with
// the same name, version and namespace is registered; getCreator finds by all three;
// deregisterCreator returns false when not found; getAllCreators returns nullptr when empty;
// loadLibrary dlopens (initialisers run once), calls setLoggerFinder and getCreators, and
// "will fail and return nullptr if any of the plugins are already registered".
class RegistryDouble final : public RecursiveListing {
 public:
  RegistryDouble();
  ~RegistryDouble() noexcept override;
  RegistryDouble(RegistryDouble const&) = delete;
  RegistryDouble& operator=(RegistryDouble const&) = delete;

  // Makes `library` loadable from `path`.
  void install(std::string const& path, LibraryDouble& library);
  // How many creators are registered as (name, version, namespace).
  int count(char const* name, char const* version, char const* pluginNamespace) const;
  int size() const { return static_cast<int>(entries_.size()); }

  void setErrorRecorder(nvinfer1::IErrorRecorder* const recorder) noexcept override;
  nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override;
  bool isParentSearchEnabled() const override;
  void setParentSearchEnabled(bool const enabled) override;
  PluginLibraryHandle loadLibrary(nvinfer1::AsciiChar const* pluginPath) noexcept override;
  void deregisterLibrary(PluginLibraryHandle handle) noexcept override;
  bool registerCreator(nvinfer1::IPluginCreatorInterface& creator,
                       nvinfer1::AsciiChar const* const pluginNamespace) noexcept override;
  nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override;
  nvinfer1::IPluginCreatorInterface* getCreator(nvinfer1::AsciiChar const* const pluginName,
                                                nvinfer1::AsciiChar const* const pluginVersion,
                                                nvinfer1::AsciiChar const* const pluginNamespace = "") noexcept override;
  bool deregisterCreator(nvinfer1::IPluginCreatorInterface const& creator) noexcept override;
  nvinfer1::IPluginResource* acquirePluginResource(nvinfer1::AsciiChar const* key,
                                                   nvinfer1::IPluginResource* resource) noexcept override;
  int32_t releasePluginResource(nvinfer1::AsciiChar const* key) noexcept override;
#if NV_TENSORRT_MAJOR < 11
  // The IPluginV2 registry methods TensorRT 11 removed; the plugin never calls them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  bool registerCreator(nvinfer1::IPluginCreator& creator, nvinfer1::AsciiChar const* const pluginNamespace) noexcept override;
  nvinfer1::IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override;
  nvinfer1::IPluginCreator* getPluginCreator(nvinfer1::AsciiChar const* const pluginName,
                                             nvinfer1::AsciiChar const* const pluginVersion,
                                             nvinfer1::AsciiChar const* const pluginNamespace = "") noexcept override;
  bool deregisterCreator(nvinfer1::IPluginCreator const& creator) noexcept override;
#pragma GCC diagnostic pop
#endif

  // The finder this registry hands to libraries it loads, and the logger behind it.
  RecordingLogger logger;

 private:
  struct Entry {
    nvinfer1::IPluginCreatorInterface* creator;
    std::string name, version, pluginNamespace;
  };
  struct LoadedLibrary {
    std::vector<nvinfer1::IPluginCreatorInterface*> creators;
  };
  std::vector<Entry> entries_;
  mutable std::vector<nvinfer1::IPluginCreatorInterface*> listing_;
  std::map<std::string, LibraryDouble*> installed_;
  std::vector<std::unique_ptr<LoadedLibrary>> handles_;
  LoggerFinderDouble finder_;
  nvinfer1::IErrorRecorder* recorder_ = nullptr;
  bool parent_search_ = true;
};

// The registry getPluginRegistry() returns (nullptr: none, as before TensorRT is initialised).
RegistryDouble& process_registry();
void set_process_registry_available(bool available);

// ---- IExprBuilder / IDimensionExpr ---------------------------------------------------------
class ExprDouble final : public nvinfer1::IDimensionExpr {
 public:
  ExprDouble(std::string text, bool is_constant, int64_t value);
  ~ExprDouble() noexcept override = default;
  std::string const& text() const { return text_; }

 private:
  struct Impl final : nvinfer1::apiv::VDimensionExpr {
    explicit Impl(ExprDouble const& e) : expr(e) {}
    bool isConstant() const override;
    int64_t getConstantValue() const override;
    bool isSizeTensor() const override;
    ExprDouble const& expr;
  };
  std::string text_;
  bool constant_;
  int64_t value_;
  Impl impl_;
};

// Builds constants and products as text ("H*2") or folded constants, as TensorRT folds them.
class ExprBuilderDouble final : public nvinfer1::IExprBuilder {
 public:
  ExprBuilderDouble();
  ~ExprBuilderDouble() noexcept override = default;
  ExprDouble const* symbol(std::string const& name);
  ExprDouble const* number(int64_t value);
  bool fail_constants = false;   // constant() returns nullptr
  bool fail_operations = false;  // operation() returns nullptr
  int operations = 0;            // operation() calls

 private:
  struct Impl final : nvinfer1::apiv::VExprBuilder {
    explicit Impl(ExprBuilderDouble& b) : builder(b) {}
    nvinfer1::IDimensionExpr const* constant(int64_t value) override;
    nvinfer1::IDimensionExpr const* operation(nvinfer1::DimensionOperation op, nvinfer1::IDimensionExpr const& first,
                                              nvinfer1::IDimensionExpr const& second) override;
    nvinfer1::IDimensionExpr const* declareSizeTensor(int32_t outputIndex, nvinfer1::IDimensionExpr const& opt,
                                                      nvinfer1::IDimensionExpr const& upper) override;
    ExprBuilderDouble& builder;
  };
  ExprDouble const* make(std::string text, bool is_constant, int64_t value);
  std::vector<std::unique_ptr<ExprDouble>> exprs_;
  Impl impl_;
};

// ---- the CUDA kernel's entry point -----------------------------------------------------------
struct KernelCall {
  bool half;
  deploykit::dysample::Dims dims;
  void const* x;
  void const* offset;
  void* out;
  cudaStream_t stream;
};
std::vector<KernelCall>& kernel_calls();
// What the next kernel "launch" returns (cudaSuccess unless a test sets a failure).
cudaError_t& next_kernel_status();

// ---- test groups ---------------------------------------------------------------------------
void test_creator();
void test_build();
void test_runtime();
void test_loading();

}  // namespace harness
