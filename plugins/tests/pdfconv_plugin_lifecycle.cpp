// pdfconv_plugin_lifecycle: drives libsaphnet_plugins.so's TensorRT plugin the way TensorRT
// and its ONNX parser do, with TensorRT's headers only (no libnvinfer, no GPU):
//
//   1. dlopen the library and take the creator from its exported getCreators (what
//      IPluginRegistry::loadLibrary does), after handing it a logger (setLoggerFinder);
//   2. build the plugin fields as onnx-tensorrt's loadFields does (only the names that
//      getFieldNames lists; ONNX INTS as INT32 arrays, STRING as NUL-terminated CHAR), and
//      as INT64 arrays; bad fields must be refused with a logged message;
//   3. ask for output shapes through a test IExprBuilder with symbolic dimensions, for
//      static and dynamic H/W with strides, asymmetric pads and dilations, and check them
//      against the convolution formula;
//   4. ask every supportsFormatCombination question TensorRT can ask (each position, every
//      type and format, given the accepted ones before it), then configurePlugin (a profile
//      whose largest shape the kernels cannot run must be refused) and getWorkspaceSize;
//   5. serialize (getFieldsToSerialize), recreate at runtime phase, clone, attach to a
//      context and call onShapeChange;
//   6. getTimingCacheID: an ID that names the plugin and tells its fields apart.
//
// Usage: pdfconv_plugin_lifecycle /path/to/libsaphnet_plugins.so   (ctest passes it).
// Exit status 0 when every check passes; each failed check prints one line.
#include "NvInferRuntime.h"
#include "checks.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

using namespace nvinfer1;

namespace
{

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

using checks::expect;

std::string dimsText(Dims const& dims)
{
    std::string text = "(";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        text += (i ? ", " : "") + std::to_string(dims.d[i]);
    }
    return text + ")";
}

Dims dims4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    Dims dims{};
    dims.nbDims = 4;
    dims.d[0] = a;
    dims.d[1] = b;
    dims.d[2] = c;
    dims.d[3] = d;
    return dims;
}

Dims dims1(int64_t a)
{
    Dims dims{};
    dims.nbDims = 1;
    dims.d[0] = a;
    return dims;
}

int64_t floorDiv(int64_t a, int64_t b)
{
    int64_t const q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

//! The output extent, written here independently of the plugin (ONNX Conv / DeformConv).
int64_t convExtent(int64_t in, int64_t kernel, int64_t stride, int64_t padBegin, int64_t padEnd, int64_t dilation)
{
    return floorDiv(in + padBegin + padEnd - (dilation * (kernel - 1) + 1), stride) + 1;
}

int64_t roundUp(int64_t value, int64_t step)
{
    return (value + step - 1) / step * step;
}

// ---------------------------------------------------------------------------------------
// Logger: what the plugin logs through the ILogger that TensorRT would hand it
// ---------------------------------------------------------------------------------------

class CapturingLogger final : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kERROR)
        {
            errors.emplace_back(msg != nullptr ? msg : "");
        }
    }

    //! The errors logged since the last call, then forgets them.
    std::vector<std::string> take()
    {
        std::vector<std::string> out;
        out.swap(errors);
        return out;
    }

    std::vector<std::string> errors;
};

class TestLoggerFinder final : public ILoggerFinder
{
public:
    explicit TestLoggerFinder(ILogger* logger)
        : mLogger(logger)
    {
    }
    ILogger* findLogger() override
    {
        return mLogger;
    }

private:
    ILogger* mLogger;
};

CapturingLogger gLogger;

//! A refusal: exactly one logged error, on one line, that contains every `needle`.
void expectOneError(std::string const& what, std::vector<std::string> const& needles)
{
    std::vector<std::string> const errors = gLogger.take();
    if (!expect(errors.size() == 1, what + ": one logged error, got " + std::to_string(errors.size())))
    {
        for (std::string const& e : errors)
        {
            std::printf("      logged: %s\n", e.c_str());
        }
        return;
    }
    std::string const& message = errors[0];
    expect(message.find('\n') == std::string::npos, what + ": the error is one line: " + message);
    expect(message.rfind("saphnet::PDFConv: ", 0) == 0, what + ": the error names the plugin: " + message);
    for (std::string const& needle : needles)
    {
        expect(message.find(needle) != std::string::npos, what + ": the error says '" + needle + "': " + message);
    }
}

void expectNoError(std::string const& what)
{
    for (std::string const& e : gLogger.take())
    {
        expect(false, what + ": unexpected error logged: " + e);
    }
}

// ---------------------------------------------------------------------------------------
// A test IExprBuilder: constants, named symbols and operations, kept as expression trees
// that print symbolically and evaluate for given symbol values. Constants fold, as they do
// in TensorRT.
// ---------------------------------------------------------------------------------------

class Expr final : public IDimensionExpr
{
public:
    using Env = std::map<std::string, int64_t>;

    explicit Expr(int64_t value)
        : mValue(value)
        , mImplementation(*this)
    {
        mImpl = &mImplementation;
    }
    explicit Expr(std::string name)
        : mName(std::move(name))
        , mImplementation(*this)
    {
        mImpl = &mImplementation;
    }
    Expr(DimensionOperation op, Expr const& a, Expr const& b)
        : mOp(op)
        , mA(&a)
        , mB(&b)
        , mImplementation(*this)
    {
        mImpl = &mImplementation;
    }

    bool constant() const
    {
        return mA == nullptr && mName.empty();
    }

    int64_t value() const
    {
        return mValue;
    }

    //! The value for the symbols' values in env; false (and no value) for a division by <= 0.
    bool eval(Env const& env, int64_t& out) const
    {
        if (constant())
        {
            out = mValue;
            return true;
        }
        if (!mName.empty())
        {
            auto const it = env.find(mName);
            out = it != env.end() ? it->second : 0;
            return it != env.end();
        }
        int64_t a = 0;
        int64_t b = 0;
        return mA->eval(env, a) && mB->eval(env, b) && apply(mOp, a, b, out);
    }

    std::string text() const
    {
        if (constant())
        {
            return std::to_string(mValue);
        }
        if (!mName.empty())
        {
            return mName;
        }
        static char const* const kSymbols[] = {"+", "*", " max ", " min ", "-", "==", "<", "//", " ceildiv "};
        auto const op = static_cast<size_t>(mOp);
        char const* const symbol = op < sizeof(kSymbols) / sizeof(kSymbols[0]) ? kSymbols[op] : " ? ";
        return "(" + mA->text() + " " + symbol + " " + mB->text() + ")";
    }

