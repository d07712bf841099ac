// pdfconv_plugin_register: how the PDFConv creator reaches TensorRT's plugin registry, with a
// stub libnvinfer (nvinfer_stub.cpp: getPluginRegistry() against the real headers, counting
// registerCreator calls) instead of TensorRT. One process per way of loading, as on a host:
//
//   dlopen       libsaphnet_plugins_autoregister.so opened with dlopen(RTLD_NOW | RTLD_LOCAL),
//                as Triton's `plugins=` and `trtexec --staticPlugins` do: its static initializer
//                registers PDFConv/1/saphnet exactly once; it exports no getCreators, so
//                loadLibrary of it registers nothing; opening it again, or opening
//                libsaphnet_plugins.so beside it (ctypes), registers nothing more;
//   loadlibrary  libsaphnet_plugins.so through the registry's loadLibrary (its getCreators),
//                as `trtexec --dynamicPlugins` and `saphnet build` do: registered exactly once;
//                pdfconv_register_tensorrt() afterwards leaves it at once.
//
// Usage: pdfconv_plugin_register dlopen|loadlibrary STUB_LIBNVINFER AUTOREGISTER_LIB MAIN_LIB
#include "NvInferRuntime.h"
#include "checks.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>

using namespace nvinfer1;

namespace
{

//! Few checks here: print each, passed or not.
void expect(bool ok, std::string const& what)
{
    checks::expect(ok, what, /*verbose=*/true);
}

using Count = int32_t (*)();
using Registered = int32_t (*)(char const*, char const*, char const*);

struct Stub
{
    Count calls;
    Registered registered;
    Count logged;

    int32_t pdfconv() const
    {
        return registered("PDFConv", "1", "saphnet");
    }
};

//! The registered creator makes a plugin named PDFConv from the parser's fields.
void expectCreatorWorks()
{
    IPluginCreatorInterface* const found = getPluginRegistry()->getCreator("PDFConv", "1", "saphnet");
    if (found == nullptr || std::strcmp(found->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        expect(false, "the registry holds a V3 creator for PDFConv/1/saphnet");
        return;
    }
    auto& creator = static_cast<IPluginCreatorV3One&>(*found);
    int32_t const pads[4] = {1, 1, 1, 1};
    PluginField const field("pads", pads, PluginFieldType::kINT32, 4);
    PluginFieldCollection const fields{1, &field};
    IPluginV3* const plugin = creator.createPlugin("pdf", &fields, TensorRTPhase::kBUILD);
    auto* const core
        = plugin != nullptr ? static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE))
                            : nullptr;
    expect(core != nullptr && std::strcmp(core->getPluginName(), "PDFConv") == 0
            && std::strcmp(core->getPluginNamespace(), "saphnet") == 0,
        "the registered creator makes a PDFConv plugin");
    delete plugin;
}

void viaDlopen(Stub const& stub, char const* autoregister, char const* mainLibrary)
{
    void* const handle = dlopen(autoregister, RTLD_NOW | RTLD_LOCAL);
    expect(handle != nullptr, std::string("dlopen ") + autoregister + (handle ? "" : std::string(": ") + dlerror()));
    if (handle == nullptr)
    {
        return;
    }
    expect(stub.calls() == 1 && stub.pdfconv() == 1,
        "dlopen registers PDFConv/1/saphnet exactly once (registerCreator calls: " + std::to_string(stub.calls())
            + ", registered: " + std::to_string(stub.pdfconv()) + ")");
    expect(dlsym(handle, "getCreators") == nullptr,
        "the autoregister library exports no getCreators, nor do its dependencies");
    expect(stub.logged() == 0, "nothing logged while registering");
    expect(getPluginRegistry()->loadLibrary(autoregister) == nullptr && stub.calls() == 1 && stub.pdfconv() == 1,
        "loadLibrary of the autoregister library registers nothing a second time");
    void* const again = dlopen(autoregister, RTLD_NOW | RTLD_LOCAL);
    void* const plain = dlopen(mainLibrary, RTLD_NOW | RTLD_LOCAL);
    expect(again != nullptr && plain != nullptr && stub.calls() == 1 && stub.pdfconv() == 1,
        "opening it again and opening libsaphnet_plugins.so (ctypes) register nothing more");
    expectCreatorWorks();
}

void viaLoadLibrary(Stub const& stub, char const* autoregister, char const* mainLibrary)
{
    (void) autoregister;
    void* const handle = getPluginRegistry()->loadLibrary(mainLibrary);
    expect(handle != nullptr, std::string("loadLibrary ") + mainLibrary);
    expect(stub.calls() == 1 && stub.pdfconv() == 1,
        "loadLibrary (getCreators) registers PDFConv/1/saphnet once (registerCreator calls: "
            + std::to_string(stub.calls()) + ", registered: " + std::to_string(stub.pdfconv()) + ")");
    expect(stub.logged() == 0, "nothing logged while registering");
    using RegisterTensorRT = int32_t (*)();
    auto const registerTensorRT = reinterpret_cast<RegisterTensorRT>(dlsym(handle, "pdfconv_register_tensorrt"));
    expect(registerTensorRT != nullptr && registerTensorRT() == 1 && stub.calls() == 1 && stub.pdfconv() == 1,
        "pdfconv_register_tensorrt() afterwards finds it registered and registers nothing more");
    expectCreatorWorks();
}

} // namespace

int main(int argc, char** argv)
{
    std::string const mode = argc == 5 ? argv[1] : "";
    if (mode != "dlopen" && mode != "loadlibrary")
    {
        std::fprintf(stderr, "usage: %s dlopen|loadlibrary STUB_LIBNVINFER AUTOREGISTER_LIB MAIN_LIB\n", argv[0]);
        return 2;
    }
    // The stub first, by path: a library that needs libnvinfer.so.<major> then binds to it.
    void* const nvinfer = dlopen(argv[2], RTLD_NOW | RTLD_GLOBAL);
    if (nvinfer == nullptr)
    {
        std::fprintf(stderr, "cannot load the stub libnvinfer %s: %s\n", argv[2], dlerror());
        return 2;
    }
    Stub const stub{reinterpret_cast<Count>(dlsym(nvinfer, "stub_register_calls")),
        reinterpret_cast<Registered>(dlsym(nvinfer, "stub_registered")),
        reinterpret_cast<Count>(dlsym(nvinfer, "stub_logged"))};
    std::printf("TensorRT headers %d.%d.%d, %s\n", NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH,
        mode.c_str());
    expect(stub.calls() == 0 && stub.pdfconv() == 0, "the stub registry starts empty");
    if (mode == "dlopen")
    {
        viaDlopen(stub, argv[3], argv[4]);
    }
    else
    {
        viaLoadLibrary(stub, argv[3], argv[4]);
    }
    return checks::finish();
}
