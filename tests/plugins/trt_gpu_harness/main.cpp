// GPU harness of the DySample TensorRT plugin: the plugin's own sources and the real CUDA kernel
// (plugins/dysample/dysample_cuda.cu), driven as TensorRT drives a plugin, on device buffers.
// No TensorRT library is linked: the one libnvinfer symbol the plugin takes (getPluginRegistry)
// and the registry behind it come from the CPU harness's doubles (../trt_harness/doubles.cpp,
// compiled with DEPLOYKIT_HARNESS_REAL_KERNEL so that its launch double is left out).
//
//   deploykit_trt_enqueue_check CASE_DIR
//
// CASE_DIR/cases.txt holds one case a line, "name float32|float16 B C H W scale groups"; the
// inputs are CASE_DIR/name.x.bin and name.offset.bin (raw, native byte order, NCHW) and the
// output is written to CASE_DIR/name.out.bin for tests/plugins/test_trt_enqueue_gpu.py to compare
// with the PyTorch reference. Per (type, scale, groups) the plugin is created from the registry's
// creator with the ONNX parser's fields, asked the build-phase questions, re-created from its
// serialized fields (kRUNTIME, as an engine is deserialized) and attached to a context; each shape
// then goes through onShapeChange and enqueue on a non-blocking stream.
//
// Exit status: 0 every case ran and every check passed; 1 a check failed; 2 bad usage or case
// files; 77 no usable CUDA device (why on stderr; nothing is written).
#include <NvInferRuntime.h>
#include <NvInferVersion.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "doubles.h"
#include "trt_plugin.h"

using nvinfer1::DataType;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoDevice = 77;  // CTest's and automake's "skipped"
// Bytes around the output that the kernel must leave alone; 256 keeps the output as aligned as
// cudaMalloc's own pointer.
constexpr size_t kGuard = 256;
constexpr unsigned char kUnwritten = 0xFF;  // a NaN in float32 and in float16

struct Case {
  std::string name;
  DataType type = DataType::kFLOAT;
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int32_t scale = 0, groups = 0;
  std::vector<unsigned char> x, offset;

  size_t element_size() const { return type == DataType::kHALF ? 2 : 4; }
  int64_t x_elements() const { return batch * channels * height * width; }
  int64_t offset_elements() const { return batch * 2 * int64_t{groups} * scale * scale * height * width; }
  int64_t out_elements() const { return x_elements() * scale * scale; }
  std::string describe() const {
    std::ostringstream s;
    s << name << " " << (type == DataType::kHALF ? "float16" : "float32") << " x (" << batch << ", " << channels
      << ", " << height << ", " << width << ") scale " << scale << " groups " << groups;
    return s.str();
  }
};

bool read_file(std::string const& path, size_t bytes, std::vector<unsigned char>& data, std::string& error) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    error = "cannot read " + path;
    return false;
  }
  auto const size = static_cast<size_t>(in.tellg());
  if (size != bytes) {
    error = path + ": expected " + std::to_string(bytes) + " bytes, found " + std::to_string(size);
    return false;
  }
  data.resize(bytes);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(bytes));
  if (!in) {
    error = "cannot read " + path;
    return false;
  }
  return true;
}