    static bool apply(DimensionOperation op, int64_t a, int64_t b, int64_t& out)
    {
        switch (op)
        {
        case DimensionOperation::kSUM: out = a + b; return true;
        case DimensionOperation::kPROD: out = a * b; return true;
        case DimensionOperation::kMAX: out = std::max(a, b); return true;
        case DimensionOperation::kMIN: out = std::min(a, b); return true;
        case DimensionOperation::kSUB: out = a - b; return true;
        case DimensionOperation::kEQUAL: out = a == b; return true;
        case DimensionOperation::kLESS: out = a < b; return true;
        case DimensionOperation::kFLOOR_DIV:
            if (b == 0)
            {
                return false;
            }
            out = floorDiv(a, b);
            return true;
        case DimensionOperation::kCEIL_DIV:
            if (b == 0)
            {
                return false;
            }
            out = -floorDiv(-a, b);
            return true;
        }
        return false;
    }

private:
    class Implementation final : public apiv::VDimensionExpr
    {
    public:
        explicit Implementation(Expr const& self)
            : mSelf(self)
        {
        }
        bool isConstant() const override
        {
            return mSelf.constant();
        }
        int64_t getConstantValue() const override
        {
            return mSelf.constant() ? mSelf.mValue : std::numeric_limits<int64_t>::min();
        }
        bool isSizeTensor() const override
        {
            return false;
        }

    private:
        Expr const& mSelf;
    };

    int64_t mValue{0};
    std::string mName;
    DimensionOperation mOp{DimensionOperation::kSUM};
    Expr const* mA{nullptr};
    Expr const* mB{nullptr};
    Implementation mImplementation;
};

class TestExprBuilder final : public IExprBuilder
{
public:
    TestExprBuilder()
        : mImplementation(*this)
    {
        mImpl = &mImplementation;
    }

    Expr const* symbol(std::string const& name)
    {
        mExprs.push_back(std::make_unique<Expr>(name));
        return mExprs.back().get();
    }

    Expr const* number(int64_t value)
    {
        mExprs.push_back(std::make_unique<Expr>(value));
        return mExprs.back().get();
    }

    //! What the plugin asked that TensorRT would refuse (foreign expressions, size tensors).
    std::vector<std::string> misuse;

private:
    class Implementation final : public apiv::VExprBuilder
    {
    public:
        explicit Implementation(TestExprBuilder& self)
            : mSelf(self)
        {
        }
        IDimensionExpr const* constant(int64_t value) override
        {
            return mSelf.number(value);
        }
        IDimensionExpr const* operation(
            DimensionOperation op, IDimensionExpr const& first, IDimensionExpr const& second) override
        {
            auto const* a = dynamic_cast<Expr const*>(&first);
            auto const* b = dynamic_cast<Expr const*>(&second);
            if (a == nullptr || b == nullptr)
            {
                mSelf.misuse.emplace_back("operation on an expression this builder did not make");
                return nullptr;
            }
            int64_t folded = 0;
            if (a->constant() && b->constant())
            {
                if (!Expr::apply(op, a->value(), b->value(), folded))
                {
                    mSelf.misuse.emplace_back("constant division by zero");
                    return nullptr;
                }
                return mSelf.number(folded);
            }
            mSelf.mExprs.push_back(std::make_unique<Expr>(op, *a, *b));
            return mSelf.mExprs.back().get();
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
        {
            mSelf.misuse.emplace_back("declareSizeTensor: PDFConv has no size tensor output");
            return nullptr;
        }

    private:
        TestExprBuilder& mSelf;
    };

    std::deque<std::unique_ptr<Expr>> mExprs;
    Implementation mImplementation;
};

// ---------------------------------------------------------------------------------------
// The plugin's geometry and the fields the ONNX parser builds from a saphnet::PDFConv node
// ---------------------------------------------------------------------------------------

struct Geometry
{
    int64_t kernel[2];
    int64_t pads[4]; // top, left, bottom, right (ONNX)
    int64_t strides[2];
    int64_t dilations[2];
};

//! The node's attributes, as saphnet.export writes them.
struct OnnxNode
{
    std::map<std::string, std::vector<int64_t>> ints;
    std::map<std::string, std::string> strings;
};

OnnxNode nodeOf(Geometry const& g, bool withKernelShape = true)
{
    OnnxNode node;
    if (withKernelShape)
    {
        node.ints["kernel_shape"] = {g.kernel[0], g.kernel[1]};
    }
    node.ints["pads"] = {g.pads[0], g.pads[1], g.pads[2], g.pads[3]};
    node.ints["strides"] = {g.strides[0], g.strides[1]};
    node.ints["dilations"] = {g.dilations[0], g.dilations[1]};
    node.strings["plugin_namespace"] = "saphnet";
    node.strings["plugin_version"] = "1";
    return node;
}

//! A PluginFieldCollection and the storage its fields point into.
class Fields
{
public:
    //! onnx-tensorrt's loadFields: for each name the creator lists (getFieldNames) that the
    //! node has, ONNX INTS as a kINT32 array, STRING as kCHAR with a NUL (length + 1); with
    //! int64, the integers as kINT64 arrays instead (what other front ends may pass).
    Fields(PluginFieldCollection const& names, OnnxNode const& node, bool int64 = false)
    {
        for (int32_t i = 0; i < names.nbFields; ++i)
        {
            std::string const name = names.fields[i].name;
            if (auto const it = node.ints.find(name); it != node.ints.end())
            {
                if (int64)
                {
                    mInt64.push_back(it->second);
                    add(name, mInt64.back().data(), PluginFieldType::kINT64, it->second.size());
                }
                else
                {
                    mInt32.emplace_back(it->second.begin(), it->second.end());
                    add(name, mInt32.back().data(), PluginFieldType::kINT32, it->second.size());
                }
            }
            else if (auto const its = node.strings.find(name); its != node.strings.end())
            {
                mChars.emplace_back(its->second.begin(), its->second.end());
                mChars.back().push_back('\0');
                add(name, mChars.back().data(), PluginFieldType::kCHAR, mChars.back().size());
            }
        }
    }

    //! A field with a raw type and payload (for the refusals).
    Fields(std::string const& name, PluginFieldType type, std::vector<int32_t> const& values)
    {
        mInt32.push_back(values);
        add(name, mInt32.back().data(), type, values.size());
    }

