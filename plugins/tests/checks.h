// The C++ tests' one check counter: every check is counted, every failure printed on a line
// of its own (a passing check prints only where the test asks, so an 8000-check run stays
// readable), and finish() turns the count into the exit status ctest reads.
#pragma once

#include <cstdio>
#include <string>

namespace checks
{

inline int count = 0;
inline int failures = 0;

//! Counts one check; prints "FAIL: what" when it fails, "ok: what" when it passes and
//! `verbose` is set. Returns `ok`, so a test can stop what depends on it.
inline bool expect(bool ok, std::string const& what, bool verbose = false)
{
    ++count;
    if (!ok)
    {
        ++failures;
    }
    if (!ok || verbose)
    {
        std::printf("%s: %s\n", ok ? "ok" : "FAIL", what.c_str());
    }
    return ok;
}

//! Prints the totals; the exit status: 0 when every check passed.
inline int finish()
{
    std::printf("%d checks, %d failed\n", count, failures);
    return failures == 0 ? 0 : 1;
}

} // namespace checks
