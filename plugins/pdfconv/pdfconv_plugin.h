// TensorRT plugin for the saphnet::PDFConv ONNX node: IPluginV3 with the OneCore /
// OneBuild / OneRuntime capabilities, and its IPluginCreatorV3One.
//
// Name "PDFConv", version "1", namespace "saphnet". Inputs X, offset, mask, W, B; one
// output Y. Fields: the ONNX node's attributes kernel_shape, pads (top, left, bottom, right),
// strides, dilations, plugin_namespace, plugin_version. See README.md.
#pragma once

#include "NvInferRuntime.h"
#include "pdfconv_api.h"
#include "pdfconv_internal.h"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace saphnet
{
namespace pdfconv
{

constexpr char const* kPluginName = "PDFConv";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "saphnet";

//! The node's geometry; kernel {0, 0} means "take it from W's shape".
struct PluginAttributes
{
    std::array<int32_t, 2> kernel{0, 0};
    std::array<int32_t, 4> pads{0, 0, 0, 0}; //!< top, left, bottom, right (ONNX order)
    std::array<int32_t, 2> strides{1, 1};
    std::array<int32_t, 2> dilations{1, 1};
};

class PDFConvPlugin final : public nvinfer1::IPluginV3,
                            public nvinfer1::IPluginV3OneCore,
                            public nvinfer1::IPluginV3OneBuild,
                            public nvinfer1::IPluginV3OneRuntime
{
public:
    explicit PDFConvPlugin(PluginAttributes const& attributes);
    PDFConvPlugin(PDFConvPlugin const& other);
    PDFConvPlugin& operator=(PDFConvPlugin const&) = delete;
    ~PDFConvPlugin() override = default;

    // IPluginV3: capabilities and copies.
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore: identity.
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild: what the builder asks while it builds the engine.
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getTimingCacheID() noexcept override;

    // IPluginV3OneRuntime: what the execution context calls.
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    PluginAttributes mAttributes;
    std::string mTimingCacheID; //!< name, version, namespace, library version and creation fields
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
    PackedWeights mPackedWeights; //!< W repacked for the fused kernel, once per W (enqueue)
};

class PDFConvPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    PDFConvPluginCreator();
    ~PDFConvPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace pdfconv
} // namespace saphnet

extern "C" {
//! Entry point of IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, Python
//! trt.get_plugin_registry().load_library): the creators this library holds.
PDFCONV_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
//! Called by TensorRT when it loads the library: where to find its logger.
PDFCONV_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
//! For a library loaded with dlopen / ctypes.CDLL beside an already loaded libnvinfer:
//! register the creator with that libnvinfer's plugin registry. Returns 1 when the creator
//! is registered (now or before), 0 when libnvinfer is not loaded or registration failed.
PDFCONV_API int32_t pdfconv_register_tensorrt(void);
}