    PluginFieldCollection const* collection()
    {
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
        return &mCollection;
    }

private:
    void add(std::string const& name, void const* data, PluginFieldType type, size_t length)
    {
        mNames.push_back(name);
        mFields.emplace_back(mNames.back().c_str(), data, type, static_cast<int32_t>(length));
    }

    std::deque<std::string> mNames;
    std::deque<std::vector<int32_t>> mInt32;
    std::deque<std::vector<int64_t>> mInt64;
    std::deque<std::vector<char>> mChars;
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
};

//! Integer fields of a collection (INT32 or INT64), by name.
std::map<std::string, std::vector<int64_t>> intFields(PluginFieldCollection const* fc)
{
    std::map<std::string, std::vector<int64_t>> out;
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::vector<int64_t>& values = out[f.name];
        for (int32_t j = 0; j < f.length; ++j)
        {
            values.push_back(f.type == PluginFieldType::kINT64 ? static_cast<int64_t const*>(f.data)[j]
                                                               : static_cast<int32_t const*>(f.data)[j]);
        }
    }
    return out;
}

// ---------------------------------------------------------------------------------------
// The plugin's capabilities, as TensorRT takes them
// ---------------------------------------------------------------------------------------

struct Capabilities
{
    IPluginV3OneCore* core{nullptr};
    IPluginV3OneBuild* build{nullptr};
    IPluginV3OneRuntime* runtime{nullptr};
};

Capabilities capabilitiesOf(IPluginV3* plugin, std::string const& what)
{
    Capabilities c;
    if (!expect(plugin != nullptr, what + ": a plugin"))
    {
        return c;
    }
    expect(std::strcmp(plugin->getInterfaceInfo().kind, "PLUGIN") == 0, what + ": IPluginV3");
    IPluginCapability* const core = plugin->getCapabilityInterface(PluginCapabilityType::kCORE);
    IPluginCapability* const build = plugin->getCapabilityInterface(PluginCapabilityType::kBUILD);
    IPluginCapability* const runtime = plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME);
    if (expect(core != nullptr && build != nullptr && runtime != nullptr, what + ": all three capabilities"))
    {
        expect(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0, what + ": core kind");
        expect(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0, what + ": build kind");
        expect(std::strcmp(runtime->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0, what + ": runtime kind");
        c.core = static_cast<IPluginV3OneCore*>(core);
        c.build = static_cast<IPluginV3OneBuild*>(build);
        c.runtime = static_cast<IPluginV3OneRuntime*>(runtime);
        expect(std::strcmp(c.core->getPluginName(), "PDFConv") == 0
                && std::strcmp(c.core->getPluginVersion(), "1") == 0
                && std::strcmp(c.core->getPluginNamespace(), "saphnet") == 0,
            what + ": identity PDFConv / 1 / saphnet");
    }
    return c;
}

// ---------------------------------------------------------------------------------------
// 1-2. Creator and fields
// ---------------------------------------------------------------------------------------

IPluginCreatorV3One* creatorFrom(void* library)
{
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto const getCreators = reinterpret_cast<GetCreators>(dlsym(library, "getCreators"));
    auto const setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(library, "setLoggerFinder"));
    if (!expect(getCreators != nullptr && setLoggerFinder != nullptr,
            "the library exports getCreators and setLoggerFinder (IPluginRegistry::loadLibrary's entry points)"))
    {
        return nullptr;
    }
    static TestLoggerFinder finder(&gLogger);
    setLoggerFinder(&finder);
    int32_t count = -1;
    IPluginCreatorInterface* const* const creators = getCreators(count);
    if (!expect(creators != nullptr && count == 1, "getCreators returns one creator, got " + std::to_string(count)))
    {
        return nullptr;
    }
    InterfaceInfo const info = creators[0]->getInterfaceInfo();
    if (!expect(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0 && info.major == 1,
            std::string("the creator is an IPluginCreatorV3One, got ") + info.kind))
    {
        return nullptr;
    }
    auto* const creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    expect(std::strcmp(creator->getPluginName(), "PDFConv") == 0 && std::strcmp(creator->getPluginVersion(), "1") == 0
            && std::strcmp(creator->getPluginNamespace(), "saphnet") == 0,
        "creator identity PDFConv / 1 / saphnet (the ONNX node's op type, plugin_version, plugin_namespace)");
    return creator;
}

void testFieldNames(IPluginCreatorV3One& creator)
{
    PluginFieldCollection const* const names = creator.getFieldNames();
    if (!expect(names != nullptr && names->fields != nullptr, "getFieldNames"))
    {
        return;
    }
    std::set<std::string> listed;
    for (int32_t i = 0; i < names->nbFields; ++i)
    {
        listed.insert(names->fields[i].name);
    }
    // The parser passes only the attributes the creator lists: one missing here would be
    // dropped silently from every node.
    for (char const* attribute :
        {"kernel_shape", "pads", "strides", "dilations", "plugin_namespace", "plugin_version"})
    {
        expect(listed.count(attribute) == 1, std::string("getFieldNames lists the node attribute ") + attribute);
    }
}

void testRefusedFields(IPluginCreatorV3One& creator)
{
    struct Bad
    {
        char const* what;
        Fields fields;
        char const* says;
    };
    OnnxNode wrongNamespace = nodeOf(Geometry{{3, 3}, {1, 1, 1, 1}, {1, 1}, {1, 1}});
    wrongNamespace.strings["plugin_namespace"] = "mmcv";
    OnnxNode wrongVersion = nodeOf(Geometry{{3, 3}, {1, 1, 1, 1}, {1, 1}, {1, 1}});
    wrongVersion.strings["plugin_version"] = "2";
    OnnxNode threePads = nodeOf(Geometry{{3, 3}, {1, 1, 1, 1}, {1, 1}, {1, 1}});
    threePads.ints["pads"] = {1, 1, 1};
    OnnxNode zeroStride = nodeOf(Geometry{{3, 3}, {1, 1, 1, 1}, {0, 1}, {1, 1}});
    OnnxNode negativePad = nodeOf(Geometry{{3, 3}, {1, -1, 1, 1}, {1, 1}, {1, 1}});
    Bad bad[] = {
        {"plugin_namespace mmcv", Fields(*creator.getFieldNames(), wrongNamespace), "plugin_namespace is 'mmcv'"},
        {"plugin_version 2", Fields(*creator.getFieldNames(), wrongVersion), "plugin_version is '2'"},
        {"three pads", Fields(*creator.getFieldNames(), threePads), "pads needs 4 values, got 3"},
        {"stride 0", Fields(*creator.getFieldNames(), zeroStride), "strides values must be >= 1"},
        {"pad -1 (INT64)", Fields(*creator.getFieldNames(), negativePad, true), "pads values must be >= 0"},
        {"FLOAT32 strides", Fields("strides", PluginFieldType::kFLOAT32, {1, 1}), "must be INT32 or INT64"},
    };
    for (Bad& b : bad)
    {
        IPluginV3* const plugin = creator.createPlugin("bad_node", b.fields.collection(), TensorRTPhase::kBUILD);
        expect(plugin == nullptr, std::string("createPlugin refuses ") + b.what);
        expectOneError(std::string("createPlugin with ") + b.what, {"bad_node", b.says});
        delete plugin;
    }
}

