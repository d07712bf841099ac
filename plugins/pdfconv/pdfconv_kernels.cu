// Launcher of the PDFConv CUDA kernels (pdfconv_kernels.cuh): checks what only the device
// side can check, prepares the fused kernel's workspace and enqueues the kernels.
#include "pdfconv_kernels.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <string>

namespace saphnet
{
namespace pdfconv
{
namespace
{

using namespace kernels;

template <typename T, bool kNHWC>
void launchDirect(KernelGeometry const& g, int32_t batch, void const* x, void const* offset, void const* mask,
    void const* weight, void const* bias, void* y, cudaStream_t stream)
{
    int32_t const pixels = g.outHeight * g.outWidth;
    int32_t const channelsOut = kNHWC ? g.outStride : g.outChannels;
    dim3 const grid((pixels + kDirectThreads - 1) / kDirectThreads,
        (channelsOut + kDirectChannels - 1) / kDirectChannels, batch);
    pdfDirectKernel<T, kNHWC><<<grid, kDirectThreads, 0, stream>>>(g, static_cast<T const*>(x), offset, mask,
        static_cast<T const*>(weight), static_cast<T const*>(bias), static_cast<T*>(y));
}

} // namespace

void launchPackWeights(PdfConvParams const& p, void const* weight, void* packed, void* streamHandle)
{
    cudaStream_t const stream = static_cast<cudaStream_t>(streamHandle);
    int32_t const packedM = (p.out_channels + kTileM - 1) / kTileM * kTileM;
    int32_t const packedK = (p.in_channels + kTileK - 1) / kTileK * kTileK;
    int32_t const taps = p.kernel_h * p.kernel_w;
    int64_t const total = static_cast<int64_t>(taps) * packedM * packedK;
    int32_t const packBlocks = static_cast<int32_t>(std::min<int64_t>((total + 255) / 256, 4096));
    packWeightsKernel<<<packBlocks, 256, 0, stream>>>(static_cast<__half const*>(weight), static_cast<__half*>(packed),
        p.out_channels, p.in_channels, taps, packedM, packedK);
}

int32_t checkDevice(void const* x, std::string& message)
{
    // Launch on the caller's current device and stream, never switch devices behind the caller's
    // back (TensorRT, torch and pycuda own the thread's current context). Our statically linked
    // runtime sees the context the caller made current, so cudaGetDevice is the caller's device.
    // x on another device is an error the caller fixes by making x's device current
    // (torch.cuda.device(x.device)); the check is a pointer query, no synchronization.
    cudaPointerAttributes attributes{};
    if (cudaPointerGetAttributes(&attributes, x) == cudaSuccess && attributes.type == cudaMemoryTypeDevice)
    {
        int current = -1;
        if (cudaGetDevice(&current) == cudaSuccess && current != attributes.device)
        {
            message = "pdfconv: x is on CUDA device " + std::to_string(attributes.device)
                + " but the current device is " + std::to_string(current)
                + "; make x's device current before the call (torch.cuda.device(x.device), cudaSetDevice)";
            return PDFCONV_INVALID_ARGUMENT;
        }
    }
    else
    {
        cudaGetLastError(); // not a pointer the runtime knows (e.g. no GPU): the launch reports it
    }
    return PDFCONV_SUCCESS;
}

int32_t forwardCuda(PdfConvParams const& p, int32_t outHeight, int32_t outWidth, int32_t algo, void const* x,
    void const* offset, void const* mask, void const* weight, void const* bias, void* y, void* workspace,
    void* streamHandle, std::string& message, void const* packedWeights)
{
    cudaStream_t const stream = static_cast<cudaStream_t>(streamHandle);
    KernelGeometry const g = geometryOf(p, outHeight, outWidth);
    bool const nhwc = p.layout == PDFCONV_LAYOUT_NHWC8;
    if (algo == PDFCONV_ALGO_FUSED)
    {
        if (nhwc && (reinterpret_cast<uintptr_t>(x) % 16) != 0)
        {
            message = "pdfconv: NHWC8 input must be 16-byte aligned for the fused kernel";
            return PDFCONV_INVALID_ARGUMENT;
        }
        if ((reinterpret_cast<uintptr_t>(workspace) % 16) != 0)
        {
            message = "pdfconv: the workspace must be 16-byte aligned (256 recommended)";
            return PDFCONV_INVALID_ARGUMENT;
        }
        int32_t const packedM = (p.out_channels + kTileM - 1) / kTileM * kTileM;
        int32_t const packedK = (p.in_channels + kTileK - 1) / kTileK * kTileK;
        if (packedWeights == nullptr)
        {
            launchPackWeights(p, weight, workspace, stream);
            packedWeights = workspace;
        }
        auto const* const packed = static_cast<__half const*>(packedWeights);
        // The kernel gathers channels-last (one 16-byte load = 8 channels per corner): an NCHW
        // input is first copied into the workspace as NHWC8.
        KernelGeometry fused = g;
        auto const* xh = static_cast<__half const*>(x);
        if (!nhwc)
        {
            fused.inStride = channelStride(p.in_channels, PDFCONV_LAYOUT_NHWC8);
            auto* const copy = reinterpret_cast<__half*>(static_cast<unsigned char*>(workspace) + packedWeightBytes(p));
            int32_t const inPixels = p.in_height * p.in_width;
            dim3 const tiles((inPixels + 31) / 32, (fused.inStride + kNhwc8TileChannels - 1) / kNhwc8TileChannels,
                p.batch);
            toNhwc8Kernel<<<tiles, dim3(32, 8), 0, stream>>>(xh, copy, p.in_channels, inPixels, fused.inStride);
            xh = copy;
        }
        int32_t const pixels = outHeight * outWidth;
        dim3 const grid((pixels + kTileN - 1) / kTileN, packedM / kTileM, p.batch);
        auto const* const bh = static_cast<__half const*>(bias);
        auto* const yh = static_cast<__half*>(y);
        if (nhwc)
        {
            pdfFusedKernel<true>
                <<<grid, kFusedThreads, 0, stream>>>(fused, xh, offset, mask, packed, packedM, packedK, bh, yh);
        }
        else
        {
            pdfFusedKernel<false>
                <<<grid, kFusedThreads, 0, stream>>>(fused, xh, offset, mask, packed, packedM, packedK, bh, yh);
        }
    }
    else if (p.dtype == PDFCONV_FLOAT16)
    {
        if (nhwc)
        {
            launchDirect<__half, true>(g, p.batch, x, offset, mask, weight, bias, y, stream);
        }
        else
        {
            launchDirect<__half, false>(g, p.batch, x, offset, mask, weight, bias, y, stream);
        }
    }
    else
    {
        if (nhwc)
        {
            launchDirect<float, true>(g, p.batch, x, offset, mask, weight, bias, y, stream);
        }
        else
        {
            launchDirect<float, false>(g, p.batch, x, offset, mask, weight, bias, y, stream);
        }
    }
    cudaError_t const error = cudaGetLastError();
    if (error != cudaSuccess)
    {
        message = std::string("pdfconv: kernel launch failed: ") + cudaGetErrorName(error) + ": "
            + cudaGetErrorString(error);
        return PDFCONV_CUDA_ERROR;
    }
    return PDFCONV_SUCCESS;
}

} // namespace pdfconv
} // namespace saphnet
