/*
 * sldpack.init._kernels: optional compiled kernels of the portable theta0 (spec/SLDP-1-init.md).
 *
 * The same bits as the numpy reference (sldpack/init/philox.py, sldpack/init/schemes.py), faster:
 * Philox4x32-10 and the annex's uniform and normal transforms, with every floating-point step one
 * binary64 + - * / or sqrt (IEEE 754 requires all five to be correctly rounded) in the annex's order,
 * then one rounding to binary32. Plain C99 on the CPython buffer protocol; no numpy C API.
 *
 * What keeps it exact (annex section 1):
 *   - no fused multiply-add: built with -ffp-contract=off (GCC ignores the STDC pragma below; clang
 *     honours both), and no fma() anywhere;
 *   - no x87 extended precision: FLT_EVAL_METHOD must be 0 (SSE2 on x86-64), checked below;
 *   - no -ffast-math style reassociation: __FAST_MATH__ is refused below;
 *   - round-to-nearest-even, the default floating-point environment, which Python never changes.
 * A build that cannot promise these fails to compile, and setup.py's optional=True then falls back
 * to the numpy reference. The loops are written branch-free over small structure-of-arrays batches
 * so that compilers can vectorise them; vector instructions round each lane exactly like the scalar
 * ones, so the bits do not depend on it.
 *
 * The loops run with the GIL released, so the thread pool of sldpack.nn.init fills disjoint ranges
 * of one tensor at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* x86 with GCC or clang: an AVX2 variant of the hot loops is compiled next to the baseline (SSE2)
 * one and picked at import when the CPU has AVX2 (no -march flag, no ifunc). Vector lanes round
 * exactly like scalar operations and AVX2 does not imply FMA, so both produce the same bits; the
 * tests compare every variant with the vectors and the numpy reference. */
#if (defined(__x86_64__) || defined(__i386__)) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 5) || (defined(__clang__) && __clang_major__ >= 7))
#define SLDP_AVX2 1
#include <immintrin.h>
#define TARGET_AVX2 __attribute__((target("avx2")))
#else
#define SLDP_AVX2 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define ALWAYS_INLINE __inline
#endif

#if !defined(__GNUC__) || defined(__clang__)
/* GCC does not implement this pragma (it warns and relies on -ffp-contract=off, set by setup.py) */
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(_MSC_VER) && !defined(__clang__) && !defined(restrict)
#define restrict __restrict
#endif

#if defined(__FAST_MATH__)
#error "sldpack.init._kernels must not be built with -ffast-math (the annex forbids reassociation)"
#endif
#if !defined(FLT_EVAL_METHOD) || FLT_EVAL_METHOD != 0
#error "sldpack.init._kernels needs FLT_EVAL_METHOD == 0 (no x87 excess precision; use SSE2)"
#endif

/* ---- Philox4x32-10 (annex section 2) ------------------------------------------------------------ */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define PHILOX_ROUNDS 10

/* Blocks per batch: 4 words each. The work arrays of one batch (about 40 KiB) stay in L1/L2. */
#define BATCH 512

typedef struct {
    uint32_t k0[PHILOX_ROUNDS]; /* the key of each round: bumped by (W0, W1) between rounds */
    uint32_t k1[PHILOX_ROUNDS];
    uint32_t ctr2, ctr3;
} stream_t;

static void stream_init(stream_t *s, uint32_t key0, uint32_t key1, uint32_t ctr2, uint32_t ctr3)
{
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        s->k0[r] = key0;
        s->k1[r] = key1;
        key0 += PHILOX_W0; /* unsigned: mod 2^32 */
        key1 += PHILOX_W1;
    }
    s->ctr2 = ctr2;
    s->ctr3 = ctr3;
}

/* One Philox round on a counter held in four u32 values. */
#define PHILOX_ROUND(c0, c1, c2, c3, k0, k1)                                  \
    do {                                                                      \
        uint64_t p0_ = (uint64_t)PHILOX_M0 * (uint64_t)(c0);                  \
        uint64_t p1_ = (uint64_t)PHILOX_M1 * (uint64_t)(c2);                  \
        uint32_t n0_ = (uint32_t)(p1_ >> 32) ^ (c1) ^ (k0);                   \
        uint32_t n2_ = (uint32_t)(p0_ >> 32) ^ (c3) ^ (k1);                   \
        (c1) = (uint32_t)p1_;                                                 \
        (c3) = (uint32_t)p0_;                                                 \
        (c0) = n0_;                                                           \
        (c2) = n2_;                                                           \
    } while (0)