// ---------------------------------------------------------------------------------------
// 3. Output shapes
// ---------------------------------------------------------------------------------------

struct ShapeInputs
{
    DimsExprs in[5];
};

//! X (n, c, h, w), offset, mask (their H/W are the output's; only X and W matter), W, B.
ShapeInputs shapeInputs(TestExprBuilder& b, IDimensionExpr const* n, int64_t c, IDimensionExpr const* h,
    IDimensionExpr const* w, int64_t cOut, int64_t kh, int64_t kw)
{
    ShapeInputs s{};
    IDimensionExpr const* const x[4] = {n, b.number(c), h, w};
    IDimensionExpr const* const weight[4] = {b.number(cOut), b.number(c), b.number(kh), b.number(kw)};
    s.in[0].nbDims = 4;
    s.in[3].nbDims = 4;
    for (int32_t i = 0; i < 4; ++i)
    {
        s.in[0].d[i] = x[i];
        s.in[3].d[i] = weight[i];
    }
    for (int32_t t = 1; t <= 2; ++t)
    {
        s.in[t].nbDims = 4;
        s.in[t].d[0] = n;
        s.in[t].d[1] = b.number(t == 1 ? 2 * kh * kw : kh * kw);
        s.in[t].d[2] = b.symbol("Ho");
        s.in[t].d[3] = b.symbol("Wo");
    }
    s.in[4].nbDims = 1;
    s.in[4].d[0] = b.number(cOut);
    return s;
}

std::string geometryText(Geometry const& g)
{
    auto pair = [](int64_t const* v) { return std::to_string(v[0]) + "," + std::to_string(v[1]); };
    return "kernel " + std::to_string(g.kernel[0]) + "x" + std::to_string(g.kernel[1]) + " strides "
        + pair(g.strides) + " dilations " + pair(g.dilations) + " pads " + pair(g.pads) + "," + pair(g.pads + 2);
}

int64_t extentH(Geometry const& g, int64_t h)
{
    return convExtent(h, g.kernel[0], g.strides[0], g.pads[0], g.pads[2], g.dilations[0]);
}

int64_t extentW(Geometry const& g, int64_t w)
{
    return convExtent(w, g.kernel[1], g.strides[1], g.pads[1], g.pads[3], g.dilations[1]);
}

//! Every dimension a build-time constant: Y's dimensions are the formula's constants.
void checkStaticShapes(IPluginV3OneBuild& build, Geometry const& g, std::string const& what)
{
    TestExprBuilder b;
    int64_t const h = 37;
    int64_t const w = 29;
    ShapeInputs in = shapeInputs(b, b.number(2), 8, b.number(h), b.number(w), 16, g.kernel[0], g.kernel[1]);
    DimsExprs out[1]{};
    expect(build.getOutputShapes(in.in, 5, nullptr, 0, out, 1, b) == 0, what + ": static getOutputShapes");
    int64_t const want[4] = {2, 16, extentH(g, h), extentW(g, w)};
    expect(out[0].nbDims == 4, what + ": static output rank 4");
    for (int32_t i = 0; i < 4 && out[0].nbDims == 4; ++i)
    {
        expect(out[0].d[i] != nullptr && out[0].d[i]->isConstant() && out[0].d[i]->getConstantValue() == want[i],
            what + ": static Y dim " + std::to_string(i) + " is the constant " + std::to_string(want[i]));
    }
    expect(b.misuse.empty(), what + ": builder used as TensorRT allows");
}

//! Dynamic N, H and W: Y's H and W are expressions that agree with the formula for
//! H = 1 ... 48, W = H + 5 (sizes too small for the kernel included). Returns the
//! expressions' text, "" when they could not be evaluated.
std::string checkDynamicShapes(IPluginV3OneBuild& build, Geometry const& g, std::string const& what)
{
    TestExprBuilder b;
    Expr const* const n = b.symbol("N");
    ShapeInputs in = shapeInputs(b, n, 8, b.symbol("H"), b.symbol("W"), 16, g.kernel[0], g.kernel[1]);
    DimsExprs out[1]{};
    expect(build.getOutputShapes(in.in, 5, nullptr, 0, out, 1, b) == 0, what + ": dynamic getOutputShapes");
    expect(b.misuse.empty(), what + ": builder used as TensorRT allows");
    if (!expect(out[0].nbDims == 4 && out[0].d[1] != nullptr && out[0].d[2] != nullptr && out[0].d[3] != nullptr,
            what + ": dynamic output rank 4"))
    {
        return {};
    }
    expect(out[0].d[0] == n, what + ": Y's batch is X's batch expression");
    expect(out[0].d[1]->isConstant() && out[0].d[1]->getConstantValue() == 16, what + ": Y's channels are W's 16");
    auto const* const ho = dynamic_cast<Expr const*>(out[0].d[2]);
    auto const* const wo = dynamic_cast<Expr const*>(out[0].d[3]);
    if (!expect(ho != nullptr && wo != nullptr && !ho->constant() && !wo->constant(),
            what + ": dynamic Ho and Wo are expressions of H and W"))
    {
        return {};
    }
    for (int64_t h = 1; h <= 48; ++h)
    {
        int64_t gotH = 0;
        int64_t gotW = 0;
        Expr::Env const env{{"N", 3}, {"H", h}, {"W", h + 5}};
        bool const ok = ho->eval(env, gotH) && wo->eval(env, gotW);
        if (!expect(ok && gotH == extentH(g, h) && gotW == extentW(g, h + 5),
                what + ": H=" + std::to_string(h) + " W=" + std::to_string(h + 5) + " gives " + std::to_string(gotH)
                    + "x" + std::to_string(gotW) + ", the formula " + std::to_string(extentH(g, h)) + "x"
                    + std::to_string(extentW(g, h + 5))))
        {
            break;
        }
    }
    return "Ho = " + ho->text() + ", Wo = " + wo->text();
}

