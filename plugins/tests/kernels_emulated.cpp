// Runs the CUDA kernels' own source (pdfconv_kernels.cuh) on the CPU under
// cuda_emulation.h and compares them with the host implementation, for shapes with tails in
// every tile dimension, odd and even kernels, strides, dilations, asymmetric pads, NCHW and
// NHWC8 (with garbage in the padding channels), float32 and float16 offsets. It checks the
// kernels' indexing, tiling, pipelining and barriers where no GPU is available; a GPU run
// (tests/test_plugin_cuda.py) checks the real hardware. Exit status 0 when all cases agree.
#include "cuda_emulation.h"

#include "pdfconv_kernels.cuh"

#include <cmath>
#include <random>
#include <string>

using namespace saphnet::pdfconv;
using namespace saphnet::pdfconv::kernels;

namespace
{

struct Case
{
    PdfConvParams params;
    char const* name;
};

std::vector<__half> toHalf(std::vector<float> const& values)
{
    std::vector<__half> out(values.size());
    for (size_t i = 0; i < values.size(); ++i)
    {
        out[i] = __float2half_rn(values[i]);
    }
    return out;
}

template <typename T>
double maxError(std::vector<T> const& got, std::vector<T> const& expected, double& scale)
{
    double error = 0.0;
    scale = 0.0;
    for (size_t i = 0; i < got.size(); ++i)
    {
        double const e = static_cast<float>(expected[i]);
        scale = std::max(scale, std::fabs(e));
        double const d = std::fabs(static_cast<double>(static_cast<float>(got[i])) - e);
        error = std::isnan(d) ? INFINITY : std::max(error, d);
    }
    return error;
}

//! The fused kernel as forwardCuda launches it: pack weights, NHWC8 copy of an NCHW x, fuse.
void runFused(PdfConvParams const& p, KernelGeometry const& g, __half const* x, void const* offset,
    __half const* mask, __half const* weight, __half const* bias, __half* y)
{
    int32_t const packedM = (p.out_channels + kTileM - 1) / kTileM * kTileM;
    int32_t const packedK = (p.in_channels + kTileK - 1) / kTileK * kTileK;
    std::vector<__half> packed(static_cast<size_t>(g.taps) * packedM * packedK + 16);
    __half* const pk = packed.data() + (16 - reinterpret_cast<uintptr_t>(packed.data()) % 32 / 2) % 16;
    emulateLaunch(dim3(4), dim3(256),
        [&] { packWeightsKernel(weight, pk, p.out_channels, p.in_channels, g.taps, packedM, packedK); });
    KernelGeometry fused = g;
    std::vector<__half> copy;
    if (p.layout == PDFCONV_LAYOUT_NCHW)
    {
        fused.inStride = channelStride(p.in_channels, PDFCONV_LAYOUT_NHWC8);
        int32_t const pixels = p.in_height * p.in_width;
        copy.assign(static_cast<size_t>(p.batch) * pixels * fused.inStride, __float2half(-5.0f));
        emulateLaunch(dim3((pixels + 31) / 32, (fused.inStride + 31) / 32, p.batch), dim3(32, 8),
            [&] { toNhwc8Kernel(x, copy.data(), p.in_channels, pixels, fused.inStride); });
        x = copy.data();
    }
    int32_t const pixels = g.outHeight * g.outWidth;
    emulateLaunch(dim3((pixels + kTileN - 1) / kTileN, packedM / kTileM, p.batch), dim3(kFusedThreads), [&] {
        if (p.layout == PDFCONV_LAYOUT_NHWC8)
        {
            pdfFusedKernel<true>(fused, x, offset, mask, pk, packedM, packedK, bias, y);
        }
        else
        {
            pdfFusedKernel<false>(fused, x, offset, mask, pk, packedM, packedK, bias, y);
        }
    });
}

template <typename T>
void runDirect(PdfConvParams const& p, KernelGeometry const& g, T const* x, void const* offset, void const* mask,
    T const* weight, T const* bias, T* y)
{
    bool const nhwc = p.layout == PDFCONV_LAYOUT_NHWC8;
    int32_t const pixels = g.outHeight * g.outWidth;
    int32_t const channels = nhwc ? g.outStride : g.outChannels;
    emulateLaunch(dim3((pixels + kDirectThreads - 1) / kDirectThreads,
                      (channels + kDirectChannels - 1) / kDirectChannels, p.batch),
        dim3(kDirectThreads), [&] {
            if (nhwc)
            {
                pdfDirectKernel<T, true>(g, x, offset, mask, weight, bias, y);
            }
            else
            {
                pdfDirectKernel<T, false>(g, x, offset, mask, weight, bias, y);
            }
        });
}

bool runCase(Case const& c, uint32_t seed)
{
    PdfConvParams const& p = c.params;
    int32_t outHeight = 0;
    int32_t outWidth = 0;
    std::string message;
    if (checkParams(p, outHeight, outWidth, message) != PDFCONV_SUCCESS)
    {
        std::printf("FAIL %s: %s\n", c.name, message.c_str());
        return false;
    }
    int32_t const taps = p.kernel_h * p.kernel_w;
    size_t const pixels = static_cast<size_t>(outHeight) * outWidth;
    int32_t const inStride = channelStride(p.in_channels, p.layout);
    int32_t const outStride = channelStride(p.out_channels, p.layout);
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<float> shift(-3.0f, 3.0f);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(p.batch) * inStride * p.in_height * p.in_width);
    std::vector<float> offset(static_cast<size_t>(p.batch) * 2 * taps * pixels);
    std::vector<float> mask(static_cast<size_t>(p.batch) * taps * pixels);
    std::vector<float> weight(static_cast<size_t>(p.out_channels) * p.in_channels * taps);
    std::vector<float> bias(static_cast<size_t>(p.out_channels));
    for (size_t i = 0; i < x.size(); ++i)
    {
        bool const padding = p.layout == PDFCONV_LAYOUT_NHWC8 && static_cast<int32_t>(i % inStride) >= p.in_channels;
        x[i] = padding ? 1.0e4f : normal(rng); // kHWC8 padding may hold anything
    }
    for (float& v : offset)
    {
        v = shift(rng);
    }
    for (float& v : mask)
    {
        v = unit(rng);
    }
    for (float& v : weight)
    {
        v = normal(rng) / std::sqrt(static_cast<float>(p.in_channels * taps));
    }
    for (float& v : bias)
    {
        v = normal(rng);
    }
    std::vector<__half> const xh = toHalf(x);
    std::vector<__half> const offsetHalf = toHalf(offset);
    std::vector<__half> const maskHalf = toHalf(mask);
    std::vector<__half> const weightHalf = toHalf(weight);
    std::vector<__half> const biasHalf = toHalf(bias);
    void const* const offsetData
        = p.offset_dtype == PDFCONV_FLOAT16 ? static_cast<void const*>(offsetHalf.data()) : offset.data();
    KernelGeometry const g = geometryOf(p, outHeight, outWidth);
    size_t const outCount = static_cast<size_t>(p.batch) * outStride * pixels;

