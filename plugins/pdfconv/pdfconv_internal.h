// What the C API, the TensorRT plugin and the kernels share inside the library:
// parameter checks, workspace sizes, the host implementation and the CUDA launcher.
#pragma once

#include "pdfconv_api.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace saphnet
{
namespace pdfconv
{

//! Tile sizes that the workspace and the launch limits (planForward) depend on.
constexpr int32_t kFusedTileM = 128;        //!< fused kernel: output channels per block
constexpr int32_t kFusedTileK = 32;         //!< fused kernel: input channels per pipeline step
constexpr int32_t kDirectTileChannels = 16; //!< direct kernel: output channels per block (and thread)
constexpr int32_t kNhwc8TileChannels = 32;  //!< NCHW -> NHWC8 copy: channels per block

//! Output size of valid params. Returns PDFCONV_SUCCESS or a status with the reason in message.
int32_t checkParams(PdfConvParams const& params, int32_t& outHeight, int32_t& outWidth, std::string& message);

//! The algorithm that runs for a requested one (AUTO resolved), or a status with the reason.
int32_t resolveAlgo(PdfConvParams const& params, int32_t requested, int32_t& algo, std::string& message);

//! checkParams, resolveAlgo, then the CUDA launch limits of that algorithm (batch and channel
//! tiles within the 65535 blocks of gridDim.y/z): what every CUDA forward and workspace
//! query needs first, and what the TensorRT plugin checks at build time for the profile's
//! largest shapes (configurePlugin), so that an engine that cannot run is never written.
int32_t planForward(PdfConvParams const& params, int32_t requested, int32_t& outHeight, int32_t& outWidth,
    int32_t& algo, std::string& message);

//! Bytes of the fused kernel's repacked float16 weights (a multiple of 256).
std::size_t packedWeightBytes(PdfConvParams const& params);

//! Device workspace bytes of a resolved algorithm for valid params: for the fused kernel the
//! packed weights, then (NCHW input only) a channels-last NHWC8 copy of x.
std::size_t workspaceBytes(PdfConvParams const& params, int32_t algo);

//! Channel stride of x or y in memory: the channel count, padded to 8 for NHWC8.
int32_t channelStride(int32_t channels, int32_t layout);

//! Host implementation for valid params.
void forwardHost(PdfConvParams const& params, int32_t outHeight, int32_t outWidth, void const* x,
    void const* offset, void const* mask, void const* weight, void const* bias, void* y);

//! Enqueue the CUDA kernels for valid params and a resolved algorithm (defined only in CUDA builds).
//! The fused kernel reads W repacked: from `packedWeights` when given (PackedWeights), else
//! packed into the start of the workspace on this call.
int32_t forwardCuda(PdfConvParams const& params, int32_t outHeight, int32_t outWidth, int32_t algo, void const* x,
    void const* offset, void const* mask, void const* weight, void const* bias, void* y, void* workspace,
    void* stream, std::string& message, void const* packedWeights = nullptr);

//! Enqueue the repacking of float16 W into the fused kernel's [tap][C_out padded to 128]
//! [C_in padded to 32] layout at `packed` (packedWeightBytes) on `stream` (CUDA builds only).
void launchPackWeights(PdfConvParams const& params, void const* weight, void* packed, void* stream);

//! PDFCONV_SUCCESS when x is on the current device (or not a pointer the CUDA runtime knows),
//! else PDFCONV_INVALID_ARGUMENT with the fix in message. For the C API, whose callers hand in
//! any tensor; TensorRT hands its plugin device pointers of its own device, so enqueue skips it.
int32_t checkDevice(void const* x, std::string& message);

//! The fused kernel's repacked weights of one W, kept in device memory of their own, so that
//! the TensorRT plugin repacks W once per weight pointer and shape (TensorRT keeps a layer's
//! constant W at one address for the life of an execution context) instead of on every
//! enqueue. A copy (the plugin's clone, one per execution context) starts empty.
class PackedWeights
{
public:
    PackedWeights() = default;
    PackedWeights(PackedWeights const& /*other*/) {}
    PackedWeights& operator=(PackedWeights const&) = delete;
    ~PackedWeights();

    //! W's packed copy for the fused kernel, enqueued on `stream` first when W's pointer, shape
    //! or the current device differ from the last call (`packed` then says so). nullptr when
    //! W must be packed into the workspace on this call instead: while the stream is captured
    //! into a CUDA graph before W was packed here (nothing may be allocated during a capture,
    //! and a pack recorded into the graph runs only when the graph does), or when device
    //! memory runs out. Device queries only, no synchronization, legal under capture.
    void const* prepare(PdfConvParams const& params, void const* weight, void* stream, bool& packed);

private:
    struct Key
    {
        void const* weight = nullptr;
        int32_t device = -1;
        int32_t outChannels = 0;
        int32_t inChannels = 0;
        int32_t taps = 0;
        bool operator==(Key const& o) const
        {
            return weight == o.weight && device == o.device && outChannels == o.outChannels
                && inChannels == o.inChannels && taps == o.taps;
        }
    };
    Key mKey;
    bool mValid = false;
    void* mBuffer = nullptr;
    std::size_t mBytes = 0;
};

//! Record the message of a failed call for pdfconv_last_error() on this thread.
void setLastError(std::string const& message);

} // namespace pdfconv
} // namespace saphnet