//! getOutputShapes for every geometry of a grid, with kernel_shape given or taken from W and
//! the fields as INT32 or INT64 arrays. Returns the number of geometries checked.
int32_t testOutputShapes(IPluginCreatorV3One& creator)
{
    int32_t cases = 0;
    int64_t const kernels[][2] = {{1, 1}, {3, 3}, {5, 5}, {2, 4}, {3, 5}};
    int64_t const strides[][2] = {{1, 1}, {2, 3}};
    int64_t const dilations[][2] = {{1, 1}, {2, 3}};
    int64_t const pads[][4] = {{0, 0, 0, 0}, {2, 2, 2, 2}, {2, 1, 0, 3}};
    std::vector<Geometry> geometries;
    for (auto const& k : kernels)
        for (auto const& s : strides)
            for (auto const& d : dilations)
                for (auto const& p : pads)
                {
                    geometries.push_back(Geometry{{k[0], k[1]}, {p[0], p[1], p[2], p[3]}, {s[0], s[1]}, {d[0], d[1]}});
                }
    for (Geometry const& g : geometries)
    {
        for (bool const withKernelShape : {true, false})
        {
            Fields fields(*creator.getFieldNames(), nodeOf(g, withKernelShape), cases % 2 == 1);
            std::string const what = geometryText(g) + (withKernelShape ? "" : " (kernel from W)");
            std::unique_ptr<IPluginV3> plugin(creator.createPlugin("pdf", fields.collection(), TensorRTPhase::kBUILD));
            Capabilities const c = capabilitiesOf(plugin.get(), what);
            if (c.build == nullptr)
            {
                continue;
            }
            ++cases;
            checkStaticShapes(*c.build, g, what);
            std::string const text = checkDynamicShapes(*c.build, g, what);
            if (withKernelShape && what == "kernel 3x5 strides 2,3 dilations 2,3 pads 2,1,0,3")
            {
                std::printf("symbolic, %s: %s\n", what.c_str(), text.c_str());
            }
        }
    }
    expectNoError("getOutputShapes");
    return cases;
}

// ---------------------------------------------------------------------------------------
// 4. Formats, configuration, workspace
// ---------------------------------------------------------------------------------------

using Combination = std::vector<std::pair<int32_t, int32_t>>; // (type, format) per position

//! Every question TensorRT can ask: position pos, each type and format, given accepted
//! choices at positions < pos; positions > pos hold values TensorRT has not chosen yet
//! (invalid ones here, so that a plugin reading them is caught).
void exploreFormats(IPluginV3OneBuild& build, std::vector<DynamicPluginTensorDesc>& io, int32_t pos,
    std::set<Combination>& accepted, int64_t& questions)
{
    int32_t const count = static_cast<int32_t>(io.size());
    if (pos == count)
    {
        Combination combination;
        for (DynamicPluginTensorDesc const& d : io)
        {
            combination.emplace_back(static_cast<int32_t>(d.desc.type), static_cast<int32_t>(d.desc.format));
        }
        accepted.insert(combination);
        return;
    }
    for (int32_t type = 0; type < EnumMax<DataType>(); ++type)
    {
        for (int32_t format = 0; format < EnumMax<TensorFormat>(); ++format)
        {
            io[pos].desc.type = static_cast<DataType>(type);
            io[pos].desc.format = static_cast<TensorFormat>(format);
            for (int32_t later = pos + 1; later < count; ++later)
            {
                io[later].desc.type = static_cast<DataType>(-1);
                io[later].desc.format = static_cast<TensorFormat>(-1);
            }
            ++questions;
            if (build.supportsFormatCombination(pos, io.data(), 5, 1))
            {
                exploreFormats(build, io, pos + 1, accepted, questions);
                io[pos].desc.type = static_cast<DataType>(type); // restore after the recursion
                io[pos].desc.format = static_cast<TensorFormat>(format);
            }
        }
    }
}

DynamicPluginTensorDesc dynamicDesc(Dims const& dims, Dims const& min, Dims const& max, DataType type,
    TensorFormat format = TensorFormat::kLINEAR)
{
    DynamicPluginTensorDesc d{};
    d.desc.dims = dims;
    d.desc.type = type;
    d.desc.format = format;
    d.desc.scale = -1.0F;
    d.min = min;
    d.opt = max;
    d.max = max;
    return d;
}

struct Profile
{
    std::vector<DynamicPluginTensorDesc> in;
    std::vector<DynamicPluginTensorDesc> out;
};

//! The tensors of a PDFConv with dynamic N, H, W between (1, 1, 1) and the maxima given.
Profile profileOf(Geometry const& g, int64_t cIn, int64_t cOut, int64_t maxN, int64_t maxH, int64_t maxW,
    DataType type, TensorFormat format, DataType offsetType = DataType::kFLOAT)
{
    int64_t const kh = g.kernel[0];
    int64_t const kw = g.kernel[1];
    int64_t const taps = kh * kw;
    int64_t const maxHo = convExtent(maxH, kh, g.strides[0], g.pads[0], g.pads[2], g.dilations[0]);
    int64_t const maxWo = convExtent(maxW, kw, g.strides[1], g.pads[1], g.pads[3], g.dilations[1]);
    Dims const w = dims4(cOut, cIn, kh, kw);
    Profile p;
    p.in.push_back(
        dynamicDesc(dims4(-1, cIn, -1, -1), dims4(1, cIn, kh, kw), dims4(maxN, cIn, maxH, maxW), type, format));
    p.in.push_back(dynamicDesc(
        dims4(-1, 2 * taps, -1, -1), dims4(1, 2 * taps, 1, 1), dims4(maxN, 2 * taps, maxHo, maxWo), offsetType));
    p.in.push_back(dynamicDesc(dims4(-1, taps, -1, -1), dims4(1, taps, 1, 1), dims4(maxN, taps, maxHo, maxWo), type));
    p.in.push_back(dynamicDesc(w, w, w, type));
    p.in.push_back(dynamicDesc(dims1(cOut), dims1(cOut), dims1(cOut), type));
    p.out.push_back(
        dynamicDesc(dims4(-1, cOut, -1, -1), dims4(1, cOut, 1, 1), dims4(maxN, cOut, maxHo, maxWo), type, format));
    return p;
}

