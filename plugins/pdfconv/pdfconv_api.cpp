// The C API: argument checks with messages that name the sizes, then the host
// implementation or the CUDA launcher. Nothing here throws across the C boundary.
#include "pdfconv_api.h"
#include "pdfconv_internal.h"
#include "pdfconv_math.h"

#include <climits>
#include <exception>
#include <string>

namespace saphnet
{
namespace pdfconv
{
namespace
{

thread_local std::string tLastError;

bool validType(int32_t dtype)
{
    return dtype == PDFCONV_FLOAT32 || dtype == PDFCONV_FLOAT16;
}

std::string shapeText(PdfConvParams const& p)
{
    return "x (" + std::to_string(p.batch) + ", " + std::to_string(p.in_channels) + ", "
        + std::to_string(p.in_height) + ", " + std::to_string(p.in_width) + "), weight ("
        + std::to_string(p.out_channels) + ", " + std::to_string(p.in_channels) + ", " + std::to_string(p.kernel_h)
        + ", " + std::to_string(p.kernel_w) + ")";
}

int32_t fail(int32_t status, std::string const& message)
{
    setLastError(message);
    return status;
}

} // namespace

void setLastError(std::string const& message)
{
    tLastError = message;
}

int32_t channelStride(int32_t channels, int32_t layout)
{
    return layout == PDFCONV_LAYOUT_NHWC8 ? (channels + 7) / 8 * 8 : channels;
}

int32_t checkParams(PdfConvParams const& p, int32_t& outHeight, int32_t& outWidth, std::string& message)
{
    if (p.batch < 1 || p.in_channels < 1 || p.in_height < 1 || p.in_width < 1 || p.out_channels < 1
        || p.kernel_h < 1 || p.kernel_w < 1)
    {
        message = "pdfconv: every size must be >= 1, got " + shapeText(p);
        return PDFCONV_INVALID_ARGUMENT;
    }
    if (p.stride_h < 1 || p.stride_w < 1 || p.dilation_h < 1 || p.dilation_w < 1 || p.pad_top < 0
        || p.pad_left < 0 || p.pad_bottom < 0 || p.pad_right < 0)
    {
        message = "pdfconv: strides and dilations must be >= 1 and pads >= 0, got strides ("
            + std::to_string(p.stride_h) + ", " + std::to_string(p.stride_w) + "), dilations ("
            + std::to_string(p.dilation_h) + ", " + std::to_string(p.dilation_w) + "), pads ("
            + std::to_string(p.pad_top) + ", " + std::to_string(p.pad_left) + ", " + std::to_string(p.pad_bottom)
            + ", " + std::to_string(p.pad_right) + ")";
        return PDFCONV_INVALID_ARGUMENT;
    }
    if (!validType(p.dtype) || !validType(p.offset_dtype) || !validType(p.mask_dtype))
    {
        message = "pdfconv: dtype, offset_dtype and mask_dtype must be 0 (float32) or 1 (float16), got "
            + std::to_string(p.dtype) + ", " + std::to_string(p.offset_dtype) + ", " + std::to_string(p.mask_dtype);
        return PDFCONV_UNSUPPORTED;
    }
    if (p.layout != PDFCONV_LAYOUT_NCHW && p.layout != PDFCONV_LAYOUT_NHWC8)
    {
        message = "pdfconv: layout must be 0 (NCHW) or 1 (NHWC8), got " + std::to_string(p.layout);
        return PDFCONV_UNSUPPORTED;
    }
    // pdfOutputExtent and the sample positions add pads and dilated taps in int32.
    long long const paddedH = static_cast<long long>(p.in_height) + p.pad_top + p.pad_bottom;
    long long const paddedW = static_cast<long long>(p.in_width) + p.pad_left + p.pad_right;
    long long const spanH = static_cast<long long>(p.dilation_h) * (p.kernel_h - 1) + 1;
    long long const spanW = static_cast<long long>(p.dilation_w) * (p.kernel_w - 1) + 1;
    if (paddedH > INT_MAX || paddedW > INT_MAX || spanH > INT_MAX || spanW > INT_MAX)
    {
        message = "pdfconv: the padded input (" + std::to_string(paddedH) + " x " + std::to_string(paddedW)
            + ") and the dilated kernel (" + std::to_string(spanH) + " x " + std::to_string(spanW)
            + ") must each be below 2^31 along an axis; lower the pads or dilations";
        return PDFCONV_INVALID_ARGUMENT;
    }
    outHeight = pdfOutputExtent(p.in_height, p.kernel_h, p.stride_h, p.pad_top, p.pad_bottom, p.dilation_h);
    outWidth = pdfOutputExtent(p.in_width, p.kernel_w, p.stride_w, p.pad_left, p.pad_right, p.dilation_w);
    if (outHeight < 1 || outWidth < 1)
    {
        message = "pdfconv: input " + std::to_string(p.in_height) + "x" + std::to_string(p.in_width)
            + " is too small for a " + std::to_string(p.kernel_h) + "x" + std::to_string(p.kernel_w)
            + " kernel with these pads, strides and dilations (" + shapeText(p) + ")";
        return PDFCONV_INVALID_ARGUMENT;
    }
    // Kernels index within one tensor with 32-bit plane offsets; keep every tensor below 2^31 elements.
    long long const taps = static_cast<long long>(p.kernel_h) * p.kernel_w;
    long long const pixels = static_cast<long long>(outHeight) * outWidth;
    long long const largest[] = {
        static_cast<long long>(p.batch) * channelStride(p.in_channels, p.layout) * p.in_height * p.in_width,
        static_cast<long long>(p.batch) * channelStride(p.out_channels, p.layout) * pixels,
        static_cast<long long>(p.batch) * 2 * taps * pixels,
        static_cast<long long>(p.out_channels) * p.in_channels * taps,
    };
    for (long long const count : largest)
    {
        if (count > INT_MAX)
        {
            message = "pdfconv: a tensor has " + std::to_string(count) + " elements, more than the 2^31 - 1 supported ("
                + shapeText(p) + "); split the batch or tile the image";
            return PDFCONV_INVALID_ARGUMENT;
        }
    }
    return PDFCONV_SUCCESS;
}

int32_t resolveAlgo(PdfConvParams const& p, int32_t requested, int32_t& algo, std::string& message)
{
    if (requested == PDFCONV_ALGO_AUTO)
    {
        algo = p.dtype == PDFCONV_FLOAT16 ? PDFCONV_ALGO_FUSED : PDFCONV_ALGO_DIRECT;
        return PDFCONV_SUCCESS;
    }
    if (requested != PDFCONV_ALGO_DIRECT && requested != PDFCONV_ALGO_FUSED)
    {
        message = "pdfconv: algo must be 0 (auto), 1 (direct) or 2 (fused), got " + std::to_string(requested);
        return PDFCONV_UNSUPPORTED;
    }
    if (requested == PDFCONV_ALGO_FUSED && p.dtype != PDFCONV_FLOAT16)
    {
        message = "pdfconv: the fused tensor-core kernel takes float16 x and weight; use the direct kernel "
                  "(algo 1) or auto for float32";
        return PDFCONV_UNSUPPORTED;
    }
    algo = requested;
    return PDFCONV_SUCCESS;
}

namespace
{

//! The CUDA launch limits of the kernels that run for valid params and a resolved algo.
int32_t checkLaunchLimits(PdfConvParams const& p, int32_t algo, std::string& message)
{
    // Every kernel puts the batch on gridDim.z; the output (direct, fused) and input (NHWC8
    // copy) channel tiles on gridDim.y. Both are limited to 65535 blocks by CUDA; gridDim.x
    // (pixel tiles) cannot reach its 2^31 - 1 limit once checkParams has passed.
    long long constexpr kMaxGridYZ = 65535;
    if (p.batch > kMaxGridYZ)
    {
        message = "pdfconv: batch " + std::to_string(p.batch) + " exceeds the 65535 the CUDA kernels launch ("
            + shapeText(p) + "); split the batch";
        return PDFCONV_INVALID_ARGUMENT;
    }
    struct Tiles
    {
        char const* what;
        long long channels;
        long long perBlock;
    };
    Tiles tiles[2] = {{"output channels", channelStride(p.out_channels, p.layout), kDirectTileChannels},
        {nullptr, 0, 1}};
    if (algo == PDFCONV_ALGO_FUSED)
    {
        tiles[0] = {"output channels", p.out_channels, kFusedTileM};
        if (p.layout == PDFCONV_LAYOUT_NCHW)
        {
            tiles[1] = {"input channels", channelStride(p.in_channels, PDFCONV_LAYOUT_NHWC8), kNhwc8TileChannels};
        }
    }
    for (Tiles const& t : tiles)
    {
        if (t.what != nullptr && (t.channels + t.perBlock - 1) / t.perBlock > kMaxGridYZ)
        {
            message = std::string("pdfconv: ") + std::to_string(t.channels) + " " + t.what + " need more than the "
                + std::to_string(kMaxGridYZ * t.perBlock) + " the CUDA kernels launch (" + shapeText(p) + ")";
            return PDFCONV_INVALID_ARGUMENT;
        }
    }
    return PDFCONV_SUCCESS;
}

} // namespace

int32_t planForward(PdfConvParams const& p, int32_t requested, int32_t& outHeight, int32_t& outWidth,
    int32_t& algo, std::string& message)
{
    int32_t status = checkParams(p, outHeight, outWidth, message);
    if (status == PDFCONV_SUCCESS)
    {
        status = resolveAlgo(p, requested, algo, message);
    }
    return status == PDFCONV_SUCCESS ? checkLaunchLimits(p, algo, message) : status;
}

std::size_t packedWeightBytes(PdfConvParams const& p)
{
    // float16 [tap][C_out padded to the M tile][C_in padded to the K tile]
    std::size_t const packedM = static_cast<std::size_t>((p.out_channels + kFusedTileM - 1) / kFusedTileM) * kFusedTileM;
    std::size_t const packedK = static_cast<std::size_t>((p.in_channels + kFusedTileK - 1) / kFusedTileK) * kFusedTileK;
    std::size_t const bytes = static_cast<std::size_t>(p.kernel_h) * p.kernel_w * packedM * packedK * 2;
    return (bytes + 255) / 256 * 256;
}

std::size_t workspaceBytes(PdfConvParams const& p, int32_t algo)
{
    if (algo != PDFCONV_ALGO_FUSED)
    {
        return 0;
    }
    std::size_t bytes = packedWeightBytes(p);
    if (p.layout == PDFCONV_LAYOUT_NCHW)
    {
        std::size_t const copy = static_cast<std::size_t>(p.batch) * p.in_height * p.in_width
            * channelStride(p.in_channels, PDFCONV_LAYOUT_NHWC8) * 2;
        bytes += (copy + 255) / 256 * 256;
    }
    return bytes;
}

} // namespace pdfconv
} // namespace saphnet

