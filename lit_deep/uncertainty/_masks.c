/* Keyed MC-dropout masks drawn and applied in one pass (the CPU fast path of lit_deep.uncertainty._masks).
 *
 * Each row of the output holds one (sample, image) pair with row key R (below), and word w of the row is
 * SplitMix64's output mix64(R + (w + 1) G), whose four 16-bit lanes (little-endian int16 view) are the draws of
 * units 4w .. 4w + 3. Unit u is kept when its draw, read as int16, is >= threshold. These are the masks of the
 * torch code in _masks.py, bit for bit, and the output is rounded exactly as its torch ops round it:
 *
 *   dropout:        out = 0 + (scale * keep) * x                       (torch.addcmul(0, keep, x, value=scale))
 *   alpha dropout:  out = base + (1 * keep) * (x * a + shift)           (torch.addcmul(base, keep, x * a + shift))
 *
 * with keep in {0, 1} and every constant rounded to the element type first, as ATen does. Build with
 * -ffp-contract=off so that no multiply-add is fused (ATen's kernels round each operation).
 * Row r reads row r % x_rows of x (x_rows = images: the input is broadcast over the samples).
 */
#include <stdint.h>

#define LD_GAMMA 0x9E3779B97F4A7C15ULL
#define LD_BLOCK 256 /* words hashed at once, then applied: 2 KiB on the stack */

static inline uint64_t ld_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

/* Row (t, s) of samples first .. first + samples - 1 and images indices[0 .. images - 1] has the row key
 * R = mix64(call_key + (indices[s] * 2**14 + first + t + 1) G); the output holds the rows sample-major. */
#define LD_DEFINE(NAME, T)                                                                                        \
  void NAME(uint64_t call_key, const int64_t *indices, int64_t images, int64_t first, int64_t samples,           \
            int64_t units, const T *x, int64_t x_rows, T *out, int32_t threshold, int32_t alpha, double scale_d, \
            double a_d, double shift_d, double base_d) {                                                         \
    const T scale = (T)scale_d, a = (T)a_d, shift = (T)shift_d, base = (T)base_d, one = (T)1, zero = (T)0;      \
    uint64_t h[LD_BLOCK];                                                                                         \
    const int64_t words = (units + 3) / 4;                                                                        \
    for (int64_t r = 0; r < samples * images; ++r) {                                                              \
      const uint64_t row = ((uint64_t)indices[r % images] << 14) + (uint64_t)(first + r / images + 1);          \
      const uint64_t key = ld_mix64(call_key + row * LD_GAMMA);                                                   \
      const T *restrict xr = x + (r % x_rows) * units;                                                           \
      T *restrict o = out + r * units;                                                                            \
      for (int64_t w0 = 0; w0 < words; w0 += LD_BLOCK) {                                                          \
        const int64_t n = words - w0 < LD_BLOCK ? words - w0 : LD_BLOCK;                                          \
        for (int64_t i = 0; i < n; ++i) h[i] = ld_mix64(key + (uint64_t)(w0 + i + 1) * LD_GAMMA);               \
        const int16_t *restrict d = (const int16_t *)h;                                                           \
        const int64_t u0 = 4 * w0, m = units - u0 < 4 * n ? units - u0 : 4 * n;                                  \
        if (alpha) {                                                                                              \
          for (int64_t i = 0; i < m; ++i)                                                                         \
            o[u0 + i] = base + (one * (d[i] >= threshold ? one : zero)) * (xr[u0 + i] * a + shift);              \
        } else {                                                                                                  \
          for (int64_t i = 0; i < m; ++i)                                                                         \
            o[u0 + i] = zero + (scale * (d[i] >= threshold ? one : zero)) * xr[u0 + i];                          \
        }                                                                                                         \
      }                                                                                                           \
    }                                                                                                             \
  }

LD_DEFINE(lit_deep_dropout_f32, float)
LD_DEFINE(lit_deep_dropout_f64, double)

/* The version of this interface: the loader refuses a library that reports another. */
int32_t lit_deep_masks_abi(void) { return 2; }
