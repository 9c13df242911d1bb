// The builder's side of the plugin: capabilities, output types and shapes,
// supportsFormatCombination over TensorRT's whole type x format protocol, configurePlugin,
// workspace, clone / attachToContext and their lifetimes.
#include <cstring>
#include <memory>
#include <string>

#include "doubles.h"
#include "trt_plugin.h"

using nvinfer1::DataType;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginFieldCollection;
using nvinfer1::TensorFormat;

namespace harness {
namespace {

using Plugin = deploykit::trt::DySamplePlugin;

std::string type_name(DataType t) { return "DataType " + std::to_string(static_cast<int>(t)); }
std::string format_name(TensorFormat f) { return "TensorFormat " + std::to_string(static_cast<int>(f)); }

DynamicPluginTensorDesc desc(DataType type, TensorFormat format, nvinfer1::Dims dims = nvinfer1::Dims{}) {
  DynamicPluginTensorDesc d{};
  d.desc.type = type;
  d.desc.format = format;
  d.desc.dims = dims;
  d.min = dims;
  d.max = dims;
  return d;
}

nvinfer1::Dims dims4(int64_t a, int64_t b, int64_t c, int64_t d) {
  nvinfer1::Dims dims{};
  dims.nbDims = 4;
  dims.d[0] = a;
  dims.d[1] = b;
  dims.d[2] = c;
  dims.d[3] = d;
  return dims;
}

void capabilities() {
  Plugin plugin(2, 4);
  auto* core = plugin.getCapabilityInterface(nvinfer1::PluginCapabilityType::kCORE);
  auto* build = plugin.getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD);
  auto* runtime = plugin.getCapabilityInterface(nvinfer1::PluginCapabilityType::kRUNTIME);
  CHECK(core != nullptr && build != nullptr && runtime != nullptr, "core, build and runtime capabilities exist");
  CHECK(dynamic_cast<nvinfer1::IPluginV3OneCore*>(core) != nullptr, "kCORE is an IPluginV3OneCore");
  CHECK(dynamic_cast<nvinfer1::IPluginV3OneBuild*>(build) != nullptr, "kBUILD is an IPluginV3OneBuild");
  CHECK(dynamic_cast<nvinfer1::IPluginV3OneRuntime*>(runtime) != nullptr, "kRUNTIME is an IPluginV3OneRuntime");
  CHECK(std::strcmp(plugin.getPluginName(), "DySample") == 0 && std::strcmp(plugin.getPluginVersion(), "1") == 0 &&
            std::strcmp(plugin.getPluginNamespace(), "deploykit") == 0,
        "the plugin names itself DySample 1 in namespace deploykit");
  CHECK(plugin.getNbOutputs() == 1, "one output");
}

void output_data_types() {
  Plugin plugin(2, 1);
  for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
    DataType in[2] = {t, t};
    DataType out[1] = {DataType::kINT8};
    CHECK(plugin.getOutputDataTypes(out, 1, in, 2) == 0 && out[0] == t, "the output takes the inputs' " + type_name(t));
  }
  for (int i = 0; i < nvinfer1::EnumMax<DataType>(); ++i) {
    auto const t = static_cast<DataType>(i);
    if (t == DataType::kFLOAT || t == DataType::kHALF) continue;
    CapturedMessages messages;
    DataType in[2] = {t, t};
    DataType out[1] = {DataType::kFLOAT};
    CHECK(plugin.getOutputDataTypes(out, 1, in, 2) != 0 && messages.logger.logged("must both be float32 or both be float16"),
          "getOutputDataTypes rejects " + type_name(t));
  }
  CapturedMessages messages;
  DataType mixed[2] = {DataType::kFLOAT, DataType::kHALF};
  DataType out[1] = {DataType::kFLOAT};
  CHECK(plugin.getOutputDataTypes(out, 1, mixed, 2) != 0, "getOutputDataTypes rejects float32 x with float16 offset");
  CHECK(plugin.getOutputDataTypes(out, 1, mixed, 1) != 0 && messages.logger.logged("expects 2 inputs"),
        "getOutputDataTypes rejects one input");
}

DimsExprs exprs4(nvinfer1::IDimensionExpr const* a, nvinfer1::IDimensionExpr const* b, nvinfer1::IDimensionExpr const* c,
                 nvinfer1::IDimensionExpr const* d) {
  DimsExprs e{};
  e.nbDims = 4;
  e.d[0] = a;
  e.d[1] = b;
  e.d[2] = c;
  e.d[3] = d;
  return e;
}

std::string text(nvinfer1::IDimensionExpr const* e) {
  return e == nullptr ? "<null>" : static_cast<ExprDouble const*>(e)->text();
}

