// This CPU's fp32 FMA peak, the ceiling of any exact fp32 model (docs/benchmarks.md, issue 13).
// Each thread keeps 16 independent AVX-512 FMA chains busy: enough to cover the FMA latency
// on two FMA units, so the loop runs at the core's issue rate. Best of 5 repeats.
//
//   gcc -O2 -mavx512f -fopenmp tools/analysis_tools/fma_peak.c -o /tmp/fma_peak
//   OMP_NUM_THREADS=1 /tmp/fma_peak        # one core; OMP_NUM_THREADS=2 for two
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#define CHAINS 16

int main(int argc, char **argv) {
  long iters = argc > 1 ? atol(argv[1]) : 100000000L;
  double best = 0;
  for (int rep = 0; rep < 5; rep++) {
    double start = omp_get_wtime();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
      __m512 acc[CHAINS];
      const __m512 mul = _mm512_set1_ps(0.999999f), add = _mm512_set1_ps(1e-7f);
      for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
      for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_fmadd_ps(acc[k], mul, add);
      }
      for (int k = 0; k < CHAINS; k++) sink += _mm512_reduce_add_ps(acc[k]);
    }
    double macs = (double)iters * CHAINS * 16 * omp_get_max_threads();
    double rate = macs / (omp_get_wtime() - start);
    if (rate > best) best = rate;
    if (sink == 12345.f) puts("");  // keeps the chains from being optimised away
  }
  printf("%d thread(s): %.1f G fp32 multiply-adds/s (%.1f GFLOP/s)\n", omp_get_max_threads(),
         best / 1e9, 2 * best / 1e9);
  return 0;
}
