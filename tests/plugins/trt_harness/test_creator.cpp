// DySamplePluginCreator: the fields the ONNX parser and the engine deserializer pass, and every
// bad field rejected with the plugin's message.
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "doubles.h"
#include "trt_plugin.h"

using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorRTPhase;

namespace harness {
namespace {

using Creator = deploykit::trt::DySamplePluginCreator;
using Plugin = deploykit::trt::DySamplePlugin;

std::unique_ptr<nvinfer1::IPluginV3> create(Creator& creator, std::vector<PluginField> const& fields,
                                            TensorRTPhase phase = TensorRTPhase::kBUILD) {
  PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
  return std::unique_ptr<nvinfer1::IPluginV3>(creator.createPlugin("dysample_node", &fc, phase));
}

// scale and groups as the plugin serializes them.
bool serialized_as(nvinfer1::IPluginV3& plugin, int32_t scale, int32_t groups) {
  auto* core = static_cast<Plugin*>(&plugin);
  PluginFieldCollection const* fc = core->getFieldsToSerialize();
  if (fc == nullptr || fc->nbFields != 2) return false;
  bool scale_ok = false, groups_ok = false;
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    PluginField const& f = fc->fields[i];
    if (f.type != PluginFieldType::kINT32 || f.length != 1 || f.data == nullptr) return false;
    int32_t const value = *static_cast<int32_t const*>(f.data);
    if (std::strcmp(f.name, "scale") == 0) scale_ok = value == scale;
    if (std::strcmp(f.name, "groups") == 0) groups_ok = value == groups;
  }
  return scale_ok && groups_ok;
}

void creator_identity() {
  Creator creator;
  CHECK(std::strcmp(creator.getPluginName(), "DySample") == 0, "creator name is DySample");
  CHECK(std::strcmp(creator.getPluginVersion(), "1") == 0, "creator version is 1");
  CHECK(std::strcmp(creator.getPluginNamespace(), "deploykit") == 0, "creator namespace is deploykit");
  PluginFieldCollection const* names = creator.getFieldNames();
  CHECK(names != nullptr && names->nbFields == 2 && std::strcmp(names->fields[0].name, "scale") == 0 &&
            std::strcmp(names->fields[1].name, "groups") == 0 && names->fields[0].type == PluginFieldType::kINT32,
        "getFieldNames lists scale and groups as kINT32");
  CHECK(!std::is_copy_constructible<Creator>::value && !std::is_copy_assignable<Creator>::value,
        "the creator cannot be copied (its field collection points into itself)");
}

void build_phase_from_onnx_parser_fields() {
  Creator creator;
  CapturedMessages messages;
  int32_t scale = 2, groups = 4;
  // The ONNX parser passes every node attribute, INT ones narrowed to kINT32, strings as kCHAR.
  char const version[] = "1";
  char const pluginNamespace[] = "deploykit";
  auto plugin = create(creator, {PluginField("scale", &scale, PluginFieldType::kINT32, 1),
                                 PluginField("groups", &groups, PluginFieldType::kINT32, 1),
                                 PluginField("plugin_version", version, PluginFieldType::kCHAR, 1),
                                 PluginField("plugin_namespace", pluginNamespace, PluginFieldType::kCHAR, 9)});
  CHECK(plugin != nullptr, "build phase: createPlugin accepts the ONNX parser's fields");
  CHECK(plugin && serialized_as(*plugin, 2, 4), "build phase: the plugin keeps scale 2 and groups 4");
  CHECK(messages.logger.messages.empty(), "build phase: nothing is reported for good fields");

  int64_t wide_scale = 3, wide_groups = 1;
  auto wide = create(creator, {PluginField("groups", &wide_groups, PluginFieldType::kINT64, 1),
                               PluginField("scale", &wide_scale, PluginFieldType::kINT64, 1)});
  CHECK(wide && serialized_as(*wide, 3, 1), "kINT64 fields in any order are read");
  int8_t small_scale = 2;
  int16_t small_groups = 2;
  auto small = create(creator, {PluginField("scale", &small_scale, PluginFieldType::kINT8, 1),
                                PluginField("groups", &small_groups, PluginFieldType::kINT16, 1)});
  CHECK(small && serialized_as(*small, 2, 2), "kINT8 / kINT16 fields are read");
}

void runtime_phase_from_serialized_fields() {
  Creator creator;
  int32_t scale = 4, groups = 8;
  auto built = create(creator, {PluginField("scale", &scale, PluginFieldType::kINT32, 1),
                                PluginField("groups", &groups, PluginFieldType::kINT32, 1)});
  CHECK(built != nullptr, "plugin to serialize is created");
  if (!built) return;
  PluginFieldCollection const* serialized = static_cast<Plugin*>(built.get())->getFieldsToSerialize();
  std::unique_ptr<nvinfer1::IPluginV3> restored(creator.createPlugin("dysample_node", serialized, TensorRTPhase::kRUNTIME));
  CHECK(restored != nullptr, "runtime phase: createPlugin accepts what getFieldsToSerialize wrote");
  built.reset();  // the restored plugin must not depend on the one it was serialized from
  CHECK(restored && serialized_as(*restored, 4, 8), "runtime phase: scale and groups survive the round trip");
}

struct BadFields {
  char const* what;
  std::vector<PluginField> fields;
  char const* message;
};

void bad_fields_are_rejected_with_the_plugins_message() {
  Creator creator;
  int32_t two = 2, zero = 0, negative = -3, pair[2] = {2, 2};
  int64_t too_big = int64_t{std::numeric_limits<int32_t>::max()} + 1;
  int32_t big_groups = std::numeric_limits<int32_t>::max() / 4;
  float real = 2.0f;
  std::vector<BadFields> cases = {
      {"no fields", {}, "missing required fields scale and groups"},
      {"groups missing", {PluginField("scale", &two, PluginFieldType::kINT32, 1)}, "missing required field groups"},
      {"scale missing", {PluginField("groups", &two, PluginFieldType::kINT32, 1)}, "missing required field scale"},
      {"float scale",
       {PluginField("scale", &real, PluginFieldType::kFLOAT32, 1), PluginField("groups", &two, PluginFieldType::kINT32, 1)},
       "field scale must be a single integer"},
      {"two-element groups",
       {PluginField("scale", &two, PluginFieldType::kINT32, 1), PluginField("groups", pair, PluginFieldType::kINT32, 2)},
       "field groups must be a single integer"},
      {"scale without data",
       {PluginField("scale", nullptr, PluginFieldType::kINT32, 1), PluginField("groups", &two, PluginFieldType::kINT32, 1)},
       "field scale must be a single integer"},
      {"zero scale",
       {PluginField("scale", &zero, PluginFieldType::kINT32, 1), PluginField("groups", &two, PluginFieldType::kINT32, 1)},
       "scale and groups must be positive 32-bit integers (got scale 0, groups 2)"},
      {"negative groups",
       {PluginField("scale", &two, PluginFieldType::kINT32, 1), PluginField("groups", &negative, PluginFieldType::kINT32, 1)},
       "scale and groups must be positive 32-bit integers (got scale 2, groups -3)"},
      {"scale beyond int32",
       {PluginField("scale", &too_big, PluginFieldType::kINT64, 1), PluginField("groups", &two, PluginFieldType::kINT32, 1)},
       "scale and groups must be positive 32-bit integers (got scale 2147483648, groups 2)"},
      {"offset channels beyond int32",
       {PluginField("scale", &two, PluginFieldType::kINT32, 1), PluginField("groups", &big_groups, PluginFieldType::kINT32, 1)},
       "2 * groups * scale^2 offset channels do not fit in a 32-bit integer"},
  };
  for (BadFields const& c : cases) {
    CapturedMessages messages;
    auto plugin = create(creator, c.fields);
    CHECK(plugin == nullptr, std::string("rejected: ") + c.what);
    CHECK(messages.logger.logged(std::string("deploykit::DySample: ") + c.message, nvinfer1::ILogger::Severity::kERROR),
          std::string("reported as an error: ") + c.what + " -> '" + c.message + "', got '" + messages.logger.last() + "'");
  }
  {
    CapturedMessages messages;
    CHECK(creator.createPlugin("n", nullptr, TensorRTPhase::kBUILD) == nullptr &&
              messages.logger.logged("createPlugin needs the fields scale and groups"),
          "a null field collection is rejected with a message");
  }
  {
    CapturedMessages messages;
    PluginFieldCollection dangling{2, nullptr};
    CHECK(creator.createPlugin("n", &dangling, TensorRTPhase::kBUILD) == nullptr &&
              messages.logger.logged("createPlugin needs the fields scale and groups"),
          "a collection with fields == nullptr is rejected with a message");
  }
}

}  // namespace

void test_creator() {
  creator_identity();
  build_phase_from_onnx_parser_fields();
  runtime_phase_from_serialized_fields();
  bad_fields_are_rejected_with_the_plugins_message();
}

}  // namespace harness