/*
 * Blocks first_block .. first_block+n-1 of a stream (counter (b mod 2^32, b >> 32, ctr2, ctr3)), as
 * four word arrays: xj[i] is word j of block first_block + i, i.e. stream word 4 (first_block + i) + j
 * (annex section 3). The rounds run over whole arrays (lanes inner), which vectorises.
 */
static void philox_blocks_generic(const stream_t *s, uint64_t first_block, size_t n, uint32_t *restrict x0,
                                  uint32_t *restrict x1, uint32_t *restrict x2, uint32_t *restrict x3)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t b = first_block + i;
        x0[i] = (uint32_t)b;
        x1[i] = (uint32_t)(b >> 32);
        x2[i] = s->ctr2;
        x3[i] = s->ctr3;
    }
    for (int k = 0; k < PHILOX_ROUNDS; k++) {
        const uint32_t k0 = s->k0[k], k1 = s->k1[k];
        for (size_t i = 0; i < n; i++)
            PHILOX_ROUND(x0[i], x1[i], x2[i], x3[i], k0, k1);
    }
}

#if SLDP_AVX2
/*
 * The same blocks with AVX2 integer intrinsics, 8 blocks per step (integer arithmetic: exact by
 * construction). x86 has no 32x32 -> 64-bit multiply on all eight 32-bit lanes, so the even and the
 * odd lanes are multiplied separately (_mm256_mul_epu32 uses the low half of each 64-bit lane) and
 * the high and low halves of the products are put back in place with blends.
 */
/* One Philox round on eight counters (c0..c3 hold word j of each). */
#define PHILOX_ROUND_AVX2(c0, c1, c2, c3, k0, k1)                                                \
    do {                                                                                         \
        __m256i pe0_ = _mm256_mul_epu32(c0, m0); /* lanes 0, 2, 4, 6: M0 * c0, 64-bit */          \
        __m256i po0_ = _mm256_mul_epu32(_mm256_srli_epi64(c0, 32), m0); /* lanes 1, 3, 5, 7 */   \
        __m256i pe1_ = _mm256_mul_epu32(c2, m1);                                                 \
        __m256i po1_ = _mm256_mul_epu32(_mm256_srli_epi64(c2, 32), m1);                          \
        __m256i hi0_ = _mm256_blend_epi32(_mm256_srli_epi64(pe0_, 32), po0_, 0xAA);              \
        __m256i lo0_ = _mm256_blend_epi32(pe0_, _mm256_slli_epi64(po0_, 32), 0xAA);              \
        __m256i hi1_ = _mm256_blend_epi32(_mm256_srli_epi64(pe1_, 32), po1_, 0xAA);              \
        __m256i lo1_ = _mm256_blend_epi32(pe1_, _mm256_slli_epi64(po1_, 32), 0xAA);              \
        (c0) = _mm256_xor_si256(_mm256_xor_si256(hi1_, c1), k0);                                 \
        (c2) = _mm256_xor_si256(_mm256_xor_si256(hi0_, c3), k1);                                 \
        (c1) = lo1_;                                                                             \
        (c3) = lo0_;                                                                             \
    } while (0)

/* Counter words 0 and 1 of blocks b .. b+7. */
TARGET_AVX2 static ALWAYS_INLINE void counters_avx2(uint64_t b, __m256i *c0, __m256i *c1)
{
    uint32_t lo[8], hi[8];
    for (int l = 0; l < 8; l++) {
        uint64_t bl = b + (uint64_t)l;
        lo[l] = (uint32_t)bl;
        hi[l] = (uint32_t)(bl >> 32);
    }
    *c0 = _mm256_loadu_si256((const __m256i *)lo);
    *c1 = _mm256_loadu_si256((const __m256i *)hi);
}

