/*
 * C API of libsaphnet_plugins.so: the PDFConv operator (modulated deformable convolution,
 * one offset group, the mask as the per-pixel kernel V of SAPHNet) on the host and on CUDA.
 *
 *   y[n, o, p] = b[o] + sum_k mask[n, k, p] * sum_c W[o, c, k] * bilinear(x[n, c], sample(p, k))
 *
 * Tensors (row-major, no gaps):
 *   x      (N, C_in, H, W)            dtype; NCHW, or NHWC with C padded to a multiple of 8
 *                                     (TensorRT's kHWC8) when layout == PDFCONV_LAYOUT_NHWC8
 *   offset (N, 2*Kh*Kw, Ho, Wo)       offset_dtype, NCHW; channel 2k = dy, 2k+1 = dx of tap k
 *   mask   (N, Kh*Kw, Ho, Wo)         mask_dtype, NCHW
 *   weight (C_out, C_in, Kh, Kw)      dtype
 *   bias   (C_out) or NULL            dtype
 *   y      (N, C_out, Ho, Wo)         dtype, same layout as x (padded channels written as 0)
 *
 * Every function returns a PdfConvStatus; on failure pdfconv_last_error() (per thread)
 * says what was wrong.
 */
#ifndef SAPHNET_PDFCONV_API_H
#define SAPHNET_PDFCONV_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define PDFCONV_API __declspec(dllexport)
#else
#define PDFCONV_API __attribute__((visibility("default")))
#endif

/* Version of this API and of the kernels: major * 10000 + minor * 100 + patch. */
#define PDFCONV_VERSION 10000

typedef enum PdfConvStatus
{
    PDFCONV_SUCCESS = 0,
    PDFCONV_INVALID_ARGUMENT = 1, /* a null pointer, a bad shape, stride or dilation */
    PDFCONV_UNSUPPORTED = 2,      /* a dtype, layout or algorithm this build cannot run */
    PDFCONV_CUDA_ERROR = 3,       /* a CUDA launch failed */
    PDFCONV_NO_CUDA = 4,          /* the library was built without CUDA */
    PDFCONV_WORKSPACE_TOO_SMALL = 5
} PdfConvStatus;

typedef enum PdfConvDataType
{
    PDFCONV_FLOAT32 = 0,
    PDFCONV_FLOAT16 = 1
} PdfConvDataType;

typedef enum PdfConvLayout
{
    PDFCONV_LAYOUT_NCHW = 0,
    PDFCONV_LAYOUT_NHWC8 = 1 /* channels innermost, padded to a multiple of 8 (TensorRT kHWC8) */
} PdfConvLayout;

typedef enum PdfConvAlgo
{
    PDFCONV_ALGO_AUTO = 0,   /* fused for float16, direct for float32 */
    PDFCONV_ALGO_DIRECT = 1, /* one thread per output pixel and 16 output channels, FP32 maths */
    PDFCONV_ALGO_FUSED = 2   /* implicit GEMM on tensor cores (float16 x, FP32 accumulation) */
} PdfConvAlgo;

/* Shapes, geometry and types of one call. pads follow ONNX: top, left, bottom, right. */
typedef struct PdfConvParams
{
    int32_t batch;
    int32_t in_channels;
    int32_t in_height;
    int32_t in_width;
    int32_t out_channels;
    int32_t kernel_h;
    int32_t kernel_w;
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_top;
    int32_t pad_left;
    int32_t pad_bottom;
    int32_t pad_right;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t dtype;        /* PdfConvDataType of x, weight, bias and y */
    int32_t offset_dtype; /* PdfConvDataType of offset */
    int32_t mask_dtype;   /* PdfConvDataType of mask */
    int32_t layout;       /* PdfConvLayout of x and y */
} PdfConvParams;

PDFCONV_API int32_t pdfconv_version(void);

/* 1 when the library holds the CUDA kernels, 0 for a host-only build. */
PDFCONV_API int32_t pdfconv_has_cuda(void);

/* 1 when the library holds the TensorRT plugin (built with TensorRT's headers), else 0. */
PDFCONV_API int32_t pdfconv_has_tensorrt(void);

/* Output height and width; PDFCONV_INVALID_ARGUMENT (with the reason) for bad params. */
PDFCONV_API int32_t pdfconv_output_shape(PdfConvParams const* params, int32_t* out_height, int32_t* out_width);

/* Device workspace that pdfconv_forward_cuda needs for these params and algo (may be 0). */
PDFCONV_API int32_t pdfconv_workspace_size(PdfConvParams const* params, int32_t algo, size_t* bytes);

/* Reference-quality CPU implementation (FP32 accumulation), same maths as the kernels. */
PDFCONV_API int32_t pdfconv_forward_host(PdfConvParams const* params, void const* x, void const* offset,
    void const* mask, void const* weight, void const* bias, void* y);

/* Enqueue the CUDA kernel on stream (a cudaStream_t, NULL = default stream); all pointers
 * are device pointers; workspace must hold pdfconv_workspace_size bytes, 256-byte aligned. */
PDFCONV_API int32_t pdfconv_forward_cuda(PdfConvParams const* params, int32_t algo, void const* x,
    void const* offset, void const* mask, void const* weight, void const* bias, void* y, void* workspace,
    size_t workspace_bytes, void* stream);

/* The message of the last failed call on this thread ("" when none). */
PDFCONV_API char const* pdfconv_last_error(void);

/* A short name for a status code. */
PDFCONV_API char const* pdfconv_status_string(int32_t status);

#ifdef __cplusplus
}
#endif

#endif /* SAPHNET_PDFCONV_API_H */
