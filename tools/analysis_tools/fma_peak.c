// This CPU's FMA peak, the ceiling of any exact model (docs/benchmarks.md, issue 23):
// fp32 multiply-adds per second, or with "bf16" the AVX512-BF16 dot-product rate (each
// 32-bit lane multiplies two bf16 pairs and adds them into fp32). Each thread keeps 16
// independent FMA chains busy: enough to cover the FMA latency on two FMA units, so the
// loop runs at the core's issue rate. AVX-512 where the compiler targets it, else AVX2.
// Best of 5 repeats.
//
//   gcc -O2 -march=native -fopenmp tools/analysis_tools/fma_peak.c -o /tmp/fma_peak
//   OMP_NUM_THREADS=1 /tmp/fma_peak [ITERS] [fp32|bf16]   # one core; 2 for two
// Prints one line: "<threads> thread(s): <rate> G <precision> multiply-adds/s (...)", the
// rate per wall-clock second, then "cpu time: <rate> G ..." per CPU-second of each thread
// (what a benchmark timed in CPU time compares with: other processes on the machine do
// not lower it).
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

#define CHAINS 16

#ifdef __AVX512F__
typedef __m512 vec;
#define LANES 16
#define SET1 _mm512_set1_ps
#define FMADD _mm512_fmadd_ps
#define SUM _mm512_reduce_add_ps
#else
typedef __m256 vec;
#define LANES 8
#define SET1 _mm256_set1_ps
#define FMADD _mm256_fmadd_ps
static float SUM(__m256 v) {
  float out[8];
  _mm256_storeu_ps(out, v);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

static float chains_fp32(long iters) {
  vec acc[CHAINS];
  const vec mul = SET1(0.999999f), add = SET1(1e-7f);
  for (int k = 0; k < CHAINS; k++) acc[k] = SET1((float)k);
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
    for (int k = 0; k < CHAINS; k++) acc[k] = FMADD(acc[k], mul, add);
  }
  float sink = 0;
  for (int k = 0; k < CHAINS; k++) sink += SUM(acc[k]);
  return sink;
}

#ifdef __AVX512BF16__
static float chains_bf16(long iters) {
  __m512 acc[CHAINS];
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);
  for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_set1_ps((float)k);
  for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
    for (int k = 0; k < CHAINS; k++) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
  }
  float sink = 0;
  for (int k = 0; k < CHAINS; k++) sink += _mm512_reduce_add_ps(acc[k]);
  return sink;
}
#endif

int main(int argc, char **argv) {
  long iters = argc > 1 ? atol(argv[1]) : 100000000L;
  int bf16 = argc > 2 && strcmp(argv[2], "bf16") == 0;
#ifndef __AVX512BF16__
  if (bf16) {
    puts("no bf16 multiply-add instructions (AVX512-BF16) on this CPU or compiler target");
    return 3;
  }
#endif
  // A bf16 dot-product lane does two multiply-adds.
  const double per_step = (double)CHAINS * (bf16 ? 2 * 16 : LANES);
  double best = 0, best_cpu = 0;
  for (int rep = 0; rep < 5; rep++) {
    double start = omp_get_wtime(), start_cpu = cpu_seconds();
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
#ifdef __AVX512BF16__
      sink += bf16 ? chains_bf16(iters) : chains_fp32(iters);
#else
      sink += chains_fp32(iters);
#endif
    }
    double macs = (double)iters * per_step * omp_get_max_threads();
    double rate = macs / (omp_get_wtime() - start);
    double rate_cpu = macs * omp_get_max_threads() / (cpu_seconds() - start_cpu);
    if (rate > best) best = rate;
    if (rate_cpu > best_cpu) best_cpu = rate_cpu;
    if (sink == 12345.f) puts("");  // keeps the chains from being optimised away
  }
  const char *kind = bf16 ? "bf16" : "fp32";
  printf("%d thread(s): %.1f G %s multiply-adds/s (%.1f GFLOP/s)\n", omp_get_max_threads(),
         best / 1e9, kind, 2 * best / 1e9);
  printf("cpu time: %.1f G %s multiply-adds/s\n", best_cpu / 1e9, kind);
  return 0;
}