    // float16: fused and direct against the host build on the same float16 inputs.
    std::vector<__half> expected(outCount);
    std::vector<__half> fused(outCount, __float2half(7.0f));
    std::vector<__half> direct(outCount, __float2half(7.0f));
    forwardHost(p, outHeight, outWidth, xh.data(), offsetData, maskHalf.data(), weightHalf.data(), biasHalf.data(),
        expected.data());
    runFused(p, g, xh.data(), offsetData, maskHalf.data(), weightHalf.data(), biasHalf.data(), fused.data());
    runDirect(p, g, xh.data(), offsetData, maskHalf.data(), weightHalf.data(), biasHalf.data(), direct.data());
    double scale = 0.0;
    double const fusedError = maxError(fused, expected, scale) / scale;
    double const directError = maxError(direct, expected, scale) / scale;
    // The fused kernel rounds each modulated sample to float16 before the MMA (as the
    // PyTorch reference does in float16); the direct kernel rounds only its output.
    bool ok = fusedError <= 2e-3 && directError <= 1e-3;

    // float32 (direct kernel, NCHW only as in the C API's float32 path).
    double floatError = 0.0;
    if (p.layout == PDFCONV_LAYOUT_NCHW)
    {
        PdfConvParams p32 = p;
        p32.dtype = PDFCONV_FLOAT32;
        p32.mask_dtype = PDFCONV_FLOAT32;
        std::vector<float> expected32(outCount);
        std::vector<float> got32(outCount, 7.0f);
        forwardHost(p32, outHeight, outWidth, x.data(), offsetData, mask.data(), weight.data(), bias.data(),
            expected32.data());
        KernelGeometry const g32 = geometryOf(p32, outHeight, outWidth);
        runDirect(p32, g32, x.data(), offsetData, mask.data(), weight.data(), bias.data(), got32.data());
        floatError = maxError(got32, expected32, scale) / scale;
        ok = ok && floatError <= 1e-5;
    }
    std::printf("%s %-44s fused16 %.2e direct16 %.2e direct32 %.2e\n", ok ? "ok  " : "FAIL", c.name, fusedError,
        directError, floatError);
    return ok;
}

