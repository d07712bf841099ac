// TensorRT IPluginV3 plugin and creator for saphnet::PDFConv. Every method is noexcept:
// failures are logged through TensorRT's logger (and kept for pdfconv_last_error()) and
// reported as a status, a nullptr or false, never thrown.
#include "pdfconv_plugin.h"
#include "pdfconv_internal.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>

using namespace nvinfer1;

namespace saphnet
{
namespace pdfconv
{
namespace
{

constexpr int32_t kNbInputs = 5; // X, offset, mask, W, B
constexpr int32_t kNbOutputs = 1;
enum InputIndex : int32_t
{
    kX = 0,
    kOffset = 1,
    kMask = 2,
    kWeight = 3,
    kBias = 4
};

// ---------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------

std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder = nullptr;

std::string nvinferLibrary()
{
    return "libnvinfer.so." + std::to_string(NV_TENSORRT_MAJOR);
}

//! A symbol of the libnvinfer already in this process, or nullptr (never loads one).
void* nvinferSymbol(char const* name)
{
    void* const handle = dlopen(nvinferLibrary().c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (handle == nullptr)
    {
        return nullptr;
    }
    void* const symbol = dlsym(handle, name);
    dlclose(handle); // drops the reference RTLD_NOLOAD took; the library stays loaded
    return symbol;
}

//! The logger TensorRT gave us (setLoggerFinder), else libnvinfer's global logger.
ILogger* findLogger()
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    if (gLoggerFinder != nullptr)
    {
        if (ILogger* const logger = gLoggerFinder->findLogger())
        {
            return logger;
        }
    }
    using GetLogger = ILogger* (*) ();
    auto const getLogger = reinterpret_cast<GetLogger>(nvinferSymbol("getLogger"));
    return getLogger != nullptr ? getLogger() : nullptr;
}

void logMessage(ILogger::Severity severity, std::string const& text) noexcept
{
    try
    {
        std::string const message = std::string("saphnet::PDFConv: ") + text;
        if (severity <= ILogger::Severity::kERROR)
        {
            setLastError(message);
        }
        if (ILogger* const logger = findLogger())
        {
            logger->log(severity, message.c_str());
        }
        else if (severity <= ILogger::Severity::kWARNING)
        {
            std::fprintf(stderr, "%s\n", message.c_str());
        }
    }
    catch (...)
    {
        // Nothing can be reported if building the message fails (out of memory).
    }
}

void logError(std::string const& text) noexcept
{
    logMessage(ILogger::Severity::kERROR, text);
}

//! Runs body; an exception becomes a logged error and `failure`.
template <typename R, typename F>
R guarded(char const* method, R failure, F&& body) noexcept
{
    try
    {
        return body();
    }
    catch (std::exception const& e)
    {
        logError(std::string(method) + ": " + e.what());
    }
    catch (...)
    {
        logError(std::string(method) + ": unknown exception");
    }
    return failure;
}

// ---------------------------------------------------------------------------------------
// Types and shapes
// ---------------------------------------------------------------------------------------

bool isFloat(DataType type)
{
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

int32_t apiType(DataType type)
{
    return type == DataType::kHALF ? PDFCONV_FLOAT16 : PDFCONV_FLOAT32;
}

std::string dimsText(Dims const& dims)
{
    std::string text = "(";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        text += (i ? ", " : "") + std::to_string(dims.d[i]);
    }
    return text + ")";
}

//! Whether every dimension fits the C API's int32 sizes (a profile may reach past them).
bool fitsInt32(Dims const& dims, std::string& message)
{
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        if (dims.d[i] > std::numeric_limits<int32_t>::max())
        {
            message = "has a dimension above 2^31 - 1";
            return false;
        }
    }
    return true;
}

//! C API params for concrete input descriptors.
PdfConvParams paramsOf(PluginAttributes const& a, PluginTensorDesc const* in)
{
    PdfConvParams p{};
    Dims const& x = in[kX].dims;
    Dims const& w = in[kWeight].dims;
    p.batch = static_cast<int32_t>(x.d[0]);
    p.in_channels = static_cast<int32_t>(x.d[1]);
    p.in_height = static_cast<int32_t>(x.d[2]);
    p.in_width = static_cast<int32_t>(x.d[3]);
    p.out_channels = static_cast<int32_t>(w.d[0]);
    p.kernel_h = static_cast<int32_t>(w.d[2]);
    p.kernel_w = static_cast<int32_t>(w.d[3]);
    p.stride_h = a.strides[0];
    p.stride_w = a.strides[1];
    p.pad_top = a.pads[0];
    p.pad_left = a.pads[1];
    p.pad_bottom = a.pads[2];
    p.pad_right = a.pads[3];
    p.dilation_h = a.dilations[0];
    p.dilation_w = a.dilations[1];
    p.dtype = apiType(in[kX].type);
    p.offset_dtype = apiType(in[kOffset].type);
    p.mask_dtype = apiType(in[kMask].type);
    p.layout = in[kX].format == TensorFormat::kHWC8 ? PDFCONV_LAYOUT_NHWC8 : PDFCONV_LAYOUT_NCHW;
    return p;
}

//! Checks concrete shapes against each other; the message names both sizes.
bool checkShapes(PluginAttributes const& a, PluginTensorDesc const* in, PluginTensorDesc const* out,
    PdfConvParams& params, std::string& message)
{
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        int32_t const rank = i == kBias ? 1 : 4;
        if (in[i].dims.nbDims != rank)
        {
            message = "input " + std::to_string(i) + " must have rank " + std::to_string(rank) + ", got "
                + dimsText(in[i].dims);
            return false;
        }
    }
    params = paramsOf(a, in);
    int32_t outHeight = 0;
    int32_t outWidth = 0;
    if (checkParams(params, outHeight, outWidth, message) != PDFCONV_SUCCESS)
    {
        return false;
    }
    Dims const& x = in[kX].dims;
    Dims const& w = in[kWeight].dims;
    int64_t const taps = w.d[2] * w.d[3];
    if (w.d[1] != x.d[1])
    {
        message = "W " + dimsText(w) + " has " + std::to_string(w.d[1]) + " input channels but X " + dimsText(x)
            + " has " + std::to_string(x.d[1]);
        return false;
    }
    if (a.kernel[0] != 0 && (a.kernel[0] != w.d[2] || a.kernel[1] != w.d[3]))
    {
        message = "kernel_shape (" + std::to_string(a.kernel[0]) + ", " + std::to_string(a.kernel[1])
            + ") disagrees with W " + dimsText(w);
        return false;
    }
    struct Expected
    {
        char const* name;
        Dims const& dims;
        int64_t channels;
    };
    Expected const expected[] = {{"offset", in[kOffset].dims, 2 * taps}, {"mask", in[kMask].dims, taps},
        {"Y", out[0].dims, w.d[0]}};
    for (Expected const& e : expected)
    {
        if (e.dims.nbDims != 4 || e.dims.d[0] != x.d[0] || e.dims.d[1] != e.channels || e.dims.d[2] != outHeight
            || e.dims.d[3] != outWidth)
        {
            message = std::string(e.name) + " has shape " + dimsText(e.dims) + " but X " + dimsText(x) + " and W "
                + dimsText(w) + " need (" + std::to_string(x.d[0]) + ", " + std::to_string(e.channels) + ", "
                + std::to_string(outHeight) + ", " + std::to_string(outWidth) + ")";
            return false;
        }
    }
    if (in[kBias].dims.d[0] != w.d[0])
    {
        message = "B " + dimsText(in[kBias].dims) + " must have one value per output channel of W " + dimsText(w);
        return false;
    }
    return true;
}

// ---------------------------------------------------------------------------------------
// Plugin fields
// ---------------------------------------------------------------------------------------

//! Integer field values (TensorRT passes ONNX ints as kINT32; kINT64 is accepted too).
bool readInts(PluginField const& field, std::vector<int64_t>& values, std::string& message)
{
    values.clear();
    if (field.data == nullptr && field.length > 0)
    {
        message = std::string("field ") + field.name + " has no data";
        return false;
    }
    for (int32_t i = 0; i < field.length; ++i)
    {
        if (field.type == PluginFieldType::kINT32)
        {
            values.push_back(static_cast<int32_t const*>(field.data)[i]);
        }
        else if (field.type == PluginFieldType::kINT64)
        {
            values.push_back(static_cast<int64_t const*>(field.data)[i]);
        }
        else
        {
            message = std::string("field ") + field.name + " must be INT32 or INT64";
            return false;
        }
    }
    return true;
}

std::string readString(PluginField const& field)
{
    if (field.data == nullptr || field.length <= 0)
    {
        return {};
    }
    auto const* const text = static_cast<char const*>(field.data);
    return std::string(text, strnlen(text, static_cast<size_t>(field.length)));
}

//! Copies `values` into `target` (a pair may be given as one value for both axes).
bool assignInts(char const* name, std::vector<int64_t> const& values, int32_t* target, size_t count, int64_t minimum,
    std::string& message)
{
    std::vector<int64_t> expanded = values;
    if (count == 2 && values.size() == 1)
    {
        expanded = {values[0], values[0]};
    }
    if (count == 4 && values.size() == 2) // (h, w) padding: the same at both ends
    {
        expanded = {values[0], values[1], values[0], values[1]};
    }
    if (expanded.size() != count)
    {
        message = std::string(name) + " needs " + std::to_string(count) + " values, got " + std::to_string(values.size());
        return false;
    }
    for (size_t i = 0; i < count; ++i)
    {
        if (expanded[i] < minimum || expanded[i] > (int64_t{1} << 30))
        {
            message = std::string(name) + " values must be >= " + std::to_string(minimum) + ", got "
                + std::to_string(expanded[i]);
            return false;
        }
        target[i] = static_cast<int32_t>(expanded[i]);
    }
    return true;
}

bool parseFields(PluginFieldCollection const* fc, PluginAttributes& a, std::string& message)
{
    if (fc == nullptr)
    {
        return true;
    }
    if (fc->nbFields > 0 && fc->fields == nullptr)
    {
        message = "the field collection has no fields array";
        return false;
    }
    std::vector<int64_t> values;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name != nullptr ? f.name : "";
        if (name == "plugin_namespace" || name == "plugin_version")
        {
            std::string const value = readString(f);
            char const* const expected = name == "plugin_namespace" ? kPluginNamespace : kPluginVersion;
            if (!value.empty() && value != expected)
            {
                message = name + " is '" + value + "' but this plugin is '" + expected + "'";
                return false;
            }
            continue;
        }
        bool ok = true;
        if (name == "kernel_shape")
        {
            ok = readInts(f, values, message) && assignInts("kernel_shape", values, a.kernel.data(), 2, 1, message);
        }
        else if (name == "pads")
        {
            ok = readInts(f, values, message) && assignInts("pads", values, a.pads.data(), 4, 0, message);
        }
        else if (name == "strides")
        {
            ok = readInts(f, values, message) && assignInts("strides", values, a.strides.data(), 2, 1, message);
        }
        else if (name == "dilations")
        {
            ok = readInts(f, values, message) && assignInts("dilations", values, a.dilations.data(), 2, 1, message);
        }
        else
        {
            logMessage(ILogger::Severity::kWARNING, "ignoring unknown field '" + name + "'");
        }
        if (!ok)
        {
            return false;
        }
    }
    return true;
}

} // namespace