//! The fused kernel's workspace, computed here from the README's description.
int64_t fusedWorkspace(int64_t taps, int64_t cIn, int64_t cOut, int64_t n, int64_t h, int64_t w, bool nchw)
{
    int64_t const packed = roundUp(taps * roundUp(cOut, 128) * roundUp(cIn, 32) * 2, 256);
    return packed + (nchw ? roundUp(n * h * w * roundUp(cIn, 8) * 2, 256) : 0);
}

void testFormatsConfigureWorkspace(IPluginCreatorV3One& creator, int64_t& questions, int32_t& accepted)
{
    Geometry const g{{5, 5}, {2, 2, 2, 2}, {1, 1}, {1, 1}};
    Fields fields(*creator.getFieldNames(), nodeOf(g));
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("pdf", fields.collection(), TensorRTPhase::kBUILD));
    Capabilities const c = capabilitiesOf(plugin.get(), "build plugin");
    if (c.build == nullptr)
    {
        return;
    }
    expect(c.build->getNbOutputs() == 1, "getNbOutputs is 1");

    // Output types: Y is X's type whatever the offsets' type.
    DataType constexpr kF32 = DataType::kFLOAT;
    DataType constexpr kF16 = DataType::kHALF;
    struct TypeCase
    {
        DataType in[5];
        DataType y;
        bool ok;
    };
    TypeCase const typeCases[] = {
        {{kF32, kF32, kF32, kF32, kF32}, kF32, true},
        {{kF16, kF32, kF16, kF16, kF16}, kF16, true},
        {{kF16, kF16, kF32, kF16, kF16}, kF16, true},
        {{kF16, kF16, kF16, kF32, kF16}, kF16, false},
        {{DataType::kINT32, kF32, kF32, DataType::kINT32, DataType::kINT32}, DataType::kINT32, false},
    };
    for (TypeCase const& t : typeCases)
    {
        DataType y = DataType::kBOOL;
        int32_t const status = c.build->getOutputDataTypes(&y, 1, t.in, 5);
        std::string const what = "getOutputDataTypes X type " + std::to_string(static_cast<int32_t>(t.in[0]))
            + " W type " + std::to_string(static_cast<int32_t>(t.in[3]));
        if (t.ok)
        {
            expect(status == 0 && y == t.y, what + " gives X's type");
            expectNoError(what);
        }
        else
        {
            expect(status != 0, what + " is refused");
            expectOneError(what, {"X, W and B must share one type"});
        }
    }

    // Formats.
    Profile profile = profileOf(g, 128, 128, 4, 720, 1280, DataType::kHALF, TensorFormat::kLINEAR);
    std::vector<DynamicPluginTensorDesc> io = profile.in;
    io.push_back(profile.out[0]);
    std::set<Combination> got;
    exploreFormats(*c.build, io, 0, got, questions);
    auto const linear = static_cast<int32_t>(TensorFormat::kLINEAR);
    auto const f32 = static_cast<int32_t>(DataType::kFLOAT);
    auto const f16 = static_cast<int32_t>(DataType::kHALF);
    std::set<Combination> want;
    auto const hwc8 = static_cast<int32_t>(TensorFormat::kHWC8);
    std::pair<int32_t, int32_t> const xs[] = {{f32, linear}, {f16, linear}, {f16, hwc8}};
    for (auto const& x : xs)
        for (int32_t const offset : {f32, f16})
            for (int32_t const mask : {f32, f16})
            {
                want.insert({x, {offset, linear}, {mask, linear}, {x.first, linear}, {x.first, linear}, x});
            }
    expect(got == want,
        "supportsFormatCombination accepts exactly the 12 documented combinations, got " + std::to_string(got.size()));
    accepted = static_cast<int32_t>(got.size());
    expect(!c.build->supportsFormatCombination(6, io.data(), 5, 1)
            && !c.build->supportsFormatCombination(-1, io.data(), 5, 1)
            && !c.build->supportsFormatCombination(0, nullptr, 5, 1),
        "supportsFormatCombination refuses positions out of range and a null array");
    expectNoError("supportsFormatCombination");

    // configurePlugin and getWorkspaceSize with the profile's maximum shapes.
    struct Config
    {
        char const* what;
        DataType type;
        TensorFormat format;
        int64_t n, h, w;
        int64_t workspace;
    };
    Config const configs[] = {
        {"FP16 NCHW 4x720x1280", DataType::kHALF, TensorFormat::kLINEAR, 4, 720, 1280,
            fusedWorkspace(25, 128, 128, 4, 720, 1280, true)},
        {"FP16 kHWC8 4x720x1280", DataType::kHALF, TensorFormat::kHWC8, 4, 720, 1280,
            fusedWorkspace(25, 128, 128, 4, 720, 1280, false)},
        {"FP32 NCHW 4x720x1280", DataType::kFLOAT, TensorFormat::kLINEAR, 4, 720, 1280, 0},
    };
    for (Config const& cfg : configs)
    {
        Profile const p = profileOf(g, 128, 128, cfg.n, cfg.h, cfg.w, cfg.type, cfg.format);
        expect(c.build->configurePlugin(p.in.data(), 5, p.out.data(), 1) == 0,
            std::string("configurePlugin accepts ") + cfg.what);
        expectNoError(std::string("configurePlugin ") + cfg.what);
        size_t const bytes = c.build->getWorkspaceSize(p.in.data(), 5, p.out.data(), 1);
        expect(static_cast<int64_t>(bytes) == cfg.workspace,
            std::string("getWorkspaceSize ") + cfg.what + " is " + std::to_string(bytes) + ", expected "
                + std::to_string(cfg.workspace));
    }
}

