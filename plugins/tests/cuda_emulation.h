// Just enough of CUDA to run pdfconv_kernels.cuh on the CPU, so that machines without a GPU
// (CI) still execute the kernels' own source: every block runs as one std::thread per CUDA
// thread, __syncthreads is a std::barrier, and a WMMA fragment is computed whole by every
// lane of the warp (identical values, identical stores). Alignment rules of WMMA are
// checked. Blocks run one after another, so a `__shared__` variable can be a static.
#pragma once

#include <cuda_fp16.h> // host-side __half and its conversions

#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <thread>
#include <vector>

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __forceinline__
#define __forceinline__ inline
#undef __launch_bounds__
#define __launch_bounds__(threads)
#undef __shared__
#define __shared__ static

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;
inline std::barrier<>* gBlockBarrier = nullptr;

inline void __syncthreads()
{
    gBlockBarrier->arrive_and_wait();
}

using std::max;
using std::min;

//! Runs `kernel` (a call of the kernel with its arguments) on every thread of `grid` x `block`.
inline void emulateLaunch(dim3 grid, dim3 block, std::function<void()> const& kernel)
{
    gridDim = grid;
    blockDim = block;
    unsigned const threads = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
    {
        for (unsigned by = 0; by < grid.y; ++by)
        {
            for (unsigned bx = 0; bx < grid.x; ++bx)
            {
                std::barrier<> barrier(threads);
                gBlockBarrier = &barrier;
                std::vector<std::thread> pool;
                for (unsigned t = 0; t < threads; ++t)
                {
                    pool.emplace_back([&, t] {
                        blockIdx = dim3(bx, by, bz);
                        threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
                        kernel();
                    });
                }
                for (std::thread& thread : pool)
                {
                    thread.join();
                }
            }
        }
    }
}

namespace nvcuda
{
namespace wmma
{
struct matrix_a
{
};
struct matrix_b
{
};
struct accumulator
{
};
struct row_major
{
};
enum layout_t
{
    mem_row_major
};

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment
{
    float v[16][16];
};

inline void requireAligned(void const* p, unsigned ldm, unsigned multiple)
{
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0 || ldm % multiple != 0)
    {
        std::fprintf(stderr, "WMMA pointer not 32-byte aligned or bad ldm %u\n", ldm);
        std::abort();
    }
}

template <typename F>
void fill_fragment(F& f, float value)
{
    for (auto& row : f.v)
    {
        for (float& e : row)
        {
            e = value;
        }
    }
}

template <typename Use, typename Layout>
void load_matrix_sync(fragment<Use, 16, 16, 16, __half, Layout>& f, __half const* p, unsigned ldm)
{
    requireAligned(p, ldm, 8);
    for (int i = 0; i < 16; ++i)
    {
        for (int j = 0; j < 16; ++j)
        {
            f.v[i][j] = __half2float(p[i * ldm + j]);
        }
    }
}

template <typename A, typename B, typename C>
void mma_sync(C& d, A const& a, B const& b, C const& c)
{
    C r;
    for (int i = 0; i < 16; ++i)
    {
        for (int j = 0; j < 16; ++j)
        {
            float sum = c.v[i][j];
            for (int k = 0; k < 16; ++k)
            {
                sum += a.v[i][k] * b.v[k][j];
            }
            r.v[i][j] = sum;
        }
    }
    d = r;
}

template <typename F>
void store_matrix_sync(float* p, F const& f, unsigned ldm, layout_t)
{
    requireAligned(p, ldm, 4);
    for (int i = 0; i < 16; ++i)
    {
        for (int j = 0; j < 16; ++j)
        {
            p[i * ldm + j] = f.v[i][j];
        }
    }
}
} // namespace wmma
} // namespace nvcuda
