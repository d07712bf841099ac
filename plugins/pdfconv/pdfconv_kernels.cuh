// CUDA kernels of PDFConv (device code only; pdfconv_kernels.cu launches them, and
// plugins/tests/ runs this same source on the CPU under a small CUDA emulation).
//
// pdfDirectKernel: the correctness baseline and the float32 path. One thread per output
//   pixel and 16 output channels; the tap's corners and weights are computed once and
//   reused for every input channel, the tap's filter weights staged in shared memory;
//   FP32 arithmetic.
// pdfFusedKernel: the deliverable for float16. An implicit GEMM
//     Y[C_out, pixels] = Wp[C_out, taps * C_in] x S[taps * C_in, pixels]
//   where S (the modulated bilinear samples, DESIGN.md §4) is never written to global
//   memory: corner indices and mask-folded weights are computed once per (pixel, tap) into
//   shared memory; each step gathers a 32-channel x 64-pixel slice of S for one tap from
//   channels-last x (one 16-byte load per corner and 8 channels) straight into shared
//   memory and multiplies it on tensor cores (WMMA m16n16k16, float16 in, FP32
//   accumulation) with the matching 128 x 32 slice of the repacked weights.
#pragma once

#include "pdfconv_internal.h"
#include "pdfconv_math.h"

#include <cuda_fp16.h>
#if defined(__CUDACC__)
#include <mma.h>
#endif

#include <cstdint>

