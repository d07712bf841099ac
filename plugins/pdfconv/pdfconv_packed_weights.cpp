// PackedWeights: the fused kernel's repacked W, kept per W pointer and shape so that the
// TensorRT plugin's enqueue repacks once, not on every call. Host code on the CUDA runtime API
// only (the packing kernel is launched by launchPackWeights in pdfconv_kernels.cu), so CPU-only
// CI runs it against a fake runtime (plugins/tests/enqueue_hot_path.cpp).
#include "pdfconv_internal.h"

#include <cuda_runtime_api.h>

namespace saphnet
{
namespace pdfconv
{

PackedWeights::~PackedWeights()
{
    if (mBuffer != nullptr)
    {
        cudaFree(mBuffer); // at exit the context may be gone already: nothing to report then
    }
}

void const* PackedWeights::prepare(PdfConvParams const& p, void const* weight, void* stream, bool& packed)
{
    packed = false;
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    int device = -1;
    if (cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &capture) != cudaSuccess
        || cudaGetDevice(&device) != cudaSuccess)
    {
        cudaGetLastError();
        return nullptr;
    }
    Key const key{weight, device, p.out_channels, p.in_channels, p.kernel_h * p.kernel_w};
    if (mValid && key == mKey)
    {
        return mBuffer; // packed by an earlier call, enqueued before this one
    }
    if (capture != cudaStreamCaptureStatusNone)
    {
        // Inside a graph capture nothing may be allocated, and a pack recorded into the graph
        // runs only when the graph does: the caller packs into the workspace, inside the graph.
        return nullptr;
    }
    std::size_t const bytes = packedWeightBytes(p);
    if (mBuffer == nullptr || bytes > mBytes || device != mKey.device)
    {
        // Relaxed mode: another thread's global-mode capture must not forbid this allocation.
        cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
        cudaThreadExchangeStreamCaptureMode(&mode);
        void* buffer = nullptr;
        cudaError_t const allocated = cudaMalloc(&buffer, bytes);
        cudaThreadExchangeStreamCaptureMode(&mode);
        if (allocated != cudaSuccess)
        {
            cudaGetLastError();
            mValid = false;
            return nullptr; // out of memory: the workspace still has room for the packed weights
        }
        if (mBuffer != nullptr)
        {
            cudaFree(mBuffer);
        }
        mBuffer = buffer;
        mBytes = bytes;
    }
    launchPackWeights(p, weight, mBuffer, stream);
    mKey = key;
    mValid = true;
    packed = true;
    return mBuffer;
}

} // namespace pdfconv
} // namespace saphnet
