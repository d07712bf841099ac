// Host (CPU) implementation of PDFConv: the same sampling maths as the CUDA kernels
// (pdfconv_math.h), FP32 accumulation, float32 or float16 tensors. CPU-only CI tests the
// library's maths through this path.
#include "pdfconv_internal.h"
#include "pdfconv_math.h"

#include <cstring>
#include <vector>

namespace saphnet
{
namespace pdfconv
{
namespace
{

//! IEEE binary16 bits to float (subnormals, infinities and NaN included).
float halfToFloat(uint16_t h)
{
    uint32_t const sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t const exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1fu)
    {
        bits = sign | 0x7f800000u | (mantissa << 13);
    }
    else if (exponent != 0)
    {
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    }
    else if (mantissa == 0)
    {
        bits = sign;
    }
    else
    {
        int32_t e = -1;
        do
        {
            ++e;
            mantissa <<= 1;
        } while ((mantissa & 0x400u) == 0);
        bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
}

//! float to IEEE binary16 bits, rounding to nearest even (as __float2half_rn).
uint16_t floatToHalf(float value)
{
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    uint32_t const sign = (bits >> 16) & 0x8000u;
    uint32_t const exponent = (bits >> 23) & 0xffu;
    uint32_t mantissa = bits & 0x7fffffu;
    if (exponent == 0xffu)
    {
        return static_cast<uint16_t>(sign | 0x7c00u | (mantissa != 0 ? 0x200u : 0u));
    }
    int32_t const e = static_cast<int32_t>(exponent) - 127 + 15;
    if (e >= 0x1f)
    {
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    if (e <= 0)
    {
        if (e < -10)
        {
            return static_cast<uint16_t>(sign);
        }
        mantissa |= 0x800000u;
        uint32_t const shift = static_cast<uint32_t>(14 - e);
        uint32_t half = mantissa >> shift;
        uint32_t const rest = mantissa & ((1u << shift) - 1u);
        uint32_t const halfway = 1u << (shift - 1u);
        if (rest > halfway || (rest == halfway && (half & 1u) != 0))
        {
            ++half;
        }
        return static_cast<uint16_t>(sign | half);
    }
    uint32_t half = (static_cast<uint32_t>(e) << 10) | (mantissa >> 13);
    uint32_t const rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u) != 0))
    {
        ++half; // may carry into the exponent, which is the correct rounding (up to inf)
    }
    return static_cast<uint16_t>(sign | half);
}

std::vector<float> toFloat(void const* data, std::size_t count, int32_t dtype)
{
    std::vector<float> out(count);
    if (dtype == PDFCONV_FLOAT32)
    {
        std::memcpy(out.data(), data, count * sizeof(float));
    }
    else
    {
        auto const* h = static_cast<uint16_t const*>(data);
        for (std::size_t i = 0; i < count; ++i)
        {
            out[i] = halfToFloat(h[i]);
        }
    }
    return out;
}

void store(void* data, std::size_t index, float value, int32_t dtype)
{
    if (dtype == PDFCONV_FLOAT32)
    {
        static_cast<float*>(data)[index] = value;
    }
    else
    {
        static_cast<uint16_t*>(data)[index] = floatToHalf(value);
    }
}

} // namespace

void forwardHost(PdfConvParams const& p, int32_t outHeight, int32_t outWidth, void const* xData,
    void const* offsetData, void const* maskData, void const* weightData, void const* biasData, void* yData)
{
    bool const nhwc = p.layout == PDFCONV_LAYOUT_NHWC8;
    int32_t const taps = p.kernel_h * p.kernel_w;
    std::size_t const plane = static_cast<std::size_t>(p.in_height) * p.in_width;
    std::size_t const pixels = static_cast<std::size_t>(outHeight) * outWidth;
    int32_t const inStride = channelStride(p.in_channels, p.layout);
    int32_t const outStride = channelStride(p.out_channels, p.layout);

    std::vector<float> const x = toFloat(xData, static_cast<std::size_t>(p.batch) * inStride * plane, p.dtype);
    std::vector<float> const offset
        = toFloat(offsetData, static_cast<std::size_t>(p.batch) * 2 * taps * pixels, p.offset_dtype);
    std::vector<float> const mask = toFloat(maskData, static_cast<std::size_t>(p.batch) * taps * pixels, p.mask_dtype);
    std::vector<float> const weight
        = toFloat(weightData, static_cast<std::size_t>(p.out_channels) * p.in_channels * taps, p.dtype);
    std::vector<float> bias(static_cast<std::size_t>(p.out_channels), 0.0f);
    if (biasData != nullptr)
    {
        bias = toFloat(biasData, bias.size(), p.dtype);
    }
    // Weights as [tap][c_in][c_out] so the innermost loop over output channels is contiguous.
    std::vector<float> wt(weight.size());
    for (int32_t o = 0; o < p.out_channels; ++o)
    {
        for (int32_t c = 0; c < p.in_channels; ++c)
        {
            for (int32_t k = 0; k < taps; ++k)
            {
                wt[(static_cast<std::size_t>(k) * p.in_channels + c) * p.out_channels + o]
                    = weight[(static_cast<std::size_t>(o) * p.in_channels + c) * taps + k];
            }
        }
    }

    std::vector<float> acc(static_cast<std::size_t>(p.out_channels));
    for (int32_t n = 0; n < p.batch; ++n)
    {
        float const* xn = x.data() + static_cast<std::size_t>(n) * inStride * plane;
        for (std::size_t pix = 0; pix < pixels; ++pix)
        {
            int32_t const oy = static_cast<int32_t>(pix / static_cast<std::size_t>(outWidth));
            int32_t const ox = static_cast<int32_t>(pix % static_cast<std::size_t>(outWidth));
            acc = bias;
            for (int32_t k = 0; k < taps; ++k)
            {
                std::size_t const offsetAt = (static_cast<std::size_t>(n) * 2 * taps + 2 * k) * pixels + pix;
                float const m = mask[(static_cast<std::size_t>(n) * taps + k) * pixels + pix];
                float const sy = pdfSamplePosition(oy, p.stride_h, p.pad_top, k / p.kernel_w, p.dilation_h, offset[offsetAt]);
                float const sx
                    = pdfSamplePosition(ox, p.stride_w, p.pad_left, k % p.kernel_w, p.dilation_w, offset[offsetAt + pixels]);
                TapCorners const corners = pdfTapCorners(sy, sx, p.in_height, p.in_width, m);
                for (int32_t c = 0; c < p.in_channels; ++c)
                {
                    float v = 0.0f;
                    for (int32_t q = 0; q < 4; ++q)
                    {
                        std::size_t const at = nhwc
                            ? static_cast<std::size_t>(corners.index[q]) * inStride + c
                            : static_cast<std::size_t>(c) * plane + corners.index[q];
                        v += corners.weight[q] * xn[at];
                    }
                    if (v == 0.0f)
                    {
                        continue;
                    }
                    float const* w = wt.data() + (static_cast<std::size_t>(k) * p.in_channels + c) * p.out_channels;
                    for (int32_t o = 0; o < p.out_channels; ++o)
                    {
                        acc[o] += w[o] * v;
                    }
                }
            }
            for (int32_t o = 0; o < outStride; ++o)
            {
                float const value = o < p.out_channels ? acc[o] : 0.0f;
                std::size_t const at = nhwc ? (static_cast<std::size_t>(n) * pixels + pix) * outStride + o
                                            : (static_cast<std::size_t>(n) * p.out_channels + o) * pixels + pix;
                store(yData, at, value, p.dtype);
            }
        }
    }
}

} // namespace pdfconv
} // namespace saphnet
