// A stand-in libnvinfer for pdfconv_plugin_register: getPluginRegistry() and getLogger(),
// implemented against TensorRT's real headers, with a registry that does what TensorRT's
// does for the calls a plugin library makes (registerCreator refuses a second creator of the
// same name, version and namespace; loadLibrary dlopens a library, hands it a logger finder
// and registers what its getCreators returns, failing on a duplicate) and counts every
// registerCreator call. Built with the SONAME libnvinfer.so.<major>, so a library that needs
// libnvinfer binds to it once the test has loaded it.
#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

struct Identity
{
    std::string name;
    std::string version;
    std::string nameSpace;
};

//! Name, version and namespace of a V3 creator, or false for another kind of creator.
bool identityOf(IPluginCreatorInterface& creator, Identity& id)
{
    if (std::strcmp(creator.getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        return false;
    }
    auto& v3 = static_cast<IPluginCreatorV3One&>(creator);
    id = {v3.getPluginName(), v3.getPluginVersion(), v3.getPluginNamespace()};
    return true;
}

class StubLogger final : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            messages.emplace_back(msg != nullptr ? msg : "");
            std::printf("stub libnvinfer logger: %s\n", msg != nullptr ? msg : "");
        }
    }
    std::vector<std::string> messages;
};

StubLogger gLogger;

class StubLoggerFinder final : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &gLogger;
    }
};

StubLoggerFinder gLoggerFinder;

class StubRegistry final : public IPluginRegistry
{
public:
    struct Entry
    {
        Identity id;
        IPluginCreatorInterface* creator;
    };
    std::vector<Entry> entries;
    int32_t registerCalls = 0;

    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const pluginNamespace) noexcept override
    {
        ++registerCalls;
        Identity id;
        if (!identityOf(creator, id))
        {
            return false;
        }
        id.nameSpace = pluginNamespace != nullptr && *pluginNamespace != '\0' ? pluginNamespace : id.nameSpace;
        if (getCreator(id.name.c_str(), id.version.c_str(), id.nameSpace.c_str()) != nullptr)
        {
            gLogger.log(ILogger::Severity::kERROR, ("Plugin creator already registered - " + id.nameSpace
                + "::" + id.name + " version " + id.version).c_str());
            return false;
        }
        entries.push_back({id, &creator});
        return true;
    }

    IPluginCreatorInterface* const* getAllCreators(int32_t* const numCreators) const noexcept override
    {
        mAll.clear();
        for (Entry const& e : entries)
        {
            mAll.push_back(e.creator);
        }
        *numCreators = static_cast<int32_t>(mAll.size());
        return mAll.data();
    }

    IPluginCreatorInterface* getCreator(AsciiChar const* const pluginName, AsciiChar const* const pluginVersion,
        AsciiChar const* const pluginNamespace = "") noexcept override
    {
        for (Entry const& e : entries)
        {
            if (e.id.name == pluginName && e.id.version == pluginVersion
                && e.id.nameSpace == (pluginNamespace != nullptr ? pluginNamespace : ""))
            {
                return e.creator;
            }
        }
        return nullptr;
    }

    bool deregisterCreator(IPluginCreatorInterface const& creator) noexcept override
    {
        for (auto it = entries.begin(); it != entries.end(); ++it)
        {
            if (it->creator == &creator)
            {
                entries.erase(it);
                return true;
            }
        }
        return false;
    }

    //! As TensorRT: dlopen, setLoggerFinder when exported, then every creator of getCreators.
    PluginLibraryHandle loadLibrary(AsciiChar const* pluginPath) noexcept override
    {
        void* const handle = dlopen(pluginPath, RTLD_LAZY | RTLD_LOCAL);
        if (handle == nullptr)
        {
            return nullptr;
        }
        using SetLoggerFinder = void (*)(ILoggerFinder*);
        using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
        if (auto const setFinder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder")))
        {
            setFinder(&gLoggerFinder);
        }
        auto const getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
        if (getCreators == nullptr)
        {
            gLogger.log(ILogger::Severity::kERROR, "loadLibrary: the library exports no getCreators");
            return nullptr;
        }
        int32_t count = 0;
        IPluginCreatorInterface* const* const creators = getCreators(count);
        for (int32_t i = 0; i < count; ++i)
        {
            if (!registerCreator(*creators[i], ""))
            {
                return nullptr;
            }
        }
        return handle;
    }

    void deregisterLibrary(PluginLibraryHandle /*handle*/) noexcept override {}
    void setErrorRecorder(IErrorRecorder* const /*recorder*/) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
    bool isParentSearchEnabled() const override
    {
        return false;
    }
    void setParentSearchEnabled(bool const /*enabled*/) override {}
    IPluginResource* acquirePluginResource(AsciiChar const* /*key*/, IPluginResource* /*resource*/) noexcept override
    {
        return nullptr;
    }
    int32_t releasePluginResource(AsciiChar const* /*key*/) noexcept override
    {
        return -1;
    }
#if NV_TENSORRT_MAJOR > 10 || NV_TENSORRT_MINOR >= 10
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const numCreators) noexcept override
    {
        return getAllCreators(numCreators);
    }
#endif
#if NV_TENSORRT_MAJOR < 11
    // TensorRT 10's deprecated IPluginV2 creator calls: a V3 plugin library never makes them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    bool registerCreator(IPluginCreator& /*creator*/, AsciiChar const* const /*pluginNamespace*/) noexcept override
    {
        ++registerCalls;
        return false;
    }
    IPluginCreator* const* getPluginCreatorList(int32_t* const numCreators) const noexcept override
    {
        *numCreators = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(AsciiChar const* const /*pluginName*/, AsciiChar const* const /*pluginVersion*/,
        AsciiChar const* const /*pluginNamespace*/ = "") noexcept override
    {
        return nullptr;
    }
    bool deregisterCreator(IPluginCreator const& /*creator*/) noexcept override
    {
        return false;
    }
#pragma GCC diagnostic pop
#endif

private:
    mutable std::vector<IPluginCreatorInterface*> mAll;
};

StubRegistry gRegistry;

} // namespace

extern "C" {

__attribute__((visibility("default"))) IPluginRegistry* getPluginRegistry() noexcept
{
    return &gRegistry;
}

__attribute__((visibility("default"))) ILogger* getLogger() noexcept
{
    return &gLogger;
}

//! For the test: registerCreator calls so far, and how many registered creators have this identity.
__attribute__((visibility("default"))) int32_t stub_register_calls() noexcept
{
    return gRegistry.registerCalls;
}

__attribute__((visibility("default"))) int32_t stub_registered(
    char const* name, char const* version, char const* nameSpace) noexcept
{
    int32_t count = 0;
    for (StubRegistry::Entry const& e : gRegistry.entries)
    {
        count += e.id.name == name && e.id.version == version && e.id.nameSpace == nameSpace ? 1 : 0;
    }
    return count;
}

//! Errors and warnings logged through getLogger() or a logger finder.
__attribute__((visibility("default"))) int32_t stub_logged() noexcept
{
    return static_cast<int32_t>(gLogger.messages.size());
}

} // extern "C"