//! configurePlugin must refuse a profile whose largest shape the kernels cannot run.
void testConfigureRefusals(IPluginCreatorV3One& creator, void* library)
{
    using LastError = char const* (*) ();
    auto const lastError = reinterpret_cast<LastError>(dlsym(library, "pdfconv_last_error"));
    Geometry const g{{3, 3}, {1, 1, 1, 1}, {1, 1}, {1, 1}};
    Geometry const pointwise{{1, 1}, {0, 0, 0, 0}, {1, 1}, {1, 1}};
    {
        // The same shape in NCHW has 2^28 elements per tensor: accepted.
        Fields fields(*creator.getFieldNames(), nodeOf(pointwise));
        std::unique_ptr<IPluginV3> plugin(creator.createPlugin("pdf", fields.collection(), TensorRTPhase::kBUILD));
        Capabilities const c = capabilitiesOf(plugin.get(), "pointwise");
        Profile const p = profileOf(pointwise, 1, 1, 4, 8192, 8192, DataType::kHALF, TensorFormat::kLINEAR);
        expect(c.build != nullptr && c.build->configurePlugin(p.in.data(), 5, p.out.data(), 1) == 0,
            "configurePlugin accepts FP16 NCHW 4 x 1 x 8192 x 8192");
        expectNoError("FP16 NCHW 4 x 1 x 8192 x 8192");
    }
    struct Refusal
    {
        char const* what;
        Profile profile;
        std::vector<std::string> says;
    };
    Profile mismatch = profileOf(g, 8, 16, 1, 16, 16, DataType::kFLOAT, TensorFormat::kLINEAR);
    mismatch.in[3].desc.dims.d[1] = 4;
    mismatch.in[3].min = mismatch.in[3].max = mismatch.in[3].opt = mismatch.in[3].desc.dims;
    Refusal refusals[] = {
        {"X with 128 x 4096 x 4608 = 2.4e9 elements (FP32)",
            profileOf(g, 128, 64, 1, 4096, 4608, DataType::kFLOAT, TensorFormat::kLINEAR),
            {"configurePlugin", "largest X (1, 128, 4096, 4608)", "2^31", "lower the profile's maximum shape"}},
        {"FP16 kHWC8 4 x 1 x 8192 x 8192: 2^31 elements once padded to 8 channels",
            profileOf(pointwise, 1, 1, 4, 8192, 8192, DataType::kHALF, TensorFormat::kHWC8),
            {"2147483648 elements", "2^31", "lower the profile's maximum shape"}},
        {"batch 70000", profileOf(g, 8, 8, 70000, 4, 4, DataType::kHALF, TensorFormat::kLINEAR),
            {"batch 70000 exceeds the 65535", "lower the profile's maximum shape"}},
        {"H above int32", profileOf(g, 1, 1, 1, int64_t{3} << 31, 1, DataType::kFLOAT, TensorFormat::kLINEAR),
            {"above 2^31 - 1"}},
        {"W's input channels differ from X's", mismatch, {"W (16, 4, 3, 3) has 4 input channels but X"}},
    };
    for (Refusal& r : refusals)
    {
        Geometry const& geometry = r.profile.in[3].desc.dims.d[2] == 1 ? pointwise : g;
        Fields fields(*creator.getFieldNames(), nodeOf(geometry));
        std::unique_ptr<IPluginV3> plugin(creator.createPlugin("pdf", fields.collection(), TensorRTPhase::kBUILD));
        Capabilities const c = capabilitiesOf(plugin.get(), r.what);
        if (c.build == nullptr)
        {
            continue;
        }
        expect(c.build->configurePlugin(r.profile.in.data(), 5, r.profile.out.data(), 1) != 0,
            std::string("configurePlugin refuses ") + r.what);
        std::vector<std::string> const errors = gLogger.errors;
        expectOneError(std::string("configurePlugin ") + r.what, r.says);
        if (lastError != nullptr && errors.size() == 1)
        {
            expect(errors[0] == lastError(), std::string(r.what) + ": pdfconv_last_error() holds the same message");
        }
    }
    // kernel_shape that disagrees with W.
    Fields fields(*creator.getFieldNames(), nodeOf(Geometry{{5, 5}, {1, 1, 1, 1}, {1, 1}, {1, 1}}));
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("pdf", fields.collection(), TensorRTPhase::kBUILD));
    Capabilities const c = capabilitiesOf(plugin.get(), "kernel_shape 5x5");
    if (c.build != nullptr)
    {
        Profile const p = profileOf(g, 8, 8, 1, 16, 16, DataType::kFLOAT, TensorFormat::kLINEAR);
        expect(c.build->configurePlugin(p.in.data(), 5, p.out.data(), 1) != 0,
            "configurePlugin refuses kernel_shape (5, 5) with a 3x3 W");
        expectOneError("kernel_shape (5, 5) with a 3x3 W", {"kernel_shape (5, 5) disagrees with W (8, 8, 3, 3)"});
    }
}

// ---------------------------------------------------------------------------------------
// 5. Serialization, runtime phase, clone, onShapeChange
// ---------------------------------------------------------------------------------------

class TestResourceContext final : public IPluginResourceContext
{
public:
    IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
};

PluginTensorDesc concrete(Dims const& dims, DataType type, TensorFormat format = TensorFormat::kLINEAR)
{
    PluginTensorDesc d{};
    d.dims = dims;
    d.type = type;
    d.format = format;
    d.scale = -1.0F;
    return d;
}

//! onShapeChange with one concrete shape of the geometry, and with a wrong offset shape.
void testShapeChange(IPluginV3OneRuntime& runtime, Geometry const& g, std::string const& what)
{
    int64_t const kh = g.kernel[0];
    int64_t const kw = g.kernel[1];
    int64_t const h = 23;
    int64_t const w = 31;
    int64_t const ho = convExtent(h, kh, g.strides[0], g.pads[0], g.pads[2], g.dilations[0]);
    int64_t const wo = convExtent(w, kw, g.strides[1], g.pads[1], g.pads[3], g.dilations[1]);
    PluginTensorDesc in[5] = {concrete(dims4(2, 6, h, w), DataType::kHALF, TensorFormat::kHWC8),
        concrete(dims4(2, 2 * kh * kw, ho, wo), DataType::kFLOAT), concrete(dims4(2, kh * kw, ho, wo), DataType::kHALF),
        concrete(dims4(10, 6, kh, kw), DataType::kHALF), concrete(dims1(10), DataType::kHALF)};
    PluginTensorDesc out[1] = {concrete(dims4(2, 10, ho, wo), DataType::kHALF, TensorFormat::kHWC8)};
    expect(runtime.onShapeChange(in, 5, out, 1) == 0, what + ": onShapeChange accepts X " + dimsText(in[0].dims)
            + " -> Y " + dimsText(out[0].dims));
    expectNoError(what + ": onShapeChange");
    in[1].dims.d[2] = ho + 1;
    expect(runtime.onShapeChange(in, 5, out, 1) != 0, what + ": onShapeChange refuses an offset of the wrong size");
    expectOneError(what + ": onShapeChange with a wrong offset", {"offset has shape " + dimsText(in[1].dims)});
}