// ---------------------------------------------------------------------------------------
// PDFConvPlugin
// ---------------------------------------------------------------------------------------

namespace
{

std::string joined(int32_t const* values, size_t count)
{
    std::string text;
    for (size_t i = 0; i < count; ++i)
    {
        text += (i ? "," : "") + std::to_string(values[i]);
    }
    return text;
}

//! The timing cache key of a plugin created with these fields: TensorRT prefixes it with the
//! I/O shapes and formats, so it holds what else decides the kernels' speed, and the library's
//! version, so that timings of older kernels are not reused.
std::string timingCacheID(PluginAttributes const& a)
{
    return std::string(kPluginNamespace) + "::" + kPluginName + "/" + kPluginVersion + "/lib"
        + std::to_string(PDFCONV_VERSION) + ":kernel=" + joined(a.kernel.data(), 2) + ":pads="
        + joined(a.pads.data(), 4) + ":strides=" + joined(a.strides.data(), 2) + ":dilations="
        + joined(a.dilations.data(), 2);
}

} // namespace

PDFConvPlugin::PDFConvPlugin(PluginAttributes const& attributes)
    : mAttributes(attributes)
    , mTimingCacheID(timingCacheID(attributes))
{
}

PDFConvPlugin::PDFConvPlugin(PDFConvPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mAttributes(other.mAttributes)
    , mTimingCacheID(other.mTimingCacheID)
{
    // mFields points into mAttributes: rebuilt by getFieldsToSerialize, never copied.
}

// --- IPluginV3 ---

IPluginCapability* PDFConvPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    logError("unknown capability type " + std::to_string(static_cast<int32_t>(type)));
    return nullptr;
}