TARGET_AVX2 static void philox_blocks_avx2(const stream_t *s, uint64_t first_block, size_t n,
                                           uint32_t *restrict x0, uint32_t *restrict x1, uint32_t *restrict x2,
                                           uint32_t *restrict x3)
{
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    const __m256i c2i = _mm256_set1_epi32((int)s->ctr2), c3i = _mm256_set1_epi32((int)s->ctr3);
    size_t i = 0;
    /* two independent groups of 8 per step: one group's rounds form a dependency chain whose
     * latency would otherwise leave the multipliers idle */
    for (; i + 16 <= n; i += 16) {
        __m256i a0, a1, a2 = c2i, a3 = c3i, b0, b1, b2 = c2i, b3 = c3i;
        counters_avx2(first_block + i, &a0, &a1);
        counters_avx2(first_block + i + 8, &b0, &b1);
        for (int k = 0; k < PHILOX_ROUNDS; k++) {
            const __m256i k0 = _mm256_set1_epi32((int)s->k0[k]), k1 = _mm256_set1_epi32((int)s->k1[k]);
            PHILOX_ROUND_AVX2(a0, a1, a2, a3, k0, k1);
            PHILOX_ROUND_AVX2(b0, b1, b2, b3, k0, k1);
        }
        _mm256_storeu_si256((__m256i *)(x0 + i), a0);
        _mm256_storeu_si256((__m256i *)(x1 + i), a1);
        _mm256_storeu_si256((__m256i *)(x2 + i), a2);
        _mm256_storeu_si256((__m256i *)(x3 + i), a3);
        _mm256_storeu_si256((__m256i *)(x0 + i + 8), b0);
        _mm256_storeu_si256((__m256i *)(x1 + i + 8), b1);
        _mm256_storeu_si256((__m256i *)(x2 + i + 8), b2);
        _mm256_storeu_si256((__m256i *)(x3 + i + 8), b3);
    }
    if (i < n)
        philox_blocks_generic(s, first_block + i, n - i, x0 + i, x1 + i, x2 + i, x3 + i);
}
#endif

/* ---- normal transform constants (annex section 6 and appendix A), as binary64 bit patterns ------ */
#define SQRT_HALF_BITS UINT64_C(0x3FE6A09E667F3BCD)

static double from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

static uint64_t to_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* Filled once at import from the hex patterns (exact); C99 hex float literals would do too, but
 * bit patterns are what the annex tabulates, so they are compared digit for digit. */
static double LN2, HALF_PI_2M30;
static double C_[11]; /* C_k = 1.0 / (2k+1) */
static double S_[9];  /* S_k = (-1)^k / (2k+1)!, k = 1..8 (S_[0] unused) */

static void init_constants(void)
{
    static const uint64_t c_bits[11] = {
        UINT64_C(0x3FF0000000000000), UINT64_C(0x3FD5555555555555), UINT64_C(0x3FC999999999999A),
        UINT64_C(0x3FC2492492492492), UINT64_C(0x3FBC71C71C71C71C), UINT64_C(0x3FB745D1745D1746),
        UINT64_C(0x3FB3B13B13B13B14), UINT64_C(0x3FB1111111111111), UINT64_C(0x3FAE1E1E1E1E1E1E),
        UINT64_C(0x3FAAF286BCA1AF28), UINT64_C(0x3FA8618618618618)};
    static const uint64_t s_bits[9] = {
        0, UINT64_C(0xBFC5555555555555), UINT64_C(0x3F81111111111111), UINT64_C(0xBF2A01A01A01A01A),
        UINT64_C(0x3EC71DE3A556C734), UINT64_C(0xBE5AE64567F544E4), UINT64_C(0x3DE6124613A86D09),
        UINT64_C(0xBD6AE7F3E733B81F), UINT64_C(0x3CE952C77030AD4A)};
    LN2 = from_bits(UINT64_C(0x3FE62E42FEFA39EF));
    HALF_PI_2M30 = from_bits(UINT64_C(0x3E1921FB54442D18));
    for (int k = 0; k < 11; k++)
        C_[k] = from_bits(c_bits[k]);
    for (int k = 0; k < 9; k++)
        S_[k] = from_bits(s_bits[k]);
}

/* 2^52 as a binary64 bit pattern: from_bits(TWO52_BITS | j) - 2^52 == j exactly for 0 <= j < 2^52.
 * The integer-to-double conversions below use it because x86 vector units (SSE2, AVX2) have no
 * unsigned 32-bit or 64-bit integer conversion; exact either way. */
#define TWO52_BITS UINT64_C(0x4330000000000000)
#define TWO52 4503599627370496.0

/*
 * Box-Muller (annex section 6), in two halves: the radius rho from the radius word r, then the
 * binary64 values +-(a * rho), +-(b * rho) from the angle word t, before the final rounding to
 * binary32. Every floating-point line is one annex line, in its order; the compiler must not (and,
 * with the flags above, does not) fuse or reorder any of it.
 */