using namespace saphnet::pdfconv;

extern "C" {

int32_t pdfconv_version(void)
{
    return PDFCONV_VERSION;
}

int32_t pdfconv_has_cuda(void)
{
#if defined(SAPHNET_WITH_CUDA)
    return 1;
#else
    return 0;
#endif
}

int32_t pdfconv_has_tensorrt(void)
{
#if defined(SAPHNET_WITH_TENSORRT)
    return 1;
#else
    return 0;
#endif
}

int32_t pdfconv_output_shape(PdfConvParams const* params, int32_t* out_height, int32_t* out_width)
{
    if (params == nullptr || out_height == nullptr || out_width == nullptr)
    {
        return fail(PDFCONV_INVALID_ARGUMENT, "pdfconv_output_shape: params, out_height and out_width must not be NULL");
    }
    try
    {
        std::string message;
        int32_t const status = checkParams(*params, *out_height, *out_width, message);
        return status == PDFCONV_SUCCESS ? status : fail(status, message);
    }
    catch (std::exception const& e)
    {
        return fail(PDFCONV_INVALID_ARGUMENT, std::string("pdfconv_output_shape: ") + e.what());
    }
}

int32_t pdfconv_workspace_size(PdfConvParams const* params, int32_t algo, size_t* bytes)
{
    if (params == nullptr || bytes == nullptr)
    {
        return fail(PDFCONV_INVALID_ARGUMENT, "pdfconv_workspace_size: params and bytes must not be NULL");
    }
    try
    {
        std::string message;
        int32_t outHeight = 0;
        int32_t outWidth = 0;
        int32_t resolved = 0;
        int32_t status = planForward(*params, algo, outHeight, outWidth, resolved, message);
        if (status != PDFCONV_SUCCESS)
        {
            return fail(status, message);
        }
        *bytes = workspaceBytes(*params, resolved);
        return PDFCONV_SUCCESS;
    }
    catch (std::exception const& e)
    {
        return fail(PDFCONV_INVALID_ARGUMENT, std::string("pdfconv_workspace_size: ") + e.what());
    }
}

int32_t pdfconv_forward_host(PdfConvParams const* params, void const* x, void const* offset, void const* mask,
    void const* weight, void const* bias, void* y)
{
    if (params == nullptr || x == nullptr || offset == nullptr || mask == nullptr || weight == nullptr || y == nullptr)
    {
        return fail(PDFCONV_INVALID_ARGUMENT,
            "pdfconv_forward_host: params, x, offset, mask, weight and y must not be NULL (bias may be)");
    }
    try
    {
        std::string message;
        int32_t outHeight = 0;
        int32_t outWidth = 0;
        int32_t const status = checkParams(*params, outHeight, outWidth, message);
        if (status != PDFCONV_SUCCESS)
        {
            return fail(status, message);
        }
        forwardHost(*params, outHeight, outWidth, x, offset, mask, weight, bias, y);
        return PDFCONV_SUCCESS;
    }
    catch (std::exception const& e) // std::bad_alloc for huge tensors
    {
        return fail(PDFCONV_INVALID_ARGUMENT, std::string("pdfconv_forward_host: ") + e.what());
    }
}

int32_t pdfconv_forward_cuda(PdfConvParams const* params, int32_t algo, void const* x, void const* offset,
    void const* mask, void const* weight, void const* bias, void* y, void* workspace, size_t workspace_bytes,
    void* stream)
{
#if defined(SAPHNET_WITH_CUDA)
    if (params == nullptr || x == nullptr || offset == nullptr || mask == nullptr || weight == nullptr || y == nullptr)
    {
        return fail(PDFCONV_INVALID_ARGUMENT,
            "pdfconv_forward_cuda: params, x, offset, mask, weight and y must not be NULL (bias may be)");
    }
    try
    {
        std::string message;
        int32_t outHeight = 0;
        int32_t outWidth = 0;
        int32_t resolved = 0;
        int32_t status = planForward(*params, algo, outHeight, outWidth, resolved, message);
        if (status != PDFCONV_SUCCESS)
        {
            return fail(status, message);
        }
        std::size_t const needed = workspaceBytes(*params, resolved);
        if (workspace_bytes < needed || (needed > 0 && workspace == nullptr))
        {
            return fail(PDFCONV_WORKSPACE_TOO_SMALL,
                "pdfconv_forward_cuda: the workspace has " + std::to_string(workspace_bytes) + " bytes but "
                    + std::to_string(needed) + " are needed; size it with pdfconv_workspace_size");
        }
        status = checkDevice(x, message);
        if (status != PDFCONV_SUCCESS)
        {
            return fail(status, message);
        }
        status = forwardCuda(*params, outHeight, outWidth, resolved, x, offset, mask, weight, bias, y, workspace,
            stream, message);
        return status == PDFCONV_SUCCESS ? status : fail(status, message);
    }
    catch (std::exception const& e)
    {
        return fail(PDFCONV_CUDA_ERROR, std::string("pdfconv_forward_cuda: ") + e.what());
    }
#else
    (void) params;
    (void) algo;
    (void) x;
    (void) offset;
    (void) mask;
    (void) weight;
    (void) bias;
    (void) y;
    (void) workspace;
    (void) workspace_bytes;
    (void) stream;
    return fail(PDFCONV_NO_CUDA,
        "pdfconv_forward_cuda: this libsaphnet_plugins.so was built without CUDA; rebuild with nvcc on PATH "
        "(make plugins)");
#endif
}

char const* pdfconv_last_error(void)
{
    return tLastError.c_str();
}

char const* pdfconv_status_string(int32_t status)
{
    switch (status)
    {
    case PDFCONV_SUCCESS: return "success";
    case PDFCONV_INVALID_ARGUMENT: return "invalid argument";
    case PDFCONV_UNSUPPORTED: return "unsupported";
    case PDFCONV_CUDA_ERROR: return "CUDA error";
    case PDFCONV_NO_CUDA: return "built without CUDA";
    case PDFCONV_WORKSPACE_TOO_SMALL: return "workspace too small";
    default: return "unknown status";
    }
}

} // extern "C"