IPluginV3* PDFConvPlugin::clone() noexcept
{
    return guarded<IPluginV3*>("clone", nullptr, [&] { return new PDFConvPlugin(*this); });
}

// --- IPluginV3OneCore ---

char const* PDFConvPlugin::getPluginName() const noexcept
{
    return kPluginName;
}

char const* PDFConvPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* PDFConvPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

// --- IPluginV3OneBuild ---

int32_t PDFConvPlugin::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

int32_t PDFConvPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || outputTypes == nullptr || inputTypes == nullptr)
    {
        logError("expects 5 inputs (X, offset, mask, W, B) and 1 output, got " + std::to_string(nbInputs) + " and "
            + std::to_string(nbOutputs));
        return -1;
    }
    if (!isFloat(inputTypes[kX]) || inputTypes[kWeight] != inputTypes[kX] || inputTypes[kBias] != inputTypes[kX])
    {
        logError("X, W and B must share one type, FP32 or FP16");
        return -1;
    }
    outputTypes[0] = inputTypes[kX];
    return 0;
}

int32_t PDFConvPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    return guarded<int32_t>("getOutputShapes", -1, [&]() -> int32_t {
        if (nbInputs != kNbInputs || nbOutputs != kNbOutputs)
        {
            logError("expects 5 inputs and 1 output");
            return -1;
        }
        DimsExprs const& x = inputs[kX];
        DimsExprs const& w = inputs[kWeight];
        if (x.nbDims != 4 || w.nbDims != 4)
        {
            logError("X and W must be 4-D, got ranks " + std::to_string(x.nbDims) + " and " + std::to_string(w.nbDims));
            return -1;
        }
        IDimensionExpr const* const one = exprBuilder.constant(1);
        DimsExprs& y = outputs[0];
        y.nbDims = 4;
        y.d[0] = x.d[0];
        y.d[1] = w.d[0];
        for (int32_t axis = 0; axis < 2; ++axis)
        {
            // Ho = floor((H + pad_begin + pad_end - (dilation * (K - 1) + 1)) / stride) + 1
            IDimensionExpr const* const kernel = mAttributes.kernel[axis] != 0
                ? exprBuilder.constant(mAttributes.kernel[axis])
                : w.d[2 + axis];
            IDimensionExpr const* const span = exprBuilder.operation(DimensionOperation::kSUM,
                *exprBuilder.operation(DimensionOperation::kPROD, *exprBuilder.constant(mAttributes.dilations[axis]),
                    *exprBuilder.operation(DimensionOperation::kSUB, *kernel, *one)),
                *one);
            IDimensionExpr const* const padded = exprBuilder.operation(DimensionOperation::kSUM, *x.d[2 + axis],
                *exprBuilder.constant(mAttributes.pads[axis] + mAttributes.pads[axis + 2]));
            IDimensionExpr const* const steps = exprBuilder.operation(DimensionOperation::kFLOOR_DIV,
                *exprBuilder.operation(DimensionOperation::kSUB, *padded, *span),
                *exprBuilder.constant(mAttributes.strides[axis]));
            y.d[2 + axis] = exprBuilder.operation(DimensionOperation::kSUM, *steps, *one);
        }
        return 0;
    });
}

