#include "doubles.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

#include <cuda_fp16.h>

#include "dysample_cuda.h"

namespace harness {

// ---- checks -------------------------------------------------------------------------------
namespace {
int passed = 0;
int failed = 0;
}  // namespace

void pass() { ++passed; }

void fail(std::string const& what, char const* file, int line) {
  ++failed;
  std::printf("FAILED %s:%d: %s\n", file, line, what.c_str());
}

int checks_passed() { return passed; }
int checks_failed() { return failed; }

// ---- logging --------------------------------------------------------------------------------
void RecordingLogger::log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept {
  messages.emplace_back(severity, msg == nullptr ? "" : msg);
}

bool RecordingLogger::logged(std::string const& part) const {
  return std::any_of(messages.begin(), messages.end(),
                     [&](auto const& m) { return m.second.find(part) != std::string::npos; });
}

bool RecordingLogger::logged(std::string const& part, Severity severity) const {
  return std::any_of(messages.begin(), messages.end(), [&](auto const& m) {
    return m.first == severity && m.second.find(part) != std::string::npos;
  });
}

std::string RecordingLogger::last() const { return messages.empty() ? "" : messages.back().second; }

CapturedMessages::CapturedMessages() : finder_(&logger) { setLoggerFinder(&finder_); }
CapturedMessages::~CapturedMessages() { setLoggerFinder(nullptr); }

CapturedStderr::CapturedStderr() : saved_fd_(dup(2)), file_(std::tmpfile()) {
  std::fflush(stderr);
  dup2(fileno(file_), 2);
}

CapturedStderr::~CapturedStderr() {
  std::fflush(stderr);
  dup2(saved_fd_, 2);
  close(saved_fd_);
  std::fclose(file_);
}

std::string CapturedStderr::text() {
  std::fflush(stderr);
  std::string text;
  std::rewind(file_);
  char buffer[512];
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), file_)) text.append(buffer, n);
  return text;
}

// ---- plugin registry -----------------------------------------------------------------------
namespace {
// Name and version of a creator; the registry double knows only IPluginCreatorV3One creators,
// the only kind the plugin has.
bool describe(nvinfer1::IPluginCreatorInterface const& creator, std::string& name, std::string& version) {
  auto const* v3 = dynamic_cast<nvinfer1::IPluginCreatorV3One const*>(&creator);
  if (v3 == nullptr) return false;
  name = v3->getPluginName();
  version = v3->getPluginVersion();
  return true;
}
}  // namespace

nvinfer1::IPluginCreatorInterface* const* RecursiveListing::getAllCreatorsRecursive(int32_t* const numCreators) noexcept {
  return getAllCreators(numCreators);  // no parent registry
}

RegistryDouble::RegistryDouble() : finder_(&logger) {}
RegistryDouble::~RegistryDouble() noexcept = default;

void RegistryDouble::install(std::string const& path, LibraryDouble& library) { installed_[path] = &library; }

int RegistryDouble::count(char const* name, char const* version, char const* pluginNamespace) const {
  return static_cast<int>(std::count_if(entries_.begin(), entries_.end(), [&](Entry const& e) {
    return e.name == name && e.version == version && e.pluginNamespace == pluginNamespace;
  }));
}

void RegistryDouble::setErrorRecorder(nvinfer1::IErrorRecorder* const recorder) noexcept { recorder_ = recorder; }
nvinfer1::IErrorRecorder* RegistryDouble::getErrorRecorder() const noexcept { return recorder_; }
bool RegistryDouble::isParentSearchEnabled() const { return parent_search_; }
void RegistryDouble::setParentSearchEnabled(bool const enabled) { parent_search_ = enabled; }