static ALWAYS_INLINE double radius_f64(uint32_t r, double sigma, const double *cst_c)
{
    /* m = r + 1 = f * 2^e with SQRT_HALF <= f < 2 SQRT_HALF. Subtracting SQRT_HALF's bit pattern
     * splits m at sqrt(1/2) (frexp and the fold in one integer step): e = (bits - SH) >> 52, and
     * f = m * 2^-e by lowering the exponent field by e; all exact, as in the numpy reference. */
    double m = from_bits(TWO52_BITS | ((uint64_t)r + 1u)) - TWO52; /* exact: m = r + 1 in [1, 2^32] */
    uint64_t bits = to_bits(m);
    uint64_t e = (bits - SQRT_HALF_BITS) >> 52; /* 1 <= e <= 32 */
    double f = from_bits(bits - (e << 52));
    double s = (f - 1.0) / (f + 1.0);
    double z = s * s;
    double p = cst_c[10];
    p = p * z + cst_c[9];
    p = p * z + cst_c[8];
    p = p * z + cst_c[7];
    p = p * z + cst_c[6];
    p = p * z + cst_c[5];
    p = p * z + cst_c[4];
    p = p * z + cst_c[3];
    p = p * z + cst_c[2];
    p = p * z + cst_c[1];
    p = p * z + cst_c[0];
    double L = (s + s) * p;
    double em = from_bits(TWO52_BITS | (32u - e)) - TWO52; /* RN64(32 - e), exact */
    double A = (em * LN2) - L;
    return sqrt(A + A) * sigma;
}

static ALWAYS_INLINE void angle_f64(uint32_t t, double rho, const double *cst_s, double *zc, double *zs)
{
    /* octant o = t >> 29, phi = RN64(min(w, 2^30 - w)) * K with w = t mod 2^30 */
    uint32_t w = t & 0x3FFFFFFFu;
    uint32_t wc = 0x40000000u - w;
    uint32_t tp = w < wc ? w : wc; /* in [0, 2^29] */
    double phi = (from_bits(TWO52_BITS | tp) - TWO52) * HALF_PI_2M30; /* RN64(t') exact */
    double y = phi * phi;
    double q = cst_s[8];
    q = q * y + cst_s[7];
    q = q * y + cst_s[6];
    q = q * y + cst_s[5];
    q = q * y + cst_s[4];
    q = q * y + cst_s[3];
    q = q * y + cst_s[2];
    q = q * y + cst_s[1];
    double sn = phi + ((phi * y) * q);
    double cs = sqrt(1.0 - (sn * sn));

    /* octant table: octants 1, 2, 5, 6 (bit 30 of t + 2^29) swap the roles of cs and sn;
     * cos < 0 in octants 2..5 (bit 31 of t + 2^30, mod 2^32), sin < 0 in octants 4..7 (bit 31 of t).
     * The sign is applied to the product by flipping its sign bit: exact negation, -(+0) = -0. */
    uint64_t swap = (uint64_t)0 - (uint64_t)(((t + 0x20000000u) >> 30) & 1u);
    uint64_t csb = to_bits(cs), snb = to_bits(sn), x = (csb ^ snb) & swap;
    double a = from_bits(csb ^ x), b = from_bits(snb ^ x);
    uint64_t negc = (uint64_t)((t + 0x40000000u) >> 31) << 63;
    uint64_t negs = (uint64_t)(t >> 31) << 63;
    *zc = from_bits(to_bits(a * rho) ^ negc);
    *zs = from_bits(to_bits(b * rho) ^ negs);
}

/*
 * Normal values of n <= BATCH pairs (r[i], t[i]): vc[i] = RN32(zc), vs[i] = RN32(zs) (OUT_T float),
 * or the binary64 values themselves (OUT_T double: the same loop, so tests can compare the
 * intermediates of every compiled variant with the reference; float32 outputs alone would hide a
 * contracted or reordered operation in all but about one value in 10^8).
 * Two passes (radii, then angles) instead of one: each element is a long chain of dependent
 * operations (the polynomials), and shorter loop bodies let the CPU overlap more elements.
 */
#define NORMAL_VALUES_BODY(OUT_T)                                          \
    {                                                                      \
        double rho[BATCH];                                                 \
        /* local copies: coefficients may stay in registers */             \
        double cc[11], cs[9];                                              \
        memcpy(cc, C_, sizeof cc);                                         \
        memcpy(cs, S_, sizeof cs);                                         \
        for (size_t i = 0; i < n; i++)                                     \
            rho[i] = radius_f64(r[i], sigma, cc);                          \
        for (size_t i = 0; i < n; i++) {                                   \
            double zc, zs;                                                 \
            angle_f64(t[i], rho[i], cs, &zc, &zs);                         \
            vc[i] = (OUT_T)zc; /* float: the one rounding, ties to even */ \
            vs[i] = (OUT_T)zs;                                             \
        }                                                                  \
    }

/*
 * Uniform values (annex section 5): v = RN32((k - 2^23) * 2^-23 * b32) with k = w >> 8. The product
 * of the 24-bit integer (k - 2^23) and bs = b32 * 2^-23 (exact, a binary32) has at most 48 significant
 * bits, so one binary32 multiplication rounds the exact product once: the annex's value.
 */