namespace saphnet
{
namespace pdfconv
{
namespace kernels
{


//! Shapes as the kernels read them (by value, in constant parameter space).
struct KernelGeometry
{
    int32_t inChannels;
    int32_t inHeight;
    int32_t inWidth;
    int32_t outChannels;
    int32_t kernelW;
    int32_t taps;
    int32_t strideH;
    int32_t strideW;
    int32_t padTop;
    int32_t padLeft;
    int32_t dilationH;
    int32_t dilationW;
    int32_t outHeight;
    int32_t outWidth;
    int32_t inStride;  //!< channel stride of x in NHWC8 (channels padded to 8)
    int32_t outStride; //!< channel stride of y in NHWC8
    bool offsetHalf;
    bool maskHalf;
};

__device__ __forceinline__ float toFloat(float v)
{
    return v;
}

__device__ __forceinline__ float toFloat(__half v)
{
    return __half2float(v);
}

template <typename T>
__device__ __forceinline__ T fromFloat(float v);

template <>
__device__ __forceinline__ float fromFloat<float>(float v)
{
    return v;
}

template <>
__device__ __forceinline__ __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

__device__ __forceinline__ float loadAny(void const* data, int64_t index, bool isHalf)
{
    return isHalf ? __half2float(static_cast<__half const*>(data)[index]) : static_cast<float const*>(data)[index];
}

//! Corners of tap `tap` for output pixel `pix` of image `n` (offset and mask are NCHW).
__device__ __forceinline__ TapCorners tapCornersAt(
    KernelGeometry const& g, void const* offset, void const* mask, int32_t n, int32_t pix, int32_t tap)
{
    int64_t const pixels = static_cast<int64_t>(g.outHeight) * g.outWidth;
    int32_t const oy = pix / g.outWidth;
    int32_t const ox = pix - oy * g.outWidth;
    int32_t const ky = tap / g.kernelW;
    int32_t const kx = tap - ky * g.kernelW;
    int64_t const offsetAt = (static_cast<int64_t>(n) * 2 * g.taps + 2 * tap) * pixels + pix;
    float const dy = loadAny(offset, offsetAt, g.offsetHalf);
    float const dx = loadAny(offset, offsetAt + pixels, g.offsetHalf);
    float const m = loadAny(mask, (static_cast<int64_t>(n) * g.taps + tap) * pixels + pix, g.maskHalf);
    float const sy = pdfSamplePosition(oy, g.strideH, g.padTop, ky, g.dilationH, dy);
    float const sx = pdfSamplePosition(ox, g.strideW, g.padLeft, kx, g.dilationW, dx);
    return pdfTapCorners(sy, sx, g.inHeight, g.inWidth, m);
}

// ---------------------------------------------------------------------------------------
// Direct kernel
// ---------------------------------------------------------------------------------------

constexpr int32_t kDirectChannels = kDirectTileChannels; //!< output channels per thread
constexpr int32_t kDirectThreads = 128;
constexpr int32_t kDirectChunk = 256;        //!< input channels whose weights are staged at once
static_assert(kDirectChannels % 4 == 0, "weights are read from shared memory as float4");

template <typename T, bool kNHWC>
__global__ void __launch_bounds__(kDirectThreads) pdfDirectKernel(KernelGeometry g, T const* __restrict__ x,
    void const* __restrict__ offset, void const* __restrict__ mask, T const* __restrict__ weight,
    T const* __restrict__ bias, T* __restrict__ y)
{
    // The tap's weights for this block's 16 output channels, [c_in][16] as FP32, so that each
    // input channel costs four broadcast float4 reads instead of 16 global loads.
    __shared__ __align__(16) float sWeight[kDirectChunk * kDirectChannels];
    int32_t const pixels = g.outHeight * g.outWidth;
    int32_t const pixel = static_cast<int32_t>(blockIdx.x) * kDirectThreads + static_cast<int32_t>(threadIdx.x);
    bool const active = pixel < pixels; // the others help stage weights, then idle
    int32_t const pix = active ? pixel : pixels - 1;
    int32_t const co0 = static_cast<int32_t>(blockIdx.y) * kDirectChannels;
    int32_t const n = static_cast<int32_t>(blockIdx.z);
    int64_t const plane = static_cast<int64_t>(g.inHeight) * g.inWidth;
    T const* xn = x + static_cast<int64_t>(n) * (kNHWC ? g.inStride : g.inChannels) * plane;

    float acc[kDirectChannels];
#pragma unroll
    for (int32_t j = 0; j < kDirectChannels; ++j)
    {
        acc[j] = 0.0f;
    }
    for (int32_t tap = 0; tap < g.taps; ++tap)
    {
        TapCorners const c = tapCornersAt(g, offset, mask, n, pix, tap);
        for (int32_t c0 = 0; c0 < g.inChannels; c0 += kDirectChunk)
        {
            int32_t const count = min(kDirectChunk, g.inChannels - c0);
            __syncthreads(); // the previous chunk's weights are no longer read
            for (int32_t e = static_cast<int32_t>(threadIdx.x); e < count * kDirectChannels; e += kDirectThreads)
            {
                int32_t const ci = e / kDirectChannels;
                // Channels past C_out repeat the last row; their sums are never stored.
                int32_t const co = min(co0 + e % kDirectChannels, g.outChannels - 1);
                sWeight[e] = toFloat(weight[(static_cast<int64_t>(co) * g.inChannels + c0 + ci) * g.taps + tap]);
            }
            __syncthreads();
            for (int32_t ci = 0; ci < count; ++ci)
            {
                float v = 0.0f;
#pragma unroll
                for (int32_t q = 0; q < 4; ++q)
                {
                    int64_t const at = kNHWC ? static_cast<int64_t>(c.index[q]) * g.inStride + c0 + ci
                                             : static_cast<int64_t>(c0 + ci) * plane + c.index[q];
                    v += c.weight[q] * toFloat(xn[at]);
                }
                float4 const* const w4 = reinterpret_cast<float4 const*>(sWeight + ci * kDirectChannels);
#pragma unroll
                for (int32_t j = 0; j < kDirectChannels / 4; ++j)
                {
                    float4 const w = w4[j];
                    acc[4 * j] += w.x * v;
                    acc[4 * j + 1] += w.y * v;
                    acc[4 * j + 2] += w.z * v;
                    acc[4 * j + 3] += w.w * v;
                }
            }
        }
    }
    if (!active)
    {
        return;
    }
    int32_t const channelsOut = kNHWC ? g.outStride : g.outChannels;
#pragma unroll
    for (int32_t j = 0; j < kDirectChannels; ++j)
    {
        int32_t const co = co0 + j;
        if (co < channelsOut)
        {
            float value = 0.0f; // NHWC8 padding channels are written as zero
            if (co < g.outChannels)
            {
                value = acc[j] + (bias != nullptr ? toFloat(bias[co]) : 0.0f);
            }
            int64_t const at = kNHWC ? (static_cast<int64_t>(n) * pixels + pix) * g.outStride + co
                                     : (static_cast<int64_t>(n) * g.outChannels + co) * pixels + pix;
            y[at] = fromFloat<T>(value);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fused implicit-GEMM kernel (float16, tensor cores)
// ---------------------------------------------------------------------------------------

constexpr int32_t kTileM = kFusedTileM; //!< 128 output channels per block
constexpr int32_t kTileN = 64;          //!< output pixels per block
constexpr int32_t kTileK = kFusedTileK; //!< 32 input channels per pipeline step
constexpr int32_t kTapGroup = 8;        //!< taps whose corners are staged in shared memory at once
constexpr int32_t kFusedThreads = 256;  //!< 8 warps, each a 32 x 32 piece of the 128 x 64 tile
constexpr int32_t kLdA = kTileK + 8;    //!< padded leading dimensions against bank conflicts;
constexpr int32_t kLdB = kTileN + 8;    //!< multiples of 8 halves / 4 floats as WMMA requires
constexpr int32_t kLdC = kTileN + 4;
constexpr int32_t kBytesA = kTileM * kLdA * 2; //!< one stage of the weight tile
constexpr int32_t kBytesB = kTileK * kLdB * 2; //!< one stage of the sample tile
constexpr int32_t kBytesTapIndex = kTapGroup * 4 * kTileN * 4;
constexpr int32_t kOffsetB = 2 * kBytesA;
constexpr int32_t kOffsetTapIndex = kOffsetB + 2 * kBytesB;
constexpr int32_t kOffsetTapWeight = kOffsetTapIndex + kBytesTapIndex;
constexpr int32_t kBytesShared = kOffsetTapWeight + kBytesTapIndex;
constexpr int32_t kBytesC = kTileM * kLdC * 4; //!< FP32 output tile, reusing the space after the main loop
static_assert(kBytesShared <= 48 * 1024 && kBytesC <= kBytesShared, "static shared memory limit");
static_assert(kBytesA % 128 == 0 && kBytesB % 128 == 0, "WMMA tiles must stay 32-byte aligned");
static_assert(kTileM * kTileK / 8 == 2 * kFusedThreads, "A tile: two 16-byte vectors per thread");
static_assert(kTileN * (kTileK / 8) == kFusedThreads, "B tile: 8 channels of one pixel per thread");

//! Wp[tap][m][k] = W[m, k, tap] as float16, zero for m >= C_out or k >= C_in.
__global__ void packWeightsKernel(__half const* __restrict__ weight, __half* __restrict__ packed, int32_t outC,
    int32_t inC, int32_t taps, int32_t packedM, int32_t packedK)
{
    int64_t const total = static_cast<int64_t>(taps) * packedM * packedK;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    {
        int32_t const k = static_cast<int32_t>(i % packedK);
        int32_t const m = static_cast<int32_t>((i / packedK) % packedM);
        int32_t const tap = static_cast<int32_t>(i / (static_cast<int64_t>(packedK) * packedM));
        packed[i] = (m < outC && k < inC) ? weight[(static_cast<int64_t>(m) * inC + k) * taps + tap] : __float2half(0.0f);
    }
}

//! NCHW float16 x to NHWC with channels padded to `stride` (zero), one 32 x 32 tile per block.
static_assert(kNhwc8TileChannels == 32, "toNhwc8Kernel's tile is 32 pixels x 32 channels");
__global__ void toNhwc8Kernel(
    __half const* __restrict__ x, __half* __restrict__ out, int32_t channels, int32_t pixels, int32_t stride)
{
    __shared__ __half tile[32][33];
    int32_t const p0 = static_cast<int32_t>(blockIdx.x) * 32;
    int32_t const c0 = static_cast<int32_t>(blockIdx.y) * 32;
    int64_t const n = blockIdx.z;
    int32_t const tx = static_cast<int32_t>(threadIdx.x);
    int32_t const ty = static_cast<int32_t>(threadIdx.y);
    for (int32_t j = ty; j < 32; j += 8)
    {
        int32_t const c = c0 + j;
        int32_t const p = p0 + tx;
        tile[j][tx] = (c < channels && p < pixels) ? x[(n * channels + c) * pixels + p] : __float2half(0.0f);
    }
    __syncthreads();
    for (int32_t j = ty; j < 32; j += 8)
    {
        int32_t const p = p0 + j;
        int32_t const c = c0 + tx;
        if (p < pixels && c < stride)
        {
            out[(n * pixels + p) * stride + c] = tile[tx][j];
        }
    }
}

//! The fused kernel. x is NHWC with channels padded to g.inStride (a multiple of 8, TensorRT's
//! kHWC8, or our copy of an NCHW input); y is NCHW or, with kOutNHWC, NHWC padded to g.outStride.
//!
//! Each step of the main loop covers one tap and 32 input channels. Step s + 1's global loads
//! (weights, and for every thread the four 16-byte corner vectors of 8 channels of one pixel)
//! are issued into registers before step s's tensor-core MMA, then blended with the bilinear
//! weights and stored into the other shared-memory stage: one barrier per step.
template <bool kOutNHWC>
__global__ void __launch_bounds__(kFusedThreads) pdfFusedKernel(KernelGeometry g, __half const* __restrict__ x,
    void const* __restrict__ offset, void const* __restrict__ mask, __half const* __restrict__ packed,
    int32_t packedM, int32_t packedK, __half const* __restrict__ bias, __half* __restrict__ y)
{
    namespace wmma = nvcuda::wmma;
    __shared__ __align__(128) unsigned char smem[kBytesShared];
    float* const sC = reinterpret_cast<float*>(smem); // [kTileM][kLdC], after the main loop
    auto* const sTapIndex = reinterpret_cast<int32_t*>(smem + kOffsetTapIndex); // [kTapGroup][4][kTileN]
    auto* const sTapWeight = reinterpret_cast<float*>(smem + kOffsetTapWeight); // [kTapGroup][4][kTileN]

    int32_t const tid = static_cast<int32_t>(threadIdx.x);
    int32_t const warp = tid / 32;
    int32_t const warpM = warp % 4; // rows warpM * 32 ... + 31 of the block tile
    int32_t const warpN = warp / 4; // columns warpN * 32 ... + 31
    int32_t const pixels = g.outHeight * g.outWidth;
    int32_t const pix0 = static_cast<int32_t>(blockIdx.x) * kTileN;
    int32_t const m0 = static_cast<int32_t>(blockIdx.y) * kTileM;
    int32_t const n = static_cast<int32_t>(blockIdx.z);
    __half const* const xn = x + static_cast<int64_t>(n) * g.inHeight * g.inWidth * g.inStride;
    int32_t const chunks = packedK / kTileK;

    // This thread's share of a step: 8 channels (lane) of one pixel for B, two vectors of A.
    int32_t const gatherPix = tid / (kTileK / 8);
    int32_t const gatherLane = tid % (kTileK / 8);

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
    for (int32_t i = 0; i < 2; ++i)
    {
#pragma unroll
        for (int32_t j = 0; j < 2; ++j)
        {
            wmma::fill_fragment(acc[i][j], 0.0f);
        }
    }

    uint4 rawA[2];
    uint4 rawX[4];
    float cornerWeight[4];
    int32_t channelBase = 0;

    // Global loads of one step into registers.
    auto fetch = [&](int32_t tap, int32_t tapInGroup, int32_t c0) {
        __half const* const packedTap = packed + static_cast<int64_t>(tap) * packedM * packedK;
#pragma unroll
        for (int32_t v = 0; v < 2; ++v)
        {
            int32_t const i = tid + v * kFusedThreads;
            int32_t const row = i / (kTileK / 8);
            int32_t const col = (i % (kTileK / 8)) * 8;
            rawA[v] = *reinterpret_cast<uint4 const*>(packedTap + static_cast<int64_t>(m0 + row) * packedK + c0 + col);
        }
        channelBase = c0 + gatherLane * 8;
        bool const inside = channelBase < g.inStride; // inStride is a multiple of 8: all 8 in bounds
#pragma unroll
        for (int32_t q = 0; q < 4; ++q)
        {
            int32_t const at = (tapInGroup * 4 + q) * kTileN + gatherPix;
            cornerWeight[q] = sTapWeight[at];
            rawX[q] = inside
                ? *reinterpret_cast<uint4 const*>(xn + static_cast<int64_t>(sTapIndex[at]) * g.inStride + channelBase)
                : make_uint4(0, 0, 0, 0);
        }
    };

    // Registers of one step into a shared-memory stage: A as is, B as modulated bilinear samples.
    auto store = [&](int32_t stage) {
        __half* const sA = reinterpret_cast<__half*>(smem + stage * kBytesA);
        __half* const sB = reinterpret_cast<__half*>(smem + kOffsetB + stage * kBytesB);
#pragma unroll
        for (int32_t v = 0; v < 2; ++v)
        {
            int32_t const i = tid + v * kFusedThreads;
            *reinterpret_cast<uint4*>(sA + (i / (kTileK / 8)) * kLdA + (i % (kTileK / 8)) * 8) = rawA[v];
        }
        float sample[8];
#pragma unroll
        for (int32_t j = 0; j < 8; ++j)
        {
            sample[j] = 0.0f;
        }
#pragma unroll
        for (int32_t q = 0; q < 4; ++q)
        {
            __half2 const* const h2 = reinterpret_cast<__half2 const*>(&rawX[q]);
#pragma unroll
            for (int32_t j = 0; j < 4; ++j)
            {
                float2 const f = __half22float2(h2[j]);
                sample[2 * j] += cornerWeight[q] * f.x;
                sample[2 * j + 1] += cornerWeight[q] * f.y;
            }
        }
#pragma unroll
        for (int32_t j = 0; j < 8; ++j)
        {
            // Padding channels (kHWC8) may hold anything: select, never multiply, them away.
            float const value = channelBase + j < g.inChannels ? sample[j] : 0.0f;
            sB[(gatherLane * 8 + j) * kLdB + gatherPix] = __float2half_rn(value);
        }
    };

    for (int32_t tap0 = 0; tap0 < g.taps; tap0 += kTapGroup)
    {
        int32_t const groupTaps = min(kTapGroup, g.taps - tap0);
        // Sample positions, corners and mask-folded weights: once per (pixel, tap), shared
        // by every input channel. The barrier before: the previous group is done with them.
        __syncthreads();
        for (int32_t e = tid; e < groupTaps * kTileN; e += kFusedThreads)
        {
            int32_t const tapInGroup = e / kTileN;
            int32_t const px = e % kTileN;
            int32_t const pix = pix0 + px;
            TapCorners c{};
            if (pix < pixels)
            {
                c = tapCornersAt(g, offset, mask, n, pix, tap0 + tapInGroup);
            }
#pragma unroll
            for (int32_t q = 0; q < 4; ++q)
            {
                sTapIndex[(tapInGroup * 4 + q) * kTileN + px] = c.index[q];
                sTapWeight[(tapInGroup * 4 + q) * kTileN + px] = c.weight[q];
            }
        }
        __syncthreads();

        int32_t const steps = groupTaps * chunks;
        fetch(tap0, 0, 0);
        store(0);
        __syncthreads();
        for (int32_t s = 0; s < steps; ++s)
        {
            int32_t const stage = s & 1;
            bool const more = s + 1 < steps;
            if (more)
            {
                int32_t const tapInGroup = (s + 1) / chunks;
                fetch(tap0 + tapInGroup, tapInGroup, ((s + 1) % chunks) * kTileK);
            }
            __half const* const sA = reinterpret_cast<__half const*>(smem + stage * kBytesA);
            __half const* const sB = reinterpret_cast<__half const*>(smem + kOffsetB + stage * kBytesB);
#pragma unroll
            for (int32_t kk = 0; kk < kTileK; kk += 16)
            {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a[2];
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b[2];
#pragma unroll
                for (int32_t i = 0; i < 2; ++i)
                {
                    wmma::load_matrix_sync(a[i], sA + (warpM * 32 + i * 16) * kLdA + kk, kLdA);
                    wmma::load_matrix_sync(b[i], sB + kk * kLdB + warpN * 32 + i * 16, kLdB);
                }
#pragma unroll
                for (int32_t i = 0; i < 2; ++i)
                {
#pragma unroll
                    for (int32_t j = 0; j < 2; ++j)
                    {
                        wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
                    }
                }
            }
            if (more)
            {
                store(stage ^ 1); // its last readers finished before the previous barrier
            }
            __syncthreads();
        }
    }

    // Epilogue: stage the FP32 tile in shared memory (free since the last barrier), add bias,
    // write float16 with consecutive threads on consecutive addresses.
#pragma unroll
    for (int32_t i = 0; i < 2; ++i)
    {
#pragma unroll
        for (int32_t j = 0; j < 2; ++j)
        {
            wmma::store_matrix_sync(
                sC + (warpM * 32 + i * 16) * kLdC + warpN * 32 + j * 16, acc[i][j], kLdC, wmma::mem_row_major);
        }
    }
    __syncthreads();
    int32_t const channelsOut = kOutNHWC ? g.outStride : g.outChannels;
    for (int32_t e = tid; e < kTileM * kTileN; e += kFusedThreads)
    {
        int32_t const row = kOutNHWC ? e % kTileM : e / kTileN; // NHWC: channels fastest
        int32_t const col = kOutNHWC ? e / kTileM : e % kTileN; // NCHW: pixels fastest
        int32_t const co = m0 + row;
        int32_t const pix = pix0 + col;
        if (co < channelsOut && pix < pixels)
        {
            float value = 0.0f; // NHWC8 padding channels are written as zero
            if (co < g.outChannels)
            {
                value = sC[row * kLdC + col] + (bias != nullptr ? __half2float(bias[co]) : 0.0f);
            }
            int64_t const at = kOutNHWC ? (static_cast<int64_t>(n) * pixels + pix) * g.outStride + co
                                        : (static_cast<int64_t>(n) * g.outChannels + co) * pixels + pix;
            y[at] = __float2half_rn(value);
        }
    }
}

inline KernelGeometry geometryOf(PdfConvParams const& p, int32_t outHeight, int32_t outWidth)
{
    KernelGeometry g{};
    g.inChannels = p.in_channels;
    g.inHeight = p.in_height;
    g.inWidth = p.in_width;
    g.outChannels = p.out_channels;
    g.kernelW = p.kernel_w;
    g.taps = p.kernel_h * p.kernel_w;
    g.strideH = p.stride_h;
    g.strideW = p.stride_w;
    g.padTop = p.pad_top;
    g.padLeft = p.pad_left;
    g.dilationH = p.dilation_h;
    g.dilationW = p.dilation_w;
    g.outHeight = outHeight;
    g.outWidth = outWidth;
    g.inStride = channelStride(p.in_channels, p.layout);
    g.outStride = channelStride(p.out_channels, p.layout);
    g.offsetHalf = p.offset_dtype == PDFCONV_FLOAT16;
    g.maskHalf = p.mask_dtype == PDFCONV_FLOAT16;
    return g;
}

} // namespace kernels
} // namespace pdfconv
} // namespace saphnet