bool PDFConvPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNbInputs || nbOutputs != kNbOutputs || pos < 0
        || pos >= kNbInputs + kNbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    PluginTensorDesc const& x = inOut[kX].desc;
    bool const linear = desc.format == TensorFormat::kLINEAR;
    switch (pos)
    {
    // X: FP32 or FP16 NCHW, or FP16 channels-last kHWC8 (no reformat around the plugin).
    case kX: return (desc.type == DataType::kFLOAT && linear)
        || (desc.type == DataType::kHALF && (linear || desc.format == TensorFormat::kHWC8));
    // offset and mask: FP32 or FP16 each (an FP16 model may keep offsets in FP32), NCHW.
    case kOffset:
    case kMask: return isFloat(desc.type) && linear;
    // W and B: X's type, linear.
    case kWeight:
    case kBias: return desc.type == x.type && linear;
    // Y: X's type and format.
    default: return desc.type == x.type && desc.format == x.format;
    }
}

int32_t PDFConvPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>("configurePlugin", -1, [&]() -> int32_t {
        if (in == nullptr || nbInputs != kNbInputs || nbOutputs != kNbOutputs)
        {
            logError("expects 5 inputs and 1 output");
            return -1;
        }
        Dims const& x = in[kX].desc.dims;
        Dims const& w = in[kWeight].desc.dims;
        if (x.nbDims != 4 || w.nbDims != 4)
        {
            logError("X " + dimsText(x) + " and W " + dimsText(w) + " must be 4-D");
            return -1;
        }
        if (x.d[1] >= 0 && w.d[1] >= 0 && x.d[1] != w.d[1])
        {
            logError("W " + dimsText(w) + " has " + std::to_string(w.d[1]) + " input channels but X " + dimsText(x)
                + " has " + std::to_string(x.d[1]));
            return -1;
        }
        if (w.d[2] > 0 && w.d[3] > 0)
        {
            if (mAttributes.kernel[0] != 0 && (mAttributes.kernel[0] != w.d[2] || mAttributes.kernel[1] != w.d[3]))
            {
                logError("kernel_shape (" + std::to_string(mAttributes.kernel[0]) + ", "
                    + std::to_string(mAttributes.kernel[1]) + ") disagrees with W " + dimsText(w));
                return -1;
            }
            mAttributes.kernel = {static_cast<int32_t>(w.d[2]), static_cast<int32_t>(w.d[3])};
        }
        // The profile's largest shapes must be ones the kernels can run (element counts,
        // launch limits: planForward, as at inference), so that an engine that cannot run
        // is refused here, at build time, instead of failing in enqueue.
        std::string message;
        PluginTensorDesc largest[kNbInputs];
        for (int32_t i = 0; i < kNbInputs; ++i)
        {
            largest[i] = in[i].desc;
            largest[i].dims = in[i].max;
        }
        if (!fitsInt32(largest[kX].dims, message) || !fitsInt32(largest[kWeight].dims, message))
        {
            logError("configurePlugin: the profile's largest X " + dimsText(largest[kX].dims) + " or W "
                + dimsText(largest[kWeight].dims) + " " + message + "; lower the profile's maximum shape");
            return -1;
        }
        int32_t outHeight = 0;
        int32_t outWidth = 0;
        int32_t algo = PDFCONV_ALGO_DIRECT;
        if (planForward(paramsOf(mAttributes, largest), PDFCONV_ALGO_AUTO, outHeight, outWidth, algo, message)
            != PDFCONV_SUCCESS)
        {
            logError("configurePlugin: the profile's largest X " + dimsText(largest[kX].dims)
                + " cannot run: " + message + "; lower the profile's maximum shape");
            return -1;
        }
        return 0;
    });
}

