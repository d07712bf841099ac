// libsaphnet_plugins_autoregister.so: registers the PDFConv creator of libsaphnet_plugins.so
// with TensorRT's plugin registry from a static initializer, i.e. as soon as the library is
// loaded: what Triton's `--backend-config=tensorrt,plugins=LIB`, `trtexec --staticPlugins=LIB`
// and LD_PRELOAD do, which only dlopen a library. It is TensorRT's REGISTER_TENSORRT_PLUGIN
// pattern, written out so that a failure is logged instead of dereferencing a null registry.
//
// The library holds no plugin code: it opens libsaphnet_plugins.so from its own folder with
// dlopen (RTLD_LOCAL, not a DT_NEEDED entry, so that dlsym on this library's handle finds no
// getCreators through its dependencies either) and registers that library's creator. So
// IPluginRegistry::loadLibrary (`trtexec --dynamicPlugins`, `saphnet build`) cannot register it
// a second time; load one library or the other, not both: TensorRT refuses a second creator of
// the same name, version and namespace.
//
// It needs libnvinfer.so.<major> (a DT_NEEDED entry), so that the libnvinfer the host process
// already holds is initialised before this registration runs, even under LD_PRELOAD.
#include "pdfconv_plugin.h"

#include <dlfcn.h>

#include <cstdio>
#include <string>

using namespace nvinfer1;

namespace
{

void report(char const* text) noexcept
{
    std::string const message = std::string("saphnet::PDFConv: ") + text;
    if (ILogger* const logger = getLogger())
    {
        logger->log(ILogger::Severity::kERROR, message.c_str());
    }
    else
    {
        std::fprintf(stderr, "%s\n", message.c_str());
    }
}

constexpr char const* kMainLibrary = "libsaphnet_plugins.so";

//! libsaphnet_plugins.so's getCreators, opened from this library's own folder (kept open: the
//! creator lives there for as long as TensorRT holds it).
using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
GetCreators mainLibraryCreators(std::string& error)
{
    Dl_info self{};
    if (dladdr(reinterpret_cast<void const*>(&report), &self) == 0 || self.dli_fname == nullptr)
    {
        error = "cannot tell where libsaphnet_plugins_autoregister.so was loaded from";
        return nullptr;
    }
    std::string const own = self.dli_fname;
    size_t const slash = own.rfind('/');
    std::string const path = (slash == std::string::npos ? std::string() : own.substr(0, slash + 1)) + kMainLibrary;
    void* const handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
    {
        char const* const reason = dlerror();
        error = "cannot load " + path + " (" + (reason != nullptr ? reason : "unknown error")
            + "); keep libsaphnet_plugins_autoregister.so beside it";
        return nullptr;
    }
    auto const getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
    if (getCreators == nullptr)
    {
        error = path + " has no TensorRT plugin (getCreators); build it with TensorRT's headers";
    }
    return getCreators;
}

//! Registers the creator once; a creator already registered (by pdfconv_register_tensorrt,
//! or loadLibrary of libsaphnet_plugins.so) is left as it is.
void registerCreator() noexcept
{
    using saphnet::pdfconv::kPluginName;
    using saphnet::pdfconv::kPluginNamespace;
    using saphnet::pdfconv::kPluginVersion;
    try
    {
        IPluginRegistry* const registry = getPluginRegistry();
        if (registry == nullptr)
        {
            report("libnvinfer returned no plugin registry; the PDFConv plugin is not registered");
            return;
        }
        if (registry->getCreator(kPluginName, kPluginVersion, kPluginNamespace) != nullptr)
        {
            return;
        }
        std::string error;
        GetCreators const getCreators = mainLibraryCreators(error);
        if (getCreators == nullptr)
        {
            report(error.c_str());
            return;
        }
        int32_t count = 0;
        IPluginCreatorInterface* const* const creators = getCreators(count);
        if (creators == nullptr || count < 1 || !registry->registerCreator(*creators[0], kPluginNamespace))
        {
            report("TensorRT refused to register the PDFConv creator (PDFConv/1/saphnet)");
        }
    }
    catch (...)
    {
        report("registering the PDFConv creator failed (out of memory)");
    }
}

struct Registrar
{
    Registrar() noexcept
    {
        registerCreator();
    }
};

Registrar const gRegistrar;

} // namespace