static ALWAYS_INLINE void uniform_values_body(const uint32_t *restrict w, size_t n, float bs, float *restrict v)
{
    for (size_t i = 0; i < n; i++) {
        int32_t k = (int32_t)(w[i] >> 8) - 8388608;
        v[i] = (float)k * bs; /* (float)k is exact: |k| <= 2^23 */
    }
}

/* The loops above, compiled for the baseline ISA and, where available, for AVX2 (auto-vectorised). */
static void normal_values_generic(const uint32_t *restrict r, const uint32_t *restrict t, size_t n, double sigma,
                                  float *restrict vc, float *restrict vs)
NORMAL_VALUES_BODY(float)

static void normal_f64_generic(const uint32_t *restrict r, const uint32_t *restrict t, size_t n, double sigma,
                               double *restrict vc, double *restrict vs)
NORMAL_VALUES_BODY(double)

static void uniform_values_generic(const uint32_t *restrict w, size_t n, float bs, float *restrict v)
{
    uniform_values_body(w, n, bs, v);
}

#if SLDP_AVX2
TARGET_AVX2 static void normal_values_avx2(const uint32_t *restrict r, const uint32_t *restrict t, size_t n,
                                           double sigma, float *restrict vc, float *restrict vs)
NORMAL_VALUES_BODY(float)

TARGET_AVX2 static void normal_f64_avx2(const uint32_t *restrict r, const uint32_t *restrict t, size_t n,
                                        double sigma, double *restrict vc, double *restrict vs)
NORMAL_VALUES_BODY(double)

TARGET_AVX2 static void uniform_values_avx2(const uint32_t *restrict w, size_t n, float bs, float *restrict v)
{
    uniform_values_body(w, n, bs, v);
}
#endif

typedef struct {
    const char *name;
    void (*philox)(const stream_t *, uint64_t, size_t, uint32_t *restrict, uint32_t *restrict,
                   uint32_t *restrict, uint32_t *restrict);
    void (*normal)(const uint32_t *restrict, const uint32_t *restrict, size_t, double, float *restrict,
                   float *restrict);
    void (*uniform)(const uint32_t *restrict, size_t, float, float *restrict);
    void (*normal_f64)(const uint32_t *restrict, const uint32_t *restrict, size_t, double, double *restrict,
                       double *restrict);
} kernels_t;

static const kernels_t KERNELS[] = {
    {"generic", philox_blocks_generic, normal_values_generic, uniform_values_generic, normal_f64_generic},
#if SLDP_AVX2
    {"avx2", philox_blocks_avx2, normal_values_avx2, uniform_values_avx2, normal_f64_avx2},
#endif
};
#define N_KERNELS (sizeof KERNELS / sizeof KERNELS[0])

/* Whether this CPU (and OS) can run KERNELS[i]. */
static int kernels_supported(size_t i)
{
    if (strcmp(KERNELS[i].name, "generic") == 0)
        return 1;
#if SLDP_AVX2
    if (strcmp(KERNELS[i].name, "avx2") == 0) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") != 0; /* includes the OS's saving of the AVX state */
    }
#endif
    return 0;
}

static const kernels_t *active_kernels = &KERNELS[0];

/* out[4i + j] = xj[i]: four lanes back into stream order (one function per item type, so that no
 * memory is read through a pointer type other than the one it was written with). */
#define DEFINE_INTERLEAVE4(NAME, T)                                                                    \
    static void NAME(const T *restrict x0, const T *restrict x1, const T *restrict x2, const T *restrict x3, \
                     size_t n, T *restrict out)                                                        \
    {                                                                                                  \
        for (size_t i = 0; i < n; i++) {                                                               \
            out[4 * i] = x0[i];                                                                        \
            out[4 * i + 1] = x1[i];                                                                    \
            out[4 * i + 2] = x2[i];                                                                    \
            out[4 * i + 3] = x3[i];                                                                    \
        }                                                                                              \
    }
DEFINE_INTERLEAVE4(interleave4_u32, uint32_t)
DEFINE_INTERLEAVE4(interleave4_f32, float)

enum transform { T_WORDS = 0, T_UNIFORM = 1, T_NORMAL = 2 };

/* One batch's work arrays: the four Philox lanes, their float32 values, then stream order. */
typedef struct {
    uint32_t x[4][BATCH];
    float v[4][BATCH];
    union {
        float f[4 * BATCH];
        uint32_t u[4 * BATCH];
    } out; /* for a partial batch: copied out with memcpy, whichever member was written */
} work_t;