bool read_cases(std::string const& dir, std::vector<Case>& cases, std::string& error) {
  std::ifstream manifest(dir + "/cases.txt");
  if (!manifest) {
    error = "cannot read " + dir + "/cases.txt";
    return false;
  }
  std::string line;
  int line_number = 0;
  while (std::getline(manifest, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::istringstream fields(line);
    Case c;
    std::string type, extra;
    if (!(fields >> c.name >> type >> c.batch >> c.channels >> c.height >> c.width >> c.scale >> c.groups) ||
        (fields >> extra) || (type != "float32" && type != "float16") || c.batch < 0 || c.channels < 0 ||
        c.height < 0 || c.width < 0) {
      error = dir + "/cases.txt:" + std::to_string(line_number) +
              ": expected \"name float32|float16 B C H W scale groups\", got \"" + line + "\"";
      return false;
    }
    c.type = type == "float16" ? DataType::kHALF : DataType::kFLOAT;
    if (c.scale < 1 || c.groups < 1) {
      error = dir + "/cases.txt:" + std::to_string(line_number) + ": scale and groups must be positive";
      return false;
    }
    std::string const base = dir + "/" + c.name;
    if (!read_file(base + ".x.bin", static_cast<size_t>(c.x_elements()) * c.element_size(), c.x, error) ||
        !read_file(base + ".offset.bin", static_cast<size_t>(c.offset_elements()) * c.element_size(), c.offset,
                   error)) {
      return false;
    }
    cases.push_back(std::move(c));
  }
  if (cases.empty()) error = dir + "/cases.txt lists no cases";
  return !cases.empty();
}

// A CUDA call that must succeed: counted as a check, reported with CUDA's words when it fails.
bool cuda_ok(cudaError_t status, char const* call, char const* file, int line) {
  if (status == cudaSuccess) {
    harness::pass();
    return true;
  }
  harness::fail(std::string(call) + ": " + cudaGetErrorString(status), file, line);
  return false;
}
#define CUDA_OK(call) cuda_ok((call), #call, __FILE__, __LINE__)

// Device memory freed on every path.
struct DeviceBuffer {
  explicit DeviceBuffer(size_t bytes) { ok = CUDA_OK(cudaMalloc(&ptr, bytes)); }
  ~DeviceBuffer() {
    if (ptr != nullptr) cudaFree(ptr);
  }
  DeviceBuffer(DeviceBuffer const&) = delete;
  DeviceBuffer& operator=(DeviceBuffer const&) = delete;
  unsigned char* bytes() const { return static_cast<unsigned char*>(ptr); }
  void* ptr = nullptr;
  bool ok = false;
};

struct PinnedBuffer {
  explicit PinnedBuffer(size_t bytes) { ok = CUDA_OK(cudaMallocHost(&ptr, bytes)); }
  ~PinnedBuffer() {
    if (ptr != nullptr) cudaFreeHost(ptr);
  }
  PinnedBuffer(PinnedBuffer const&) = delete;
  PinnedBuffer& operator=(PinnedBuffer const&) = delete;
  unsigned char* bytes() const { return static_cast<unsigned char*>(ptr); }
  void* ptr = nullptr;
  bool ok = false;
};

// Holds a stream's queue still: work enqueued behind it cannot start until open() (or 20 s have
// passed, so that a launch that waits for the stream, e.g. with CUDA_LAUNCH_BLOCKING=1, fails the
// check instead of hanging the run).
struct Gate {
  std::atomic<bool> opened{false};
  std::atomic<bool> timed_out{false};
  void open() { opened.store(true); }
};

void CUDART_CB wait_at_gate(void* data) {
  auto* gate = static_cast<Gate*>(data);
  auto const deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!gate->opened.load()) {
    if (std::chrono::steady_clock::now() > deadline) {
      gate->timed_out.store(true);
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

using harness::tensor;

// The plugin a context holds for one engine: one data type, scale and groups, any shape.
struct Engine {
  std::unique_ptr<nvinfer1::IPluginV3> built, deserialized, attached;
  nvinfer1::IPluginV3OneRuntime* runtime = nullptr;
};

// The build and deserialization TensorRT performs before the first enqueue; nullptr runtime
// (with the failed checks printed) when the plugin refuses any step.
Engine make_engine(DataType type, int32_t scale, int32_t groups) {
  Engine engine;
  auto* found = harness::process_registry().getCreator(deploykit::trt::kPluginName, deploykit::trt::kPluginVersion,
                                                       deploykit::trt::kPluginNamespace);
  auto* creator = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(found);
  CHECK(creator != nullptr, "the library registered its creator (DySample, 1, deploykit) when it was loaded");
  if (creator == nullptr) return engine;

  // Build phase, with the fields the ONNX parser passes for a deploykit::DySample node.
  char const version[] = "1";
  char const plugin_namespace[] = "deploykit";
  PluginField const node_fields[] = {PluginField("scale", &scale, PluginFieldType::kINT32, 1),
                                     PluginField("groups", &groups, PluginFieldType::kINT32, 1),
                                     PluginField("plugin_version", version, PluginFieldType::kCHAR, 1),
                                     PluginField("plugin_namespace", plugin_namespace, PluginFieldType::kCHAR, 9)};
  PluginFieldCollection const node{4, node_fields};
  engine.built.reset(creator->createPlugin("dysample", &node, nvinfer1::TensorRTPhase::kBUILD));
  CHECK(engine.built != nullptr, "createPlugin (kBUILD) accepts the node's fields");
  if (engine.built == nullptr) return engine;
  auto* build = dynamic_cast<nvinfer1::IPluginV3OneBuild*>(
      engine.built->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
  CHECK(build != nullptr, "the plugin has a build capability");
  if (build == nullptr) return engine;

  DataType const input_types[2] = {type, type};
  DataType output_type = DataType::kINT8;
  CHECK(build->getOutputDataTypes(&output_type, 1, input_types, 2) == 0 && output_type == type,
        "getOutputDataTypes gives the inputs' type");
  // Every extent dynamic but the offset's channels (fixed by scale and groups): the cases give
  // one engine several shapes.
  DynamicPluginTensorDesc io[3]{};
  io[0].desc = tensor(type, -1, -1, -1, -1);
  io[1].desc = tensor(type, -1, 2 * int64_t{groups} * scale * scale, -1, -1);
  io[2].desc = tensor(type, -1, -1, -1, -1);
  for (auto& d : io) d.min = d.max = d.opt = d.desc.dims;  // the plugin reads desc alone
  bool formats = true;
  for (int32_t pos = 0; pos < 3; ++pos) formats = formats && build->supportsFormatCombination(pos, io, 2, 1);
  CHECK(formats, "supportsFormatCombination takes linear tensors of this type");
  CHECK(build->configurePlugin(io, 2, io + 2, 1) == 0, "configurePlugin accepts dynamic shapes");
  CHECK(build->getWorkspaceSize(io, 2, io + 2, 1) == 0, "no workspace is asked for (enqueue gets nullptr)");

  // What the engine stores, and the plugin re-created from it as the runtime does.
  auto* core = dynamic_cast<nvinfer1::IPluginV3OneRuntime*>(
      engine.built->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
  CHECK(core != nullptr, "the plugin has a runtime capability");
  if (core == nullptr) return engine;
  PluginFieldCollection const* serialized = core->getFieldsToSerialize();
  CHECK(serialized != nullptr, "getFieldsToSerialize gives fields");
  if (serialized == nullptr) return engine;
  engine.deserialized.reset(creator->createPlugin("dysample", serialized, nvinfer1::TensorRTPhase::kRUNTIME));
  CHECK(engine.deserialized != nullptr, "createPlugin (kRUNTIME) accepts the serialized fields");
  if (engine.deserialized == nullptr) return engine;
  auto* deserialized_runtime = dynamic_cast<nvinfer1::IPluginV3OneRuntime*>(
      engine.deserialized->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
  if (deserialized_runtime != nullptr) engine.attached.reset(deserialized_runtime->attachToContext(nullptr));
  CHECK(engine.attached != nullptr, "attachToContext gives the context its own plugin");
  if (engine.attached == nullptr) return engine;
  engine.runtime = dynamic_cast<nvinfer1::IPluginV3OneRuntime*>(
      engine.attached->getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME));
  CHECK(engine.runtime != nullptr, "the context's plugin has a runtime capability");
  return engine;
}

bool all_unwritten(unsigned char const* bytes, size_t n) {
  return std::all_of(bytes, bytes + n, [](unsigned char b) { return b == kUnwritten; });
}

// One case through onShapeChange and enqueue on `stream`; writes name.out.bin. False when a check
// failed (already printed).
bool run_case(Case const& c, nvinfer1::IPluginV3OneRuntime& plugin, cudaStream_t stream, cudaStream_t observer,
              bool gated, std::string const& dir) {
  int const failed_before = harness::checks_failed();
  size_t const x_bytes = c.x.size(), offset_bytes = c.offset.size();
  size_t const out_bytes = static_cast<size_t>(c.out_elements()) * c.element_size();
  size_t const buffer_bytes = kGuard + out_bytes + kGuard;
  DeviceBuffer x(x_bytes), offset(offset_bytes), out(buffer_bytes);
  PinnedBuffer host(buffer_bytes);
  if (!x.ok || !offset.ok || !out.ok || !host.ok) return false;
  if (!CUDA_OK(cudaMemcpy(x.ptr, c.x.data(), x_bytes, cudaMemcpyHostToDevice)) ||
      !CUDA_OK(cudaMemcpy(offset.ptr, c.offset.data(), offset_bytes, cudaMemcpyHostToDevice)) ||
      !CUDA_OK(cudaMemset(out.ptr, kUnwritten, buffer_bytes)) || !CUDA_OK(cudaDeviceSynchronize())) {
    return false;
  }

  PluginTensorDesc const in[2] = {tensor(c.type, c.batch, c.channels, c.height, c.width),
                                  tensor(c.type, c.batch, 2 * int64_t{c.groups} * c.scale * c.scale, c.height,
                                         c.width)};
  PluginTensorDesc const result[1] = {
      tensor(c.type, c.batch, c.channels, c.height * c.scale, c.width * c.scale)};
  CHECK(plugin.onShapeChange(in, 2, result, 1) == 0, c.name + ": onShapeChange accepts the shapes");

  // The stream is held behind a gate while enqueue is called, so the kernel can only have run
  // early if it was launched somewhere other than TensorRT's stream. Blocking launches would wait
  // for the gate: then only the results are checked.
  Gate gate;
  if (gated && !CUDA_OK(cudaLaunchHostFunc(stream, wait_at_gate, &gate))) return false;
  void const* const inputs[2] = {x.ptr, offset.ptr};
  void* const outputs[1] = {out.bytes() + kGuard};
  int32_t const status = plugin.enqueue(in, result, inputs, outputs, nullptr, stream);
  CHECK(status == 0, c.name + ": enqueue succeeds");
  if (gated) {
    // Work launched on either default stream is finished after these; the gated stream's is not
    // (it is non-blocking, so neither waits for it).
    CUDA_OK(cudaStreamSynchronize(cudaStreamLegacy));
    CUDA_OK(cudaStreamSynchronize(cudaStreamPerThread));
    cudaError_t const pending = cudaStreamQuery(stream);
    (void)cudaGetLastError();  // cudaErrorNotReady is an answer, not an error for the next launch to find
    CHECK(pending == cudaErrorNotReady, c.name + ": the stream is still held while enqueue returns");
    if (CUDA_OK(cudaMemcpyAsync(host.ptr, out.ptr, buffer_bytes, cudaMemcpyDeviceToHost, observer)) &&
        CUDA_OK(cudaStreamSynchronize(observer))) {
      CHECK(all_unwritten(host.bytes(), buffer_bytes),
            c.name + ": nothing is written before the stream reaches the kernel (enqueue launches on its stream)");
    }
  }
  gate.open();
  bool const copied = CUDA_OK(cudaMemcpyAsync(host.ptr, out.ptr, buffer_bytes, cudaMemcpyDeviceToHost, stream));
  // Always waited for: the gate and the buffers must outlive what the stream does with them.
  if (!CUDA_OK(cudaStreamSynchronize(stream)) || !copied) return false;
  CHECK(!gate.timed_out.load(), c.name + ": the gate timed out: enqueue waited for the stream's earlier work "
                                         "(blocking launches? CUDA_LAUNCH_BLOCKING, --force-blocking-launches)");
  CHECK(all_unwritten(host.bytes(), kGuard) && all_unwritten(host.bytes() + kGuard + out_bytes, kGuard),
        c.name + ": nothing is written outside the output");

  std::string const path = dir + "/" + c.name + ".out.bin";
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<char const*>(host.bytes() + kGuard), static_cast<std::streamsize>(out_bytes));
  file.close();
  CHECK(static_cast<bool>(file), "write " + path);
  return harness::checks_failed() == failed_before;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CASE_DIR (cases.txt and the inputs it names; see main.cpp)\n", argv[0]);
    return kExitUsage;
  }
  std::string const dir = argv[1];
  std::vector<Case> cases;
  std::string error;
  if (!read_cases(dir, cases, error)) {
    std::fprintf(stderr, "deploykit_trt_enqueue_check: %s\n", error.c_str());
    return kExitUsage;
  }

  int devices = 0;
  cudaError_t const found = cudaGetDeviceCount(&devices);
  if (found != cudaSuccess || devices == 0) {
    int runtime = 0;
    cudaRuntimeGetVersion(&runtime);
    std::fprintf(stderr, "deploykit_trt_enqueue_check: no usable CUDA device (CUDA runtime %d.%d: %s)\n",
                 runtime / 1000, runtime % 1000 / 10,
                 found != cudaSuccess ? cudaGetErrorString(found) : "cudaGetDeviceCount found 0 devices");
    return kExitNoDevice;
  }
  cudaDeviceProp device{};
  if (!CUDA_OK(cudaGetDeviceProperties(&device, 0))) return kExitFailed;

  cudaStream_t stream = nullptr, observer = nullptr;
  if (!CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) ||
      !CUDA_OK(cudaStreamCreateWithFlags(&observer, cudaStreamNonBlocking))) {
    return kExitFailed;
  }
  // CUDA_LAUNCH_BLOCKING=1 makes every launch wait for its stream, so the gate would only time out.
  char const* blocking = std::getenv("CUDA_LAUNCH_BLOCKING");
  bool const gated = blocking == nullptr || std::strcmp(blocking, "1") != 0;
  if (!gated) std::printf("CUDA_LAUNCH_BLOCKING=1: the check that enqueue uses its stream is left out\n");
  int passed_cases = 0;
  {
    // One plugin per (type, scale, groups), as one engine's context: later shapes reuse it.
    std::map<std::tuple<DataType, int32_t, int32_t>, Engine> engines;
    for (Case const& c : cases) {
      auto key = std::make_tuple(c.type, c.scale, c.groups);
      auto at = engines.find(key);
      if (at == engines.end()) at = engines.emplace(key, make_engine(c.type, c.scale, c.groups)).first;
      bool ok = at->second.runtime != nullptr && run_case(c, *at->second.runtime, stream, observer, gated, dir);
      std::printf("%s %s\n", ok ? "ok" : "FAILED", c.describe().c_str());
      passed_cases += ok ? 1 : 0;
    }
  }
  CUDA_OK(cudaStreamDestroy(observer));
  CUDA_OK(cudaStreamDestroy(stream));
  std::printf("%s (sm_%d%d), TensorRT headers %d.%d.%d: %d of %zu cases ran, %d checks passed, %d failed\n",
              device.name, device.major, device.minor, NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH,
              passed_cases, cases.size(), harness::checks_passed(), harness::checks_failed());
  return harness::checks_failed() == 0 && passed_cases == static_cast<int>(cases.size()) ? 0 : kExitFailed;
}
