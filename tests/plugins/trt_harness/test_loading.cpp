// Every route by which TensorRT users load a plugin library, against the registry double:
// the real library's entry points in this process, and the route logic
// (deploykit::trt::CreatorRegistration) with fresh library copies and registries.
#include <cstring>
#include <functional>
#include <memory>
#include <string>

#include "doubles.h"
#include "trt_plugin.h"
#include "trt_registration.h"

using Severity = nvinfer1::ILogger::Severity;

namespace harness {
namespace {

char const kName[] = "DySample";
char const kVersion[] = "1";
char const kNamespace[] = "deploykit";
char const kPath[] = "/plugins/libdeploykit_trt_plugins.so";

// One copy of the plugin library: its creator, its route logic, and what dlopen / TensorRT see.
// `global` is what getPluginRegistry() returns to that copy's initialiser.
struct LibraryCopy {
  explicit LibraryCopy(nvinfer1::IPluginRegistry* global) {
    library.initialiser = [this, global] { registration.register_on_load(global); };
    library.get_creators = [this](int32_t& nb) { return registration.creators_for_load_library(nb); };
    library.set_logger_finder = [this](nvinfer1::ILoggerFinder* finder) { finder_received = finder; };
  }
  // dlopen / LD_PRELOAD / linking / trtexec --staticPlugins: the initialiser runs, nothing else.
  void dlopen() {
    if (!library.loaded) {
      library.loaded = true;
      library.initialiser();
    }
  }
  deploykit::trt::DySamplePluginCreator creator;
  deploykit::trt::CreatorRegistration registration{creator};
  LibraryDouble library;
  nvinfer1::ILoggerFinder* finder_received = nullptr;
};

int registered(RegistryDouble const& registry) { return registry.count(kName, kVersion, kNamespace); }

void this_process_library() {
  RegistryDouble& registry = process_registry();
  CHECK(registered(registry) == 1 && registry.count(kName, kVersion, "") == 0,
        "linked / dlopen'ed / preloaded: the library registered DySample 1 under namespace deploykit when loaded");
  nvinfer1::IPluginCreatorInterface* at_load = registry.getCreator(kName, kVersion, kNamespace);

  LibraryDouble self;
  self.loaded = true;  // this process already has the library
  self.get_creators = [](int32_t& nb) { return getCreators(nb); };
  self.set_logger_finder = [](nvinfer1::ILoggerFinder* finder) { setLoggerFinder(finder); };
  registry.install(kPath, self);
  void* handle = registry.loadLibrary(kPath);
  CHECK(handle != nullptr, "loadLibrary accepts the library after it registered itself when loaded");
  CHECK(registered(registry) == 1 && registry.getCreator(kName, kVersion, kNamespace) == at_load,
        "after loadLibrary the same creator is registered exactly once");
  CHECK(registry.loadLibrary(kPath) == nullptr && registered(registry) == 1,
        "a second loadLibrary of a registered library fails, as the header says, and changes nothing");

  auto* creator = dynamic_cast<nvinfer1::IPluginCreatorV3One*>(registry.getCreator(kName, kVersion, kNamespace));
  if (creator != nullptr) {
    nvinfer1::PluginFieldCollection empty{0, nullptr};
    creator->createPlugin("n", &empty, nvinfer1::TensorRTPhase::kBUILD);
  }
  CHECK(registry.logger.logged("deploykit::DySample: missing required fields scale and groups", Severity::kERROR),
        "after loadLibrary the plugin's errors reach the logger TensorRT's logger finder returns");
  setLoggerFinder(nullptr);

  registry.deregisterLibrary(handle);
  CHECK(registered(registry) == 0, "deregisterLibrary removes the creator");
  void* again = registry.loadLibrary(kPath);
  CHECK(again != nullptr && registered(registry) == 1, "the library can be loaded again after deregisterLibrary");
  registry.deregisterLibrary(again);
}

void dlopen_only() {
  RegistryDouble global;
  LibraryCopy copy(&global);
  copy.dlopen();
  CHECK(registered(global) == 1, "dlopen / LD_PRELOAD / --staticPlugins: the creator is registered by loading alone");
}

void load_library_alone() {
  RegistryDouble global;
  LibraryCopy copy(&global);
  global.install(kPath, copy.library);
  void* handle = global.loadLibrary(kPath);
  CHECK(handle != nullptr, "loadLibrary alone (--dynamicPlugins): accepted although the initialiser registered first");
  CHECK(registered(global) == 1, "loadLibrary alone: registered once");
  CHECK(copy.finder_received != nullptr, "loadLibrary alone: the library received TensorRT's logger finder");
  global.deregisterLibrary(handle);
  CHECK(registered(global) == 0, "loadLibrary alone: deregisterLibrary removes the creator");
}

void dlopen_then_load_library() {
  RegistryDouble global;
  LibraryCopy copy(&global);
  copy.dlopen();
  global.install(kPath, copy.library);
  CHECK(global.loadLibrary(kPath) != nullptr && registered(global) == 1,
        "dlopen, then loadLibrary (deploykit, Python users): accepted, registered once");
}

void the_registry_double_refuses_what_tensorrt_refuses() {
  RegistryDouble global;
  deploykit::trt::DySamplePluginCreator creator;
  nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
  LibraryDouble plain;  // registers when loaded and returns its creator unchanged
  plain.initialiser = [&] { global.registerCreator(creator, creator.getPluginNamespace()); };
  plain.get_creators = [&](int32_t& nb) {
    nb = 1;
    return static_cast<nvinfer1::IPluginCreatorInterface* const*>(creators);
  };
  global.install(kPath, plain);
  CHECK(global.loadLibrary(kPath) == nullptr,
        "the registry double refuses a library whose creator is already registered (the failure of issue #13)");
  CHECK(!global.registerCreator(creator, creator.getPluginNamespace()), "the registry double refuses duplicates");
}

void trtexec_dynamic_plugins() {
  // trtexec --dynamicPlugins: loadLibrary into the builder's registry, then into the runtime's.
  RegistryDouble global, builder, runtime;
  LibraryCopy copy(&global);
  builder.install(kPath, copy.library);
  runtime.install(kPath, copy.library);
  CHECK(builder.loadLibrary(kPath) != nullptr && registered(builder) == 1,
        "--dynamicPlugins: the builder's registry loads the library");
  CHECK(registered(global) == 0, "--dynamicPlugins: the load-time registration went to the loading registry");
  CHECK(runtime.loadLibrary(kPath) != nullptr && registered(runtime) == 1 && registered(builder) == 1,
        "--dynamicPlugins: the runtime's registry loads it too");
}

void second_copy_of_the_library() {
  // A plugin library serialized into an engine is loaded from its own file: a second copy.
  RegistryDouble global, runtime;
  LibraryCopy first(&global), second(&global);
  first.dlopen();
  CapturedMessages messages;
  second.dlopen();
  CHECK(registered(global) == 1 && global.getCreator(kName, kVersion, kNamespace) == &first.creator,
        "a second copy's load-time registration is refused and the first copy's stays");
  CHECK(messages.logger.logged("is already registered in namespace \"deploykit\"", Severity::kWARNING),
        "the refused registration is reported as a warning, got '" + messages.logger.last() + "'");
  runtime.install(kPath, second.library);
  CHECK(runtime.loadLibrary(kPath) != nullptr && global.getCreator(kName, kVersion, kNamespace) == &first.creator,
        "loadLibrary of the second copy never takes back the first copy's creator");
}

void no_registry_when_loaded() {
  RegistryDouble later;
  LibraryCopy copy(nullptr);
  CapturedMessages messages;
  copy.dlopen();
  CHECK(messages.logger.logged("no TensorRT plugin registry", Severity::kWARNING),
        "no registry at load time is reported, not dereferenced");
  later.install(kPath, copy.library);
  CHECK(later.loadLibrary(kPath) != nullptr && registered(later) == 1, "the library still loads with loadLibrary");
}

void creator_removed_by_the_application() {
  RegistryDouble global;
  LibraryCopy copy(&global);
  copy.dlopen();
  global.deregisterCreator(copy.creator);
  CapturedMessages messages;
  global.install(kPath, copy.library);
  CHECK(global.loadLibrary(kPath) != nullptr && registered(global) == 1 && messages.logger.messages.empty(),
        "a creator the application deregistered itself is loaded again without complaint");
}

void messages_without_a_logger_finder_go_to_stderr() {
  RegistryDouble global;
  LibraryCopy copy(nullptr);
  CapturedStderr captured;
  copy.dlopen();  // reports a warning; no logger finder is set
  CHECK(captured.text().find("deploykit::DySample: no TensorRT plugin registry") != std::string::npos,
        "without a logger finder the message goes to stderr");
}

}  // namespace

void test_loading() {
  this_process_library();  // first: it checks what happened when this process started
  dlopen_only();
  load_library_alone();
  dlopen_then_load_library();
  the_registry_double_refuses_what_tensorrt_refuses();
  trtexec_dynamic_plugins();
  second_copy_of_the_library();
  no_registry_when_loaded();
  creator_removed_by_the_application();
  messages_without_a_logger_finder_go_to_stderr();
}

}  // namespace harness