void testSerializeRecreateClone(IPluginCreatorV3One& creator)
{
    // kernel_shape absent, as a node may omit it: configurePlugin takes it from W.
    Geometry const g{{3, 5}, {2, 1, 0, 3}, {2, 1}, {1, 2}};
    Fields fields(*creator.getFieldNames(), nodeOf(g, false));
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("pdf", fields.collection(), TensorRTPhase::kBUILD));
    Capabilities const c = capabilitiesOf(plugin.get(), "serialized plugin");
    if (c.build == nullptr)
    {
        return;
    }
    Profile const p = profileOf(g, 6, 10, 2, 64, 64, DataType::kHALF, TensorFormat::kHWC8);
    expect(c.build->configurePlugin(p.in.data(), 5, p.out.data(), 1) == 0, "configurePlugin before serializing");
    PluginFieldCollection const* const serialized = c.runtime->getFieldsToSerialize();
    std::map<std::string, std::vector<int64_t>> const want{
        {"kernel_shape", {3, 5}}, {"pads", {2, 1, 0, 3}}, {"strides", {2, 1}}, {"dilations", {1, 2}}};
    expect(intFields(serialized) == want,
        "getFieldsToSerialize holds W's kernel, the asymmetric pads, strides and dilations");

    // What TensorRT does when it deserializes the engine: createPlugin at runtime phase.
    std::unique_ptr<IPluginV3> restored(creator.createPlugin("pdf", serialized, TensorRTPhase::kRUNTIME));
    Capabilities const r = capabilitiesOf(restored.get(), "runtime plugin");
    if (r.runtime == nullptr)
    {
        return;
    }
    expect(intFields(r.runtime->getFieldsToSerialize()) == want, "the runtime plugin serializes the same fields");
    testShapeChange(*r.runtime, g, "runtime plugin");

    // Clones (one per execution context) outlive the plugin they came from.
    std::unique_ptr<IPluginV3> clone(restored->clone());
    restored.reset();
    Capabilities const k = capabilitiesOf(clone.get(), "clone");
    if (k.runtime != nullptr)
    {
        expect(intFields(k.runtime->getFieldsToSerialize()) == want, "the clone serializes the same fields");
        testShapeChange(*k.runtime, g, "clone");
        TestResourceContext context;
        std::unique_ptr<IPluginV3> attached(k.runtime->attachToContext(&context));
        Capabilities const a = capabilitiesOf(attached.get(), "attached");
        if (a.runtime != nullptr)
        {
            clone.reset();
            testShapeChange(*a.runtime, g, "attached to a context");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 6. Timing cache ID
// ---------------------------------------------------------------------------------------

//! The timing cache ID of a plugin made from a node's fields (build phase), as a string.
std::string timingCacheIdOf(IPluginCreatorV3One& creator, Geometry const& g, bool withKernelShape = true)
{
    Fields fields(*creator.getFieldNames(), nodeOf(g, withKernelShape));
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("pdf", fields.collection(), TensorRTPhase::kBUILD));
    Capabilities const c = capabilitiesOf(plugin.get(), "timing cache plugin");
    char const* const id = c.build != nullptr ? c.build->getTimingCacheID() : nullptr;
    return id != nullptr ? id : "";
}

//! getTimingCacheID: nullptr would keep --timing-cache from storing our layers' timings. The ID
//! must name the plugin and its version and tell apart every field that changes the kernels'
//! work; the same fields give the same ID, in clones too.
void testTimingCacheID(IPluginCreatorV3One& creator)
{
    Geometry const base{{5, 5}, {2, 2, 2, 2}, {1, 1}, {1, 1}};
    std::string const id = timingCacheIdOf(creator, base);
    std::printf("getTimingCacheID: %s\n", id.c_str());
    if (!expect(!id.empty(), "getTimingCacheID returns an ID (not nullptr), so the timing cache keeps our timings"))
    {
        return;
    }
    expect(id.find("PDFConv") != std::string::npos && id.find("saphnet") != std::string::npos
            && id.find("/1/") != std::string::npos,
        "the timing cache ID names PDFConv, its namespace and version 1: " + id);
    expect(timingCacheIdOf(creator, base) == id, "the same fields give the same timing cache ID");
    Geometry const variants[] = {
        {{3, 3}, {2, 2, 2, 2}, {1, 1}, {1, 1}},
        {{5, 5}, {2, 1, 2, 2}, {1, 1}, {1, 1}},
        {{5, 5}, {2, 2, 2, 2}, {2, 1}, {1, 1}},
        {{5, 5}, {2, 2, 2, 2}, {1, 1}, {1, 2}},
    };
    std::set<std::string> ids{id};
    for (Geometry const& g : variants)
    {
        ids.insert(timingCacheIdOf(creator, g));
    }
    expect(ids.size() == 5, "kernel, pads, strides and dilations each change the timing cache ID");

    Fields fields(*creator.getFieldNames(), nodeOf(base));
    std::unique_ptr<IPluginV3> plugin(creator.createPlugin("pdf", fields.collection(), TensorRTPhase::kBUILD));
    std::unique_ptr<IPluginV3> clone(plugin != nullptr ? plugin->clone() : nullptr);
    plugin.reset();
    Capabilities const c = capabilitiesOf(clone.get(), "clone for the timing cache");
    expect(c.build != nullptr && c.build->getTimingCacheID() != nullptr
            && std::string(c.build->getTimingCacheID()) == id,
        "a clone keeps the timing cache ID after the plugin it came from is gone");
    expectNoError("getTimingCacheID");
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: %s /path/to/libsaphnet_plugins.so\n", argv[0]);
        return 2;
    }
    // What IPluginRegistry::loadLibrary does: open the library, hand it a logger, take its creators.
    void* const library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr)
    {
        std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 2;
    }
    std::printf("TensorRT headers %d.%d.%d, %s\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH, argv[1]);
    IPluginCreatorV3One* const creator = creatorFrom(library);
    if (creator != nullptr)
    {
        testFieldNames(*creator);
        testRefusedFields(*creator);
        int32_t const shapeCases = testOutputShapes(*creator);
        std::printf("getOutputShapes: %d geometries, static and dynamic N/H/W\n", shapeCases);
        int64_t questions = 0;
        int32_t accepted = 0;
        testFormatsConfigureWorkspace(*creator, questions, accepted);
        std::printf("supportsFormatCombination: %lld questions, %d accepted combinations\n",
            static_cast<long long>(questions), accepted);
        testConfigureRefusals(*creator, library);
        testSerializeRecreateClone(*creator);
        testTimingCacheID(*creator);
    }
    if (checks::failures == 0)
    {
        std::printf("the plugin behaves as TensorRT expects\n");
    }
    // The library stays loaded: the creator is a static TensorRT would keep until exit.
    return checks::finish();
}