void output_shapes() {
  Plugin plugin(3, 2);
  {
    ExprBuilderDouble builder;
    auto const *b = builder.symbol("B"), *c = builder.symbol("C"), *h = builder.symbol("H"), *w = builder.symbol("W");
    DimsExprs inputs[2] = {exprs4(b, c, h, w), exprs4(b, builder.number(36), h, w)};
    DimsExprs out[1] = {};
    int32_t const status = plugin.getOutputShapes(inputs, 2, nullptr, 0, out, 1, builder);
    CHECK(status == 0, "getOutputShapes succeeds with symbolic dims");
    CHECK(out[0].nbDims == 4 && out[0].d[0] == b && out[0].d[1] == c, "symbolic: batch and channels pass through");
    CHECK(text(out[0].d[2]) == "H*3" && text(out[0].d[3]) == "W*3",
          "symbolic: (B, C, H*3, W*3), got (" + text(out[0].d[2]) + ", " + text(out[0].d[3]) + ")");
  }
  {
    ExprBuilderDouble builder;
    DimsExprs inputs[2] = {exprs4(builder.number(2), builder.number(8), builder.number(5), builder.number(7)),
                           exprs4(builder.number(2), builder.number(36), builder.number(5), builder.number(7))};
    DimsExprs out[1] = {};
    CHECK(plugin.getOutputShapes(inputs, 2, nullptr, 0, out, 1, builder) == 0, "getOutputShapes succeeds with constants");
    bool const constant = out[0].nbDims == 4 && out[0].d[2] && out[0].d[3] && out[0].d[2]->isConstant() &&
                          out[0].d[3]->isConstant();
    CHECK(constant && out[0].d[0]->getConstantValue() == 2 && out[0].d[1]->getConstantValue() == 8 &&
              out[0].d[2]->getConstantValue() == 15 && out[0].d[3]->getConstantValue() == 21,
          "constant: (2, 8, 5, 7) gives (2, 8, 15, 21)");
  }
  {
    ExprBuilderDouble builder;
    builder.fail_constants = true;
    auto const* s = builder.symbol("S");
    DimsExprs inputs[2] = {exprs4(s, s, s, s), exprs4(s, s, s, s)};
    DimsExprs out[1] = {};
    CapturedMessages messages;
    CHECK(plugin.getOutputShapes(inputs, 2, nullptr, 0, out, 1, builder) != 0 && builder.operations == 0 &&
              messages.logger.logged("could not build the output shape expressions"),
          "a null constant() is reported, never dereferenced");
  }
  {
    ExprBuilderDouble builder;
    builder.fail_operations = true;
    auto const* s = builder.symbol("S");
    DimsExprs inputs[2] = {exprs4(s, s, s, s), exprs4(s, s, s, s)};
    DimsExprs out[1] = {};
    CapturedMessages messages;
    CHECK(plugin.getOutputShapes(inputs, 2, nullptr, 0, out, 1, builder) != 0 &&
              messages.logger.logged("could not build the output shape expressions"),
          "a null operation() is reported");
  }
  {
    ExprBuilderDouble builder;
    auto const* s = builder.symbol("S");
    DimsExprs three = exprs4(s, s, s, s);
    three.nbDims = 3;
    DimsExprs inputs[2] = {three, exprs4(s, s, s, s)};
    DimsExprs out[1] = {};
    CapturedMessages messages;
    CHECK(plugin.getOutputShapes(inputs, 2, nullptr, 0, out, 1, builder) != 0 &&
              messages.logger.logged("x and offset must be 4-D"),
          "a 3-D x is rejected by getOutputShapes");
    CHECK(plugin.getOutputShapes(inputs, 1, nullptr, 0, out, 1, builder) != 0, "one input is rejected by getOutputShapes");
  }
}

void format_combinations() {
  Plugin plugin(2, 1);
  int const nb_types = nvinfer1::EnumMax<DataType>();
  int const nb_formats = nvinfer1::EnumMax<TensorFormat>();
  // x (pos 0) alone: float32 / float16, linear.
  for (int t = 0; t < nb_types; ++t) {
    for (int f = 0; f < nb_formats; ++f) {
      auto const type = static_cast<DataType>(t);
      auto const format = static_cast<TensorFormat>(f);
      DynamicPluginTensorDesc io[3] = {desc(type, format), desc(type, format), desc(type, format)};
      bool const expected = format == TensorFormat::kLINEAR && (type == DataType::kFLOAT || type == DataType::kHALF);
      CHECK(plugin.supportsFormatCombination(0, io, 2, 1) == expected,
            "pos 0 (x) " + type_name(type) + " " + format_name(format) + (expected ? " accepted" : " refused"));
    }
  }
  // offset (pos 1) and output (pos 2), given x: only x's type, linear. TensorRT only asks for
  // pos after accepting every earlier position, so x is always an accepted one here.
  for (DataType x_type : {DataType::kFLOAT, DataType::kHALF}) {
    for (int pos = 1; pos <= 2; ++pos) {
      for (int t = 0; t < nb_types; ++t) {
        for (int f = 0; f < nb_formats; ++f) {
          auto const type = static_cast<DataType>(t);
          auto const format = static_cast<TensorFormat>(f);
          DynamicPluginTensorDesc io[3] = {desc(x_type, TensorFormat::kLINEAR), desc(x_type, TensorFormat::kLINEAR),
                                           desc(x_type, TensorFormat::kLINEAR)};
          io[pos] = desc(type, format);
          bool const expected = format == TensorFormat::kLINEAR && type == x_type;
          CHECK(plugin.supportsFormatCombination(pos, io, 2, 1) == expected,
                "pos " + std::to_string(pos) + " with x " + type_name(x_type) + ": " + type_name(type) + " " +
                    format_name(format) + (expected ? " accepted" : " refused"));
        }
      }
    }
  }
  DynamicPluginTensorDesc io[3] = {desc(DataType::kFLOAT, TensorFormat::kLINEAR),
                                   desc(DataType::kFLOAT, TensorFormat::kLINEAR),
                                   desc(DataType::kFLOAT, TensorFormat::kLINEAR)};
  CHECK(!plugin.supportsFormatCombination(3, io, 2, 1) && !plugin.supportsFormatCombination(-1, io, 2, 1),
        "positions outside 0..2 are refused");
  CHECK(!plugin.supportsFormatCombination(0, io, 1, 1) && !plugin.supportsFormatCombination(0, nullptr, 2, 1),
        "wrong tensor counts or no descriptors are refused");
}