PdfConvParams params(int32_t n, int32_t cin, int32_t cout, int32_t h, int32_t w, int32_t kh, int32_t kw,
    int32_t sh, int32_t sw, int32_t pt, int32_t pl, int32_t pb, int32_t pr, int32_t dh, int32_t dw, int32_t layout,
    int32_t offsetType)
{
    return PdfConvParams{n, cin, h, w, cout, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, PDFCONV_FLOAT16, offsetType,
        PDFCONV_FLOAT16, layout};
}

} // namespace

int main()
{
    constexpr int32_t kNCHW = PDFCONV_LAYOUT_NCHW;
    constexpr int32_t kNHWC8 = PDFCONV_LAYOUT_NHWC8;
    constexpr int32_t k32 = PDFCONV_FLOAT32;
    constexpr int32_t k16 = PDFCONV_FLOAT16;
    Case const cases[] = {
        {params(1, 40, 130, 11, 13, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, kNCHW, k32), "c40->130 11x13 k5 p2 NCHW"},
        {params(1, 128, 128, 12, 12, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, kNCHW, k32), "c128->128 12x12 k5 p2 NCHW"},
        {params(1, 128, 128, 9, 12, 5, 5, 1, 1, 2, 2, 2, 2, 1, 1, kNHWC8, k32), "c128->128 9x12 k5 p2 NHWC8"},
        {params(2, 16, 24, 9, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, kNHWC8, k16), "n2 c16->24 k3 NHWC8 offset16"},
        {params(1, 7, 5, 13, 11, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, kNCHW, k16), "c7->5 k3 s2 NCHW offset16"},
        {params(1, 33, 9, 10, 14, 3, 5, 1, 2, 1, 2, 0, 1, 2, 1, kNHWC8, k32), "c33->9 k3x5 s1,2 pads1,2,0,1 d2,1 NHWC8"},
        {params(2, 64, 128, 8, 9, 2, 2, 1, 1, 0, 0, 0, 0, 2, 2, kNCHW, k32), "n2 c64->128 k2 d2 NCHW"},
        {params(1, 13, 3, 6, 7, 9, 1, 1, 1, 4, 0, 4, 0, 1, 1, kNCHW, k32), "c13->3 k9x1 NCHW"},
        {params(1, 300, 20, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, kNCHW, k32), "c300->20 k3 NCHW (direct chunks)"},
        {params(1, 300, 20, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, kNHWC8, k16), "c300->20 k3 NHWC8 (direct chunks)"},
    };
    bool ok = true;
    uint32_t seed = 1;
    for (Case const& c : cases)
    {
        ok = runCase(c, seed++) && ok;
    }
    std::printf(ok ? "all kernels agree with the host build\n" : "KERNEL MISMATCH\n");
    return ok ? 0 : 1;
}
