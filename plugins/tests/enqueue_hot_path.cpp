// pdfconv_enqueue_hot_path: the TensorRT plugin's enqueue on the CPU, against a fake CUDA
// runtime and fake launchers (this file), with the plugin's own sources (pdfconv_plugin.cpp,
// pdfconv_packed_weights.cpp, the C API and host build): what the plugin asks of CUDA on
// every call, which no GPU-less machine could otherwise see.
//
//   * W is repacked once per W pointer and shape (one cudaMalloc, one pack launch) and the
//     fused launch reads that copy; a new W pointer repacks into the same memory;
//   * inside a CUDA graph capture nothing is allocated or packed: a W packed before is reused,
//     a W never packed is packed into the workspace by the launch itself (packedWeights null);
//   * the allocation runs in relaxed capture mode (another thread's global capture must not
//     forbid it) and restores the thread's mode;
//   * a clone (one per execution context) packs for itself, FP32 (direct kernel) packs
//     nothing, a failed allocation falls back to the workspace, every buffer is freed;
//   * enqueue makes no pointer query (cudaPointerGetAttributes) and logs each repack once
//     at kVERBOSE.
#include "NvInferRuntime.h"
#include "checks.h"
#include "pdfconv_internal.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

// ---------------------------------------------------------------------------------------
// Fake CUDA runtime: what the plugin's host code calls, counted
// ---------------------------------------------------------------------------------------

namespace fake
{
int mallocs = 0;
int frees = 0;
int pointerQueries = 0;
bool capturing = false;
bool failMalloc = false;
cudaStreamCaptureMode threadMode = cudaStreamCaptureModeGlobal;
cudaStreamCaptureMode modeAtMalloc = cudaStreamCaptureModeGlobal;
std::vector<std::unique_ptr<char[]>> blocks;

int packs = 0;
void* lastPackTarget = nullptr;
void const* lastPackSource = nullptr;
int forwards = 0;
void const* lastPacked = reinterpret_cast<void const*>(1); // what the last launch was handed
} // namespace fake