void configure_and_workspace() {
  Plugin plugin(2, 2);
  DynamicPluginTensorDesc in[2] = {desc(DataType::kFLOAT, TensorFormat::kLINEAR, dims4(-1, 8, -1, -1)),
                                   desc(DataType::kFLOAT, TensorFormat::kLINEAR, dims4(-1, 16, -1, -1))};
  DynamicPluginTensorDesc out[1] = {desc(DataType::kFLOAT, TensorFormat::kLINEAR, dims4(-1, 8, -1, -1))};
  CHECK(plugin.configurePlugin(in, 2, out, 1) == 0, "configurePlugin accepts dynamic dims that fit");
  CHECK(plugin.getWorkspaceSize(in, 2, out, 1) == 0, "no workspace");
  {
    CapturedMessages messages;
    in[1].desc.dims = dims4(-1, 12, -1, -1);
    CHECK(plugin.configurePlugin(in, 2, out, 1) != 0 &&
              messages.logger.logged("offset must have 2 * groups * scale^2 channels: x (-1, 8, -1, -1), offset (-1, 12, -1, -1)"),
          "configurePlugin names a known offset channel count that does not fit");
  }
  {
    CapturedMessages messages;
    in[1].desc.dims = dims4(-1, 16, 5, -1);
    in[0].desc.dims = dims4(-1, 8, 6, -1);
    CHECK(plugin.configurePlugin(in, 2, out, 1) != 0 && messages.logger.logged("same height and width"),
          "configurePlugin rejects known heights that differ");
  }
  {
    CapturedMessages messages;
    in[0].desc.dims = dims4(-1, 8, -1, -1);
    in[1].desc.dims = dims4(-1, 16, -1, -1);
    in[1].desc.type = DataType::kHALF;
    CHECK(plugin.configurePlugin(in, 2, out, 1) != 0 && messages.logger.logged("must all be float32 or all float16"),
          "configurePlugin rejects mixed types, got '" + messages.logger.last() + "'");
  }
}

int32_t field(PluginFieldCollection const* fc, char const* name) {
  for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
    if (std::strcmp(fc->fields[i].name, name) == 0) return *static_cast<int32_t const*>(fc->fields[i].data);
  }
  return -1;
}

void clone_attach_and_lifetimes() {
  auto original = std::make_unique<Plugin>(3, 5);
  PluginFieldCollection const* original_fields = original->getFieldsToSerialize();
  std::unique_ptr<nvinfer1::IPluginV3> copy(original->clone());
  CHECK(copy != nullptr, "clone returns a plugin");
  if (!copy) return;
  auto* cloned = static_cast<Plugin*>(copy.get());
  PluginFieldCollection const* cloned_fields = cloned->getFieldsToSerialize();
  CHECK(cloned_fields != original_fields && cloned_fields->fields[0].data != original_fields->fields[0].data,
        "a clone serializes from its own members");
  original.reset();  // under ASan, a clone reading the original's memory fails here
  cloned_fields = cloned->getFieldsToSerialize();
  CHECK(field(cloned_fields, "scale") == 3 && field(cloned_fields, "groups") == 5,
        "a clone outlives the original with scale 3, groups 5");
  std::unique_ptr<nvinfer1::IPluginV3> attached(cloned->attachToContext(nullptr));
  CHECK(attached != nullptr && attached.get() != copy.get(), "attachToContext returns a new plugin");
  copy.reset();
  if (attached) {
    PluginFieldCollection const* fields = static_cast<Plugin*>(attached.get())->getFieldsToSerialize();
    CHECK(field(fields, "scale") == 3 && field(fields, "groups") == 5, "the attached plugin keeps scale and groups");
  }
}

}  // namespace

void test_build() {
  capabilities();
  output_data_types();
  output_shapes();
  format_combinations();
  configure_and_workspace();
  clone_attach_and_lifetimes();
}

}  // namespace harness