size_t PDFConvPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (inputs == nullptr || nbInputs != kNbInputs)
    {
        return 0;
    }
    // The workspace holds the repacked weights: it depends on W's (static) shape and the type.
    PluginTensorDesc desc[kNbInputs];
    for (int32_t i = 0; i < kNbInputs; ++i)
    {
        desc[i] = inputs[i].desc;
        desc[i].dims = inputs[i].max;
    }
    if (desc[kX].dims.nbDims != 4 || desc[kWeight].dims.nbDims != 4)
    {
        return 0;
    }
    PdfConvParams const params = paramsOf(mAttributes, desc);
    int32_t algo = PDFCONV_ALGO_DIRECT;
    std::string message;
    if (params.out_channels < 1 || params.in_channels < 1 || params.kernel_h < 1 || params.kernel_w < 1
        || resolveAlgo(params, PDFCONV_ALGO_AUTO, algo, message) != PDFCONV_SUCCESS)
    {
        return 0;
    }
    return workspaceBytes(params, algo);
}

char const* PDFConvPlugin::getTimingCacheID() noexcept
{
    return mTimingCacheID.c_str();
}

// --- IPluginV3OneRuntime ---

int32_t PDFConvPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>("onShapeChange", -1, [&]() -> int32_t {
        if (nbInputs != kNbInputs || nbOutputs != kNbOutputs)
        {
            logError("expects 5 inputs and 1 output");
            return -1;
        }
        PdfConvParams params{};
        std::string message;
        if (!checkShapes(mAttributes, in, out, params, message))
        {
            logError(message);
            return -1;
        }
        return 0;
    });
}