/*
 * Values start .. start+count-1 of a stream into out (4 bytes each): raw words, uniform or normal.
 * Any start and count: the covering blocks are computed a batch at a time (values 4b .. 4b+3 of
 * block b), then the overlapping part is copied out. Pair q of the normal transform is (w[2q],
 * w[2q+1]): in block b, pairs (x0, x1) and (x2, x3) give values 4b, 4b+1 and 4b+2, 4b+3.
 */
static void fill_range(const kernels_t *kn, const stream_t *s, enum transform tr, double scale, uint64_t start,
                       size_t count, void *out, work_t *wk)
{
    float bs = (float)(scale * (1.0 / 8388608.0)); /* 2^-23; exact: scale is a binary32 value for uniform */
    unsigned char *dst = (unsigned char *)out;
    uint64_t end = start + (uint64_t)count;
    uint64_t b = start / 4;
    while (b * 4 < end) {
        uint64_t lo = b * 4; /* first value of this batch */
        uint64_t nb64 = (end - lo + 3) / 4;
        size_t nb = nb64 > BATCH ? BATCH : (size_t)nb64;
        kn->philox(s, b, nb, wk->x[0], wk->x[1], wk->x[2], wk->x[3]);
        if (tr == T_NORMAL) {
            kn->normal(wk->x[0], wk->x[1], nb, scale, wk->v[0], wk->v[1]);
            kn->normal(wk->x[2], wk->x[3], nb, scale, wk->v[2], wk->v[3]);
        } else if (tr == T_UNIFORM) {
            for (int j = 0; j < 4; j++)
                kn->uniform(wk->x[j], nb, bs, wk->v[j]);
        }
        uint64_t hi = lo + 4 * (uint64_t)nb;
        uint64_t from = lo < start ? start : lo;
        uint64_t to = hi > end ? end : hi;
        int whole = from == lo && to == hi; /* the whole batch goes straight into the destination */
        unsigned char *target = whole ? dst + 4 * (size_t)(lo - start) : (unsigned char *)&wk->out;
        if (tr == T_WORDS)
            interleave4_u32(wk->x[0], wk->x[1], wk->x[2], wk->x[3], nb, (uint32_t *)(void *)target);
        else
            interleave4_f32(wk->v[0], wk->v[1], wk->v[2], wk->v[3], nb, (float *)(void *)target);
        if (!whole)
            memcpy(dst + 4 * (size_t)(from - start), (unsigned char *)&wk->out + 4 * (size_t)(from - lo),
                   4 * (size_t)(to - from));
        b += nb;
    }
}

