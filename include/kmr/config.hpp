// Macros shared by host, nvcc and NVRTC builds. The only macros of libkmr.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define KMR_HOST_DEVICE __host__ __device__
#define KMR_INLINE __forceinline__
#else
#define KMR_HOST_DEVICE
#define KMR_INLINE inline __attribute__((always_inline))
#endif

#define KMR_VERSION_STRING_HELPER(x) #x

// Inline every call inside a function (host hot loops: the driver's inner
// kernel, so that vector math and formula nodes become one straight block).
#if defined(__GNUC__) && !defined(__CUDACC__) && !defined(__CUDACC_RTC__)
#define KMR_FLATTEN __attribute__((flatten))
#else
#define KMR_FLATTEN
#endif
