// The PDF (modulated deformable convolution) sampling maths, written once for the CUDA
// kernels and the host implementation. It is exactly the rule of the PyTorch reference
// (saphnet/ops/pdf_conv.py `_sample_tap`), of torchvision's deform_conv2d and of ONNX
// DeformConv: the sample point of output pixel (oy, ox) and tap (ky, kx) is
//     sy = oy * stride_h - pad_top  + ky * dilation_h + offset[2k]
//     sx = ox * stride_w - pad_left + kx * dilation_w + offset[2k + 1]
// and each of its four bilinear corners contributes only when it lies inside the image.
// The tap's modulation (the per-pixel kernel V = mask) is folded into the corner weights,
// so one (pixel, tap) costs one evaluation of pdfTapCorners whatever the channel count.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define PDF_HD __host__ __device__ __forceinline__
#else
#define PDF_HD inline
#endif

namespace saphnet
{
namespace pdfconv
{

//! The four bilinear corners of one sample: pixel indices (y * W + x) into one channel
//! plane and their weights with the mask folded in. A corner outside the image has
//! index 0 and weight 0, so every load stays in bounds and needs no branch.
struct TapCorners
{
    int32_t index[4];
    float weight[4];
};

//! Sample coordinate along one axis (row or column) in float32, as the reference does.
PDF_HD float pdfSamplePosition(int32_t out, int32_t stride, int32_t pad, int32_t tap, int32_t dilation, float offset)
{
    return static_cast<float>(out * stride - pad + tap * dilation) + offset;
}

//! Corners and weights of the bilinear sample at (sy, sx) in an H x W image, scaled by mask.
PDF_HD TapCorners pdfTapCorners(float sy, float sx, int32_t height, int32_t width, float mask)
{
    TapCorners corners;
    float const fy = floorf(sy);
    float const fx = floorf(sx);
    float const ly = sy - fy;
    float const lx = sx - fx;
    // Samples far outside would overflow int32 on the cast; clamp them to a value that is
    // still outside so all four corners fall out of the image.
    float const limit = 1.0e9f;
    int32_t const y0 = static_cast<int32_t>(fminf(fmaxf(fy, -limit), limit));
    int32_t const x0 = static_cast<int32_t>(fminf(fmaxf(fx, -limit), limit));
    float const wy[2] = {1.0f - ly, ly};
    float const wx[2] = {1.0f - lx, lx};
    for (int32_t c = 0; c < 4; ++c)
    {
        int32_t const dy = c >> 1;
        int32_t const dx = c & 1;
        int32_t const y = y0 + dy;
        int32_t const x = x0 + dx;
        bool const inside = y >= 0 && y < height && x >= 0 && x < width;
        corners.index[c] = inside ? y * width + x : 0;
        corners.weight[c] = inside ? wy[dy] * wx[dx] * mask : 0.0f;
    }
    return corners;
}

//! Output extent along one axis, with the Conv2d / ONNX DeformConv formula (pads may be
//! asymmetric, as in ONNX: begin + end). Returns <= 0 when the input is too small.
PDF_HD int32_t pdfOutputExtent(int32_t in, int32_t kernel, int32_t stride, int32_t padBegin, int32_t padEnd,
    int32_t dilation)
{
    int32_t const span = dilation * (kernel - 1) + 1;
    int32_t const padded = in + padBegin + padEnd;
    return padded < span ? 0 : (padded - span) / stride + 1;
}

} // namespace pdfconv
} // namespace saphnet