/* ---- Python glue ---------------------------------------------------------------------------------- */
static int get_u64(PyObject *obj, const char *what, uint64_t *out)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int", what);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(obj); /* OverflowError if < 0 or >= 2^64 */
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int get_u32(PyObject *obj, const char *what, uint32_t *out)
{
    uint64_t v;
    if (get_u64(obj, what, &v) < 0)
        return -1;
    if (v > 0xFFFFFFFFu) {
        PyErr_Format(PyExc_OverflowError, "%s must lie in [0, 2**32)", what);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* The buffer's item format, without a native/little-endian prefix ('@', '=', '<'). */
static const char *plain_format(const Py_buffer *view)
{
    const char *f = view->format ? view->format : "B";
    if (*f == '@' || *f == '=')
        return f + 1;
#if PY_LITTLE_ENDIAN
    if (*f == '<')
        return f + 1;
#endif
    return f;
}

static int get_out(PyObject *obj, enum transform tr, Py_buffer *view)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    const char *f = plain_format(view);
    int ok = view->itemsize == 4 && ((uintptr_t)view->buf % 4) == 0 &&
             (tr == T_WORDS ? (strcmp(f, "I") == 0 || strcmp(f, "L") == 0) : strcmp(f, "f") == 0);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "out must be a writable, aligned, C-contiguous buffer of %s, got format '%s'",
                     tr == T_WORDS ? "uint32" : "float32", view->format ? view->format : "B");
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* (out, key0, key1, ctr2, ctr3, start[, scale]) -> None */
static PyObject *fill_common(PyObject *args, enum transform tr)
{
    PyObject *out_obj, *o_k0, *o_k1, *o_c2, *o_c3, *o_start;
    double scale = 0.0;
    if (tr == T_WORDS) {
        if (!PyArg_ParseTuple(args, "OOOOOO", &out_obj, &o_k0, &o_k1, &o_c2, &o_c3, &o_start))
            return NULL;
    } else if (!PyArg_ParseTuple(args, "OOOOOOd", &out_obj, &o_k0, &o_k1, &o_c2, &o_c3, &o_start, &scale)) {
        return NULL;
    }
    uint32_t k0, k1, c2, c3;
    uint64_t start;
    if (get_u32(o_k0, "key0", &k0) < 0 || get_u32(o_k1, "key1", &k1) < 0 || get_u32(o_c2, "ctr2", &c2) < 0 ||
        get_u32(o_c3, "ctr3", &c3) < 0 || get_u64(o_start, "start", &start) < 0)
        return NULL;
    if (tr == T_NORMAL && !(isfinite(scale) && scale >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "sigma must be finite and >= 0");
        return NULL;
    }
    if (tr == T_UNIFORM && !(isfinite(scale) && scale > 0.0 && (double)(float)scale == scale)) {
        PyErr_SetString(PyExc_ValueError, "bound must be a positive, finite binary32 value");
        return NULL;
    }
    Py_buffer view;
    if (get_out(out_obj, tr, &view) < 0)
        return NULL;
    size_t count = (size_t)(view.len / 4);
    /* start + count must stay below 2^64 (theta0 tensors have fewer than 2^62 values) */
    if ((uint64_t)count > UINT64_MAX - start) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_OverflowError, "value range beyond the stream");
        return NULL;
    }
    stream_t s;
    stream_init(&s, k0, k1, c2, c3);
    if (count > 0) {
        work_t wk; /* about 24 KiB of stack, per call and so per thread */
        const kernels_t *kn = active_kernels;
        Py_BEGIN_ALLOW_THREADS
        fill_range(kn, &s, tr, scale, start, count, view.buf, &wk);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static PyObject *py_fill_words(PyObject *self, PyObject *args)
{
    (void)self;
    return fill_common(args, T_WORDS);
}

static PyObject *py_fill_uniform(PyObject *self, PyObject *args)
{
    (void)self;
    return fill_common(args, T_UNIFORM);
}

static PyObject *py_fill_normal(PyObject *self, PyObject *args)
{
    (void)self;
    return fill_common(args, T_NORMAL);
}

static PyObject *py_philox(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o[6];
    if (!PyArg_ParseTuple(args, "OOOOOO", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5]))
        return NULL;
    uint32_t v[6];
    static const char *names[6] = {"c0", "c1", "c2", "c3", "k0", "k1"};
    for (int i = 0; i < 6; i++)
        if (get_u32(o[i], names[i], &v[i]) < 0)
            return NULL;
    uint32_t c0 = v[0], c1 = v[1], c2 = v[2], c3 = v[3], k0 = v[4], k1 = v[5];
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        if (r) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        PHILOX_ROUND(c0, c1, c2, c3, k0, k1);
    }
    return Py_BuildValue("(kkkk)", (unsigned long)c0, (unsigned long)c1, (unsigned long)c2, (unsigned long)c3);
}

static PyObject *py_normal_pair(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_r, *o_t;
    double sigma;
    if (!PyArg_ParseTuple(args, "OOd", &o_r, &o_t, &sigma))
        return NULL;
    uint32_t r, t;
    if (get_u32(o_r, "radius word", &r) < 0 || get_u32(o_t, "angle word", &t) < 0)
        return NULL;
    double zc, zs;
    angle_f64(t, radius_f64(r, sigma, C_), S_, &zc, &zs);
    return Py_BuildValue("(dd)", zc, zs);
}