int32_t PDFConvPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    return guarded<int32_t>("enqueue", -1, [&]() -> int32_t {
        PdfConvParams params{};
        std::string message;
        if (!checkShapes(mAttributes, inputDesc, outputDesc, params, message))
        {
            logError(message);
            return -1;
        }
        int32_t outHeight = 0;
        int32_t outWidth = 0;
        int32_t algo = PDFCONV_ALGO_DIRECT;
        int32_t status = planForward(params, PDFCONV_ALGO_AUTO, outHeight, outWidth, algo, message);
        if (status == PDFCONV_SUCCESS)
        {
            // TensorRT hands device pointers of this context's device: no pointer query here.
            void const* packed = nullptr;
            if (algo == PDFCONV_ALGO_FUSED)
            {
                bool packedNow = false;
                packed = mPackedWeights.prepare(params, inputs[kWeight], stream, packedNow);
                if (packedNow)
                {
                    logMessage(ILogger::Severity::kVERBOSE,
                        "enqueue: repacked W " + dimsText(inputDesc[kWeight].dims)
                            + " for the fused kernel; reused until W's address or shape changes");
                }
            }
            status = forwardCuda(params, outHeight, outWidth, algo, inputs[kX], inputs[kOffset], inputs[kMask],
                inputs[kWeight], inputs[kBias], outputs[0], workspace, stream, message, packed);
        }
        if (status != PDFCONV_SUCCESS)
        {
            logError(message);
            return -1;
        }
        return 0;
    });
}