RegistryDouble::PluginLibraryHandle RegistryDouble::loadLibrary(nvinfer1::AsciiChar const* pluginPath) noexcept {
  auto found = installed_.find(pluginPath == nullptr ? "" : pluginPath);
  if (found == installed_.end()) return nullptr;
  LibraryDouble& library = *found->second;
  if (!library.loaded) {
    library.loaded = true;
    if (library.initialiser) library.initialiser();
  }
  if (library.set_logger_finder) library.set_logger_finder(&finder_);
  int32_t nb = 0;
  nvinfer1::IPluginCreatorInterface* const* creators = library.get_creators(nb);
  if (creators == nullptr || nb < 1) return nullptr;
  auto loaded = std::make_unique<LoadedLibrary>();
  for (int32_t i = 0; i < nb; ++i) {
    auto const* v3 = dynamic_cast<nvinfer1::IPluginCreatorV3One const*>(creators[i]);
    if (v3 == nullptr || getCreator(v3->getPluginName(), v3->getPluginVersion(), v3->getPluginNamespace()) != nullptr) {
      return nullptr;  // "fail and return nullptr if any of the plugins are already registered"
    }
  }
  for (int32_t i = 0; i < nb; ++i) {
    auto const* v3 = dynamic_cast<nvinfer1::IPluginCreatorV3One const*>(creators[i]);
    registerCreator(*creators[i], v3->getPluginNamespace());
    loaded->creators.push_back(creators[i]);
  }
  handles_.push_back(std::move(loaded));
  return handles_.back().get();
}

void RegistryDouble::deregisterLibrary(PluginLibraryHandle handle) noexcept {
  auto found = std::find_if(handles_.begin(), handles_.end(), [&](auto const& h) { return h.get() == handle; });
  if (found == handles_.end()) return;
  for (auto* creator : (*found)->creators) deregisterCreator(*creator);
  handles_.erase(found);
}

bool RegistryDouble::registerCreator(nvinfer1::IPluginCreatorInterface& creator,
                                     nvinfer1::AsciiChar const* const pluginNamespace) noexcept {
  Entry entry{&creator, "", "", pluginNamespace == nullptr ? "" : pluginNamespace};
  if (!describe(creator, entry.name, entry.version)) return false;
  if (count(entry.name.c_str(), entry.version.c_str(), entry.pluginNamespace.c_str()) > 0) return false;
  entries_.push_back(entry);
  return true;
}

nvinfer1::IPluginCreatorInterface* const* RegistryDouble::getAllCreators(int32_t* const numCreators) const noexcept {
  listing_.clear();
  for (Entry const& e : entries_) listing_.push_back(e.creator);
  if (numCreators != nullptr) *numCreators = static_cast<int32_t>(listing_.size());
  return listing_.empty() ? nullptr : listing_.data();
}

nvinfer1::IPluginCreatorInterface* RegistryDouble::getCreator(nvinfer1::AsciiChar const* const pluginName,
                                                              nvinfer1::AsciiChar const* const pluginVersion,
                                                              nvinfer1::AsciiChar const* const pluginNamespace) noexcept {
  for (Entry const& e : entries_) {
    if (e.name == pluginName && e.version == pluginVersion && e.pluginNamespace == pluginNamespace) return e.creator;
  }
  return nullptr;
}

bool RegistryDouble::deregisterCreator(nvinfer1::IPluginCreatorInterface const& creator) noexcept {
  auto found = std::find_if(entries_.begin(), entries_.end(), [&](Entry const& e) { return e.creator == &creator; });
  if (found == entries_.end()) return false;
  entries_.erase(found);
  return true;
}

// The plugin keeps no shared resources; these exist because the interface declares them.
nvinfer1::IPluginResource* RegistryDouble::acquirePluginResource(nvinfer1::AsciiChar const*,
                                                                 nvinfer1::IPluginResource*) noexcept {
  return nullptr;
}
int32_t RegistryDouble::releasePluginResource(nvinfer1::AsciiChar const*) noexcept { return -1; }

#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
bool RegistryDouble::registerCreator(nvinfer1::IPluginCreator&, nvinfer1::AsciiChar const* const) noexcept { return false; }
nvinfer1::IPluginCreator* const* RegistryDouble::getPluginCreatorList(int32_t* const numCreators) const noexcept {
  if (numCreators != nullptr) *numCreators = 0;
  return nullptr;
}
nvinfer1::IPluginCreator* RegistryDouble::getPluginCreator(nvinfer1::AsciiChar const* const,
                                                           nvinfer1::AsciiChar const* const,
                                                           nvinfer1::AsciiChar const* const) noexcept {
  return nullptr;
}
bool RegistryDouble::deregisterCreator(nvinfer1::IPluginCreator const&) noexcept { return false; }
#pragma GCC diagnostic pop
#endif

