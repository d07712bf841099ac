// Link-time stand-in for libnvinfer: the two symbols libsaphnet_plugins_autoregister.so uses,
// in a library whose SONAME is the real one's (libnvinfer.so.<major>), so that the library
// records a DT_NEEDED on TensorRT without TensorRT's libraries on the build machine. At run
// time the process's real libnvinfer provides them; this file is never installed or loaded
// (the autoregister library's RUNPATH holds only its own folder).
#include "NvInferRuntime.h"

extern "C" {

TENSORRTAPI nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
{
    return nullptr;
}

TENSORRTAPI nvinfer1::ILogger* getLogger() noexcept
{
    return nullptr;
}

} // extern "C"