extern "C" {

cudaError_t CUDARTAPI cudaMalloc(void** devPtr, size_t size)
{
    fake::modeAtMalloc = fake::threadMode;
    if (fake::failMalloc)
    {
        return cudaErrorMemoryAllocation;
    }
    ++fake::mallocs;
    fake::blocks.emplace_back(new char[size]);
    *devPtr = fake::blocks.back().get();
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFree(void* devPtr)
{
    fake::frees += devPtr != nullptr ? 1 : 0;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamIsCapturing(cudaStream_t /*stream*/, enum cudaStreamCaptureStatus* status)
{
    *status = fake::capturing ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGetDevice(int* device)
{
    *device = 0;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGetLastError(void)
{
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaThreadExchangeStreamCaptureMode(enum cudaStreamCaptureMode* mode)
{
    cudaStreamCaptureMode const previous = fake::threadMode;
    fake::threadMode = *mode;
    *mode = previous;
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaPointerGetAttributes(struct cudaPointerAttributes* /*attributes*/, void const* /*ptr*/)
{
    ++fake::pointerQueries;
    return cudaErrorInvalidValue;
}

} // extern "C"

// The launchers of pdfconv_kernels.cu, faked: record what enqueue hands them.
namespace saphnet
{
namespace pdfconv
{

void launchPackWeights(PdfConvParams const& /*params*/, void const* weight, void* packed, void* /*stream*/)
{
    ++fake::packs;
    fake::lastPackSource = weight;
    fake::lastPackTarget = packed;
}

int32_t forwardCuda(PdfConvParams const& /*params*/, int32_t /*outHeight*/, int32_t /*outWidth*/, int32_t /*algo*/,
    void const* /*x*/, void const* /*offset*/, void const* /*mask*/, void const* /*weight*/, void const* /*bias*/,
    void* /*y*/, void* /*workspace*/, void* /*stream*/, std::string& /*message*/, void const* packedWeights)
{
    ++fake::forwards;
    fake::lastPacked = packedWeights;
    return PDFCONV_SUCCESS;
}

} // namespace pdfconv
} // namespace saphnet

extern "C" {
IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
void setLoggerFinder(ILoggerFinder* finder);
}

namespace
{

//! Few checks here: print each, passed or not.
void expect(bool ok, std::string const& what)
{
    checks::expect(ok, what, /*verbose=*/true);
}

class CountingLogger final : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        std::string const text = msg != nullptr ? msg : "";
        repacks += severity == Severity::kVERBOSE && text.find("repacked W") != std::string::npos ? 1 : 0;
        errors += severity <= Severity::kERROR ? 1 : 0;
        if (severity <= Severity::kERROR)
        {
            std::printf("logged error: %s\n", text.c_str());
        }
    }
    int repacks = 0;
    int errors = 0;
};

CountingLogger gLogger;

class Finder final : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &gLogger;
    }
};

Finder gFinder;

class Context final : public IPluginResourceContext
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

Dims dims(std::vector<int64_t> const& values)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    for (size_t i = 0; i < values.size(); ++i)
    {
        d.d[i] = values[i];
    }
    return d;
}

PluginTensorDesc desc(std::vector<int64_t> const& shape, DataType type)
{
    PluginTensorDesc d{};
    d.dims = dims(shape);
    d.type = type;
    d.format = TensorFormat::kLINEAR;
    d.scale = -1.0F;
    return d;
}

//! One PDFConv layer (C = 16, 3x3, pad 1, 8x8 image) at runtime phase, shapes set.
struct Layer
{
    std::unique_ptr<IPluginV3> plugin;
    IPluginV3OneRuntime* runtime = nullptr;
    PluginTensorDesc in[5];
    PluginTensorDesc out[1];
};

Layer makeLayer(IPluginCreatorV3One& creator, DataType type)
{
    int32_t const kernel[2] = {3, 3};
    int32_t const pads[4] = {1, 1, 1, 1};
    PluginField const fields[2] = {PluginField("kernel_shape", kernel, PluginFieldType::kINT32, 2),
        PluginField("pads", pads, PluginFieldType::kINT32, 4)};
    PluginFieldCollection const fc{2, fields};
    Layer layer;
    layer.plugin.reset(creator.createPlugin("pdf", &fc, TensorRTPhase::kRUNTIME));
    layer.runtime = layer.plugin != nullptr
        ? static_cast<IPluginV3OneRuntime*>(layer.plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
        : nullptr;
    layer.in[0] = desc({1, 16, 8, 8}, type);
    layer.in[1] = desc({1, 18, 8, 8}, DataType::kFLOAT);
    layer.in[2] = desc({1, 9, 8, 8}, type);
    layer.in[3] = desc({16, 16, 3, 3}, type);
    layer.in[4] = desc({16}, type);
    layer.out[0] = desc({1, 16, 8, 8}, type);
    return layer;
}

// Stand-ins for device pointers: enqueue never dereferences them (the launchers are fakes).
alignas(256) char gX[16], gOffset[16], gMask[16], gWeightA[16], gWeightB[16], gBias[16], gY[16], gWorkspace[256];

int32_t enqueue(IPluginV3OneRuntime& runtime, Layer const& layer, void const* weight)
{
    void const* const inputs[5] = {gX, gOffset, gMask, weight, gBias};
    void* const outputs[1] = {gY};
    return runtime.enqueue(layer.in, layer.out, inputs, outputs, gWorkspace, nullptr);
}

} // namespace

int main()
{
    setLoggerFinder(&gFinder);
    int32_t count = 0;
    IPluginCreatorInterface* const* const creators = getCreators(count);
    auto& creator = *static_cast<IPluginCreatorV3One*>(creators[0]);

    Layer layer = makeLayer(creator, DataType::kHALF);
    if (layer.runtime == nullptr || layer.runtime->onShapeChange(layer.in, 5, layer.out, 1) != 0)
    {
        std::printf("FAIL: cannot set up the FP16 layer\n");
        return 1;
    }
    IPluginV3OneRuntime& runtime = *layer.runtime;

    // Eager calls with one W: packed once, into memory of the plugin's own.
    bool ok = true;
    for (int call = 0; call < 3; ++call)
    {
        ok = ok && enqueue(runtime, layer, gWeightA) == 0;
    }
    void* const buffer = fake::lastPackTarget;
    expect(ok && fake::forwards == 3, "three FP16 enqueues run");
    expect(fake::mallocs == 1 && fake::packs == 1 && fake::lastPackSource == gWeightA,
        "W is packed once for three calls (cudaMalloc " + std::to_string(fake::mallocs) + ", packs "
            + std::to_string(fake::packs) + ")");
    expect(buffer != nullptr && buffer != static_cast<void*>(gWorkspace) && fake::lastPacked == buffer,
        "the fused launch reads the plugin's packed copy, not a repack in the workspace");
    expect(fake::modeAtMalloc == cudaStreamCaptureModeRelaxed && fake::threadMode == cudaStreamCaptureModeGlobal,
        "the allocation runs in relaxed capture mode and the thread's mode is restored");
    expect(gLogger.repacks == 1, "one repack logged at kVERBOSE");

    // Graph capture: nothing allocated or packed.
    fake::capturing = true;
    ok = enqueue(runtime, layer, gWeightA) == 0;
    expect(ok && fake::mallocs == 1 && fake::packs == 1 && fake::lastPacked == buffer,
        "under capture, the W packed before is reused (no allocation, no pack)");
    ok = enqueue(runtime, layer, gWeightB) == 0;
    expect(ok && fake::mallocs == 1 && fake::packs == 1 && fake::lastPacked == nullptr,
        "under capture, a W never packed is packed into the workspace by the launch (no allocation)");
    fake::capturing = false;

    // A new W pointer eagerly: repacked into the same memory.
    ok = enqueue(runtime, layer, gWeightB) == 0;
    expect(ok && fake::mallocs == 1 && fake::packs == 2 && fake::lastPackSource == gWeightB
            && fake::lastPackTarget == buffer && fake::lastPacked == buffer,
        "a new W pointer is repacked once, into the same memory");
    ok = enqueue(runtime, layer, gWeightB) == 0;
    expect(ok && fake::packs == 2, "and then reused");

    // A clone (one per execution context) keeps a cache of its own.
    Context context;
    std::unique_ptr<IPluginV3> attached(runtime.attachToContext(&context));
    auto* const clone = attached != nullptr
        ? static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
        : nullptr;
    ok = clone != nullptr && clone->onShapeChange(layer.in, 5, layer.out, 1) == 0
        && enqueue(*clone, layer, gWeightB) == 0;
    expect(ok && fake::mallocs == 2 && fake::packs == 3 && fake::lastPackTarget != buffer,
        "a context's clone packs W into memory of its own");

    // FP32 runs the direct kernel: nothing to pack.
    Layer fp32 = makeLayer(creator, DataType::kFLOAT);
    ok = fp32.runtime != nullptr && fp32.runtime->onShapeChange(fp32.in, 5, fp32.out, 1) == 0
        && enqueue(*fp32.runtime, fp32, gWeightA) == 0;
    expect(ok && fake::mallocs == 2 && fake::packs == 3 && fake::lastPacked == nullptr,
        "FP32 (direct kernel) allocates and packs nothing");

    // Out of device memory: the workspace still holds room for the packed weights.
    fake::failMalloc = true;
    Layer starved = makeLayer(creator, DataType::kHALF);
    ok = starved.runtime != nullptr && starved.runtime->onShapeChange(starved.in, 5, starved.out, 1) == 0
        && enqueue(*starved.runtime, starved, gWeightA) == 0;
    expect(ok && fake::packs == 3 && fake::lastPacked == nullptr,
        "when cudaMalloc fails, the launch packs into the workspace");
    fake::failMalloc = false;

    expect(fake::pointerQueries == 0, "enqueue makes no pointer query (cudaPointerGetAttributes)");
    expect(gLogger.errors == 0, "no error logged");
    attached.reset();
    layer.plugin.reset();
    fp32.plugin.reset();
    starved.plugin.reset();
    expect(fake::frees == fake::mallocs, "every packed copy is freed with its plugin");

    return checks::finish();
}