namespace {
bool process_registry_available = true;
}  // namespace

RegistryDouble& process_registry() {
  static RegistryDouble registry;
  return registry;
}

void set_process_registry_available(bool available) { process_registry_available = available; }

// ---- IExprBuilder / IDimensionExpr ---------------------------------------------------------
ExprDouble::ExprDouble(std::string text, bool is_constant, int64_t value)
    : text_(std::move(text)), constant_(is_constant), value_(value), impl_(*this) {
  mImpl = &impl_;
}

bool ExprDouble::Impl::isConstant() const { return expr.constant_; }
int64_t ExprDouble::Impl::getConstantValue() const {
  return expr.constant_ ? expr.value_ : std::numeric_limits<int64_t>::min();
}
bool ExprDouble::Impl::isSizeTensor() const { return false; }

ExprBuilderDouble::ExprBuilderDouble() : impl_(*this) { mImpl = &impl_; }

ExprDouble const* ExprBuilderDouble::make(std::string text, bool is_constant, int64_t value) {
  exprs_.push_back(std::make_unique<ExprDouble>(std::move(text), is_constant, value));
  return exprs_.back().get();
}

ExprDouble const* ExprBuilderDouble::symbol(std::string const& name) { return make(name, false, 0); }
ExprDouble const* ExprBuilderDouble::number(int64_t value) { return make(std::to_string(value), true, value); }

nvinfer1::IDimensionExpr const* ExprBuilderDouble::Impl::constant(int64_t value) {
  return builder.fail_constants ? nullptr : builder.number(value);
}

nvinfer1::IDimensionExpr const* ExprBuilderDouble::Impl::operation(nvinfer1::DimensionOperation op,
                                                                   nvinfer1::IDimensionExpr const& first,
                                                                   nvinfer1::IDimensionExpr const& second) {
  ++builder.operations;
  if (builder.fail_operations || op != nvinfer1::DimensionOperation::kPROD) return nullptr;
  auto const& a = static_cast<ExprDouble const&>(first);
  auto const& b = static_cast<ExprDouble const&>(second);
  if (a.isConstant() && b.isConstant()) return builder.number(a.getConstantValue() * b.getConstantValue());
  return builder.make(a.text() + "*" + b.text(), false, 0);
}

nvinfer1::IDimensionExpr const* ExprBuilderDouble::Impl::declareSizeTensor(int32_t, nvinfer1::IDimensionExpr const&,
                                                                           nvinfer1::IDimensionExpr const&) {
  return nullptr;  // DySample has no data-dependent output shape
}

// ---- the CUDA kernel's entry point -----------------------------------------------------------
std::vector<KernelCall>& kernel_calls() {
  static std::vector<KernelCall> calls;
  return calls;
}

cudaError_t& next_kernel_status() {
  static cudaError_t status = cudaSuccess;
  return status;
}

}  // namespace harness

// Stands in for libnvinfer's registry.
extern "C" nvinfer1::IPluginRegistry* getPluginRegistry() noexcept {
  return harness::process_registry_available ? &harness::process_registry() : nullptr;
}

// Stands in for plugins/dysample/dysample_cuda.cu: records the launch instead of making it.
// Left out where the real kernel is linked (tests/plugins/trt_gpu_harness): both are explicit
// template instantiations, which the linker would merge silently, keeping either one.
#if !defined(DEPLOYKIT_HARNESS_REAL_KERNEL)
namespace deploykit {
namespace dysample {

template <typename T>
cudaError_t sample_cuda(const T* x, const T* offset, T* out, const Dims& dims, cudaStream_t stream) {
  harness::kernel_calls().push_back({sizeof(T) == 2, dims, x, offset, out, stream});
  return harness::next_kernel_status();
}

template cudaError_t sample_cuda<float>(const float*, const float*, float*, const Dims&, cudaStream_t);
template cudaError_t sample_cuda<__half>(const __half*, const __half*, __half*, const Dims&, cudaStream_t);

}  // namespace dysample
}  // namespace deploykit
#endif  // !DEPLOYKIT_HARNESS_REAL_KERNEL