IPluginV3* PDFConvPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* PDFConvPlugin::getFieldsToSerialize() noexcept
{
    return guarded<PluginFieldCollection const*>("getFieldsToSerialize", nullptr, [&] {
        mFields.clear();
        if (mAttributes.kernel[0] != 0)
        {
            mFields.emplace_back("kernel_shape", mAttributes.kernel.data(), PluginFieldType::kINT32, 2);
        }
        mFields.emplace_back("pads", mAttributes.pads.data(), PluginFieldType::kINT32, 4);
        mFields.emplace_back("strides", mAttributes.strides.data(), PluginFieldType::kINT32, 2);
        mFields.emplace_back("dilations", mAttributes.dilations.data(), PluginFieldType::kINT32, 2);
        mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
        mFieldCollection.fields = mFields.data();
        return &mFieldCollection;
    });
}

// ---------------------------------------------------------------------------------------
// PDFConvPluginCreator
// ---------------------------------------------------------------------------------------

PDFConvPluginCreator::PDFConvPluginCreator()
{
    mFieldNames.emplace_back("kernel_shape", nullptr, PluginFieldType::kINT32, 2);
    mFieldNames.emplace_back("pads", nullptr, PluginFieldType::kINT32, 4);
    mFieldNames.emplace_back("strides", nullptr, PluginFieldType::kINT32, 2);
    mFieldNames.emplace_back("dilations", nullptr, PluginFieldType::kINT32, 2);
    mFieldNames.emplace_back("plugin_namespace", nullptr, PluginFieldType::kCHAR, 0);
    mFieldNames.emplace_back("plugin_version", nullptr, PluginFieldType::kCHAR, 0);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* PDFConvPluginCreator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* PDFConvPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* PDFConvPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

PluginFieldCollection const* PDFConvPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* PDFConvPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    return guarded<IPluginV3*>("createPlugin", nullptr, [&]() -> IPluginV3* {
        PluginAttributes attributes;
        std::string message;
        if (!parseFields(fc, attributes, message))
        {
            logError(std::string("layer '") + (name != nullptr ? name : "") + "': " + message);
            return nullptr;
        }
        return new PDFConvPlugin(attributes);
    });
}

} // namespace pdfconv
} // namespace saphnet

// ---------------------------------------------------------------------------------------
// Library entry points
// ---------------------------------------------------------------------------------------

namespace
{

saphnet::pdfconv::PDFConvPluginCreator& creator()
{
    static saphnet::pdfconv::PDFConvPluginCreator instance;
    return instance;
}

} // namespace

extern "C" {

IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static IPluginCreatorInterface* const kCreators[] = {&creator()};
    nbCreators = 1;
    return kCreators;
}

void setLoggerFinder(ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(saphnet::pdfconv::gLoggerMutex);
    saphnet::pdfconv::gLoggerFinder = finder;
}

int32_t pdfconv_register_tensorrt(void)
{
    using namespace saphnet::pdfconv;
    using GetRegistry = IPluginRegistry* (*) ();
    auto const getRegistry = reinterpret_cast<GetRegistry>(nvinferSymbol("getPluginRegistry"));
    if (getRegistry == nullptr)
    {
        setLastError("pdfconv_register_tensorrt: " + nvinferLibrary()
            + " is not loaded in this process; import tensorrt first (or use "
              "IPluginRegistry::loadLibrary on this library)");
        return 0;
    }
    IPluginRegistry* const registry = getRegistry();
    if (registry == nullptr)
    {
        setLastError("pdfconv_register_tensorrt: TensorRT returned no plugin registry");
        return 0;
    }
    if (registry->getCreator(kPluginName, kPluginVersion, kPluginNamespace) != nullptr)
    {
        return 1;
    }
    if (!registry->registerCreator(creator(), kPluginNamespace))
    {
        logError("TensorRT refused to register the creator");
        return 0;
    }
    return 1;
}

} // extern "C"