/* normal_f64(r, t, sigma, zc, zs): r, t uint32 buffers; zc, zs float64 buffers of the same length. */
static PyObject *py_normal_f64(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *obj[4];
    double sigma;
    if (!PyArg_ParseTuple(args, "OOdOO", &obj[0], &obj[1], &sigma, &obj[2], &obj[3]))
        return NULL;
    Py_buffer v[4];
    int got = 0, ok = 1;
    for (; got < 4; got++) {
        int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (got >= 2 ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(obj[got], &v[got], flags) < 0) {
            ok = 0;
            break;
        }
        const char *f = plain_format(&v[got]);
        size_t want = got < 2 ? 4 : 8;
        int fmt_ok = got < 2 ? (strcmp(f, "I") == 0 || strcmp(f, "L") == 0) : strcmp(f, "d") == 0;
        if (!fmt_ok || (size_t)v[got].itemsize != want || ((uintptr_t)v[got].buf % want) != 0 ||
            v[got].len / v[got].itemsize != v[0].len / 4) {
            PyErr_SetString(PyExc_TypeError, "normal_f64 needs aligned uint32 r, t and float64 zc, zs of one length");
            got++;
            ok = 0;
            break;
        }
    }
    if (ok) {
        size_t n = (size_t)(v[0].len / 4);
        const uint32_t *r = (const uint32_t *)v[0].buf, *t = (const uint32_t *)v[1].buf;
        double *zc = (double *)v[2].buf, *zs = (double *)v[3].buf;
        const kernels_t *kn = active_kernels;
        Py_BEGIN_ALLOW_THREADS
        for (size_t i = 0; i < n; i += BATCH)
            kn->normal_f64(r + i, t + i, n - i < BATCH ? n - i : BATCH, sigma, zc + i, zs + i);
        Py_END_ALLOW_THREADS
    }
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&v[i]);
    if (!ok)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_uniform_value(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o_w;
    double bound;
    if (!PyArg_ParseTuple(args, "Od", &o_w, &bound))
        return NULL;
    uint32_t w;
    if (get_u32(o_w, "word", &w) < 0)
        return NULL;
    if (!(isfinite(bound) && bound > 0.0 && (double)(float)bound == bound)) {
        PyErr_SetString(PyExc_ValueError, "bound must be a positive, finite binary32 value");
        return NULL;
    }
    float v;
    uniform_values_generic(&w, 1, (float)(bound * (1.0 / 8388608.0)), &v);
    return PyFloat_FromDouble((double)v);
}

static PyObject *py_variants(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < N_KERNELS; i++) {
        if (!kernels_supported(i))
            continue;
        PyObject *name = PyUnicode_FromString(KERNELS[i].name);
        if (name == NULL || PyList_Append(out, name) < 0) {
            Py_XDECREF(name);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(name);
    }
    PyObject *tup = PyList_AsTuple(out);
    Py_DECREF(out);
    return tup;
}

static PyObject *py_variant(PyObject *self, PyObject *noargs)
{
    (void)self;
    (void)noargs;
    return PyUnicode_FromString(active_kernels->name);
}

static PyObject *py_use_variant(PyObject *self, PyObject *args)
{
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    for (size_t i = 0; i < N_KERNELS; i++) {
        if (strcmp(KERNELS[i].name, name) == 0 && kernels_supported(i)) {
            active_kernels = &KERNELS[i];
            Py_RETURN_NONE;
        }
    }
    PyErr_Format(PyExc_ValueError, "kernel variant '%s' is not available on this machine", name);
    return NULL;
}

static PyMethodDef methods[] = {
    {"normal_f64", py_normal_f64, METH_VARARGS,
     "normal_f64(r, t, sigma, zc, zs) -> None: binary64 Box-Muller pairs of word arrays (active variant)."},
    {"uniform_value", py_uniform_value, METH_VARARGS,
     "uniform_value(w, bound) -> float: the uniform transform of one word (a binary32 value)."},
    {"variants", py_variants, METH_NOARGS,
     "variants() -> tuple[str, ...]: the loop variants this CPU can run ('generic', 'avx2'), best last."},
    {"variant", py_variant, METH_NOARGS, "variant() -> str: the loop variant in use."},
    {"use_variant", py_use_variant, METH_VARARGS,
     "use_variant(name) -> None: switch the loop variant (for tests; all variants give the same bits)."},
    {"philox4x32_10", py_philox, METH_VARARGS,
     "philox4x32_10(c0, c1, c2, c3, k0, k1) -> (x0, x1, x2, x3): one Philox4x32-10 block."},
    {"fill_words", py_fill_words, METH_VARARGS,
     "fill_words(out, key0, key1, ctr2, ctr3, start) -> None: stream words start.. into a uint32 buffer."},
    {"fill_uniform", py_fill_uniform, METH_VARARGS,
     "fill_uniform(out, key0, key1, ctr2, ctr3, start, bound) -> None: uniform values start.. (float32)."},
    {"fill_normal", py_fill_normal, METH_VARARGS,
     "fill_normal(out, key0, key1, ctr2, ctr3, start, sigma) -> None: normal values start.. (float32)."},
    {"normal_pair", py_normal_pair, METH_VARARGS,
     "normal_pair(r, t, sigma) -> (zc, zs): the binary64 Box-Muller pair before rounding to binary32."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "sldpack.init._kernels",
    "Compiled kernels of the portable theta0 (spec/SLDP-1-init.md): same bits as the numpy reference.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__kernels(void)
{
    init_constants();
    for (size_t i = 0; i < N_KERNELS; i++) /* the best supported variant: the last one */
        if (kernels_supported(i))
            active_kernels = &KERNELS[i];
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "BATCH_BLOCKS", BATCH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
