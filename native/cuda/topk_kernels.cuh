// Device kernels of CudaTopK (topk_cuda.cu): a tiled fp32 GEMM fused with
// per-block top-k selection, and a per-query merge of the block candidates.
// They use only a small set of CUDA primitives (block/warp sync, shuffles,
// ballots, atomics) so the algorithm can also be exercised off-GPU.
#pragma once
#include <cstdint>

#ifdef __CUDACC__
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

namespace cl {
namespace cudak {

#ifdef __CUDACC__
// load4_aligned: four elements at a 16-byte (fp32) / 8-byte (fp16) aligned p.
__device__ __forceinline__ float half_bits_to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ void load4_aligned(const float* p, float out[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  out[0] = v.x, out[1] = v.y, out[2] = v.z, out[3] = v.w;
}
// Element 0 sits in the low half of the first word (little endian).
__device__ __forceinline__ void load4_aligned(const uint16_t* p, float out[4]) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  out[0] = half_bits_to_float(v.x & 0xffffu), out[1] = half_bits_to_float(v.x >> 16);
  out[2] = half_bits_to_float(v.y & 0xffffu), out[3] = half_bits_to_float(v.y >> 16);
}
#endif

constexpr int kTile = 128;                 // queries and rows per block tile
constexpr int kDepth = 8;                  // GEMM depth step
constexpr int kPad = kTile + 4;            // smem row stride: 16-byte rows, shifted banks
constexpr int kThreads = 256;              // 16 × 16 threads, 8 × 8 scores each
constexpr int kSelectWarps = kThreads / 32;
constexpr int kMergeSlots = 2048;          // merge buffer: the top k plus a batch of candidates
constexpr int kMergeThreads = 512;
constexpr int kNormThreads = 256;          // one warp per row
constexpr long long kNoId = 0x7fffffffffffffffLL;  // id of an empty slot (worse than any real entry)
constexpr unsigned kFullMask = 0xffffffffu;

// flags[] written by the kernels, read by the host after a shard.
enum Flag { kNonFinite = 0, kOverflow = 1, kFlagCount = 2 };

// Higher score first; equal scores: lower id first (as cl::better).
__device__ __forceinline__ bool better(float as, long long ai, float bs, long long bi) {
  return as > bs || (as == bs && ai < bi);
}

// One compare-exchange of a bitonic network: pair a ends up the better of the
// two when best_first, the worse otherwise.
__device__ __forceinline__ void order_pair(float& av, long long& ai, float& bv, long long& bi, bool best_first) {
  if (best_first ? better(bv, bi, av, ai) : better(av, ai, bv, bi)) {
    const float tv = av;
    av = bv;
    bv = tv;
    const long long ti = ai;
    ai = bi;
    bi = ti;
  }
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(uint16_t x) { return half_bits_to_float(x); }

// Four consecutive elements row[k..k+3] as fp32; zeros past d or for a
// missing row. VEC: d % 4 == 0 and rows 4-element aligned, one vector load.
template <typename T, bool VEC>
__device__ __forceinline__ void load4(const T* row, int d, int k, float out[4]) {
  if (row != nullptr && VEC && k < d) {
    load4_aligned(row + k, out);
    return;
  }
#pragma unroll
  for (int u = 0; u < 4; ++u) out[u] = row != nullptr && k + u < d ? to_f32(row[k + u]) : 0.0f;
}

// Bitonic sort of 128 (score, id) pairs held 4 per lane (element lane*4+u),
// best first. Keys are unique except identical empty slots.
__device__ __forceinline__ void warp_sort128(float v[4], long long id[4], int lane) {
#pragma unroll
  for (int size = 2; size <= 128; size <<= 1) {
#pragma unroll
    for (int j = size >> 1; j > 0; j >>= 1) {
      if (j >= 4) {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          const int e = lane * 4 + u;
          const float ov = __shfl_xor_sync(kFullMask, v[u], j >> 2);
          const long long oi = __shfl_xor_sync(kFullMask, id[u], j >> 2);
          // The lower element of a best-first run keeps the better one.
          const bool keep_better = ((e & j) == 0) == ((e & size) == 0);
          if (better(ov, oi, v[u], id[u]) == keep_better) {
            v[u] = ov;
            id[u] = oi;
          }
        }
      } else {
#pragma unroll
        for (int u = 0; u < 4; ++u) {
          if (u & j) continue;
          const int p = u | j;
          order_pair(v[u], id[u], v[p], id[p], ((lane * 4 + u) & size) == 0);
        }
      }
    }
  }
}

// One warp filters and selects one query's 128 scores of the tile (row
// lane*4+u of `scores`): keeps those better than the query's running k-th
// best (thr), and if more than k remain, only the k best. Appends them to the
// query's candidate list.
__device__ __forceinline__ void select_query(const float* scores, const float* inv, int rows_left, long long id0,
                                             float thr_s, long long thr_i, int k, float* cand_s, long long* cand_i,
                                             int* cand_n, long long cap, int* flags, int lane) {
  float v[4], sv[4], iv[4];
  long long id[4];
  bool pass[4];
  int count = 0;
  load4_aligned(scores + lane * 4, sv);
  load4_aligned(inv + lane * 4, iv);
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int e = lane * 4 + u;
    pass[u] = false;
    v[u] = -INFINITY;
    id[u] = kNoId;
    if (e < rows_left) {
      const float s = sv[u] * iv[u];
      if (!isfinite(s)) atomicOr(&flags[kNonFinite], 1);
      if (better(s, id0 + e, thr_s, thr_i)) {
        pass[u] = true;
        v[u] = s;
        id[u] = id0 + e;
      }
    }
    count += __popc(__ballot_sync(kFullMask, pass[u]));
  }
  if (count == 0) return;
  if (count > k) {
    warp_sort128(v, id, lane);
#pragma unroll
    for (int u = 0; u < 4; ++u) pass[u] = lane * 4 + u < k;
    count = k;
  }
  int base = 0;
  if (lane == 0) base = atomicAdd(cand_n, count);
  base = __shfl_sync(kFullMask, base, 0);
  if (base + count > cap) {
    if (lane == 0) atomicOr(&flags[kOverflow], 1);
    return;
  }
  const unsigned below = (1u << lane) - 1u;
  int before = 0;  // passing elements held by earlier u, all lanes
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const unsigned m = __ballot_sync(kFullMask, pass[u]);
    if (pass[u]) {
      const long long slot = base + before + __popc(m & below);
      cand_s[slot] = v[u];
      cand_i[slot] = id[u];
    }
    before += __popc(m);
  }
}

// Block (x: query tile, y: row tile): scores = Q[q0..q0+128) · V[r0..r0+128)ᵀ
// in fp32, times inv[row] (cosine; null: 1), then per-query selection into
// candidate lists cand_*[q * cap ...] with counts cand_n[q].
template <typename T, bool VEC>
__global__ void __launch_bounds__(kThreads, 2)
    score_select(const float* __restrict__ Q, int nq, int d, const T* __restrict__ V, int nrows, long long id0,
                 const float* __restrict__ inv, const float* __restrict__ thr_s, const long long* __restrict__ thr_i,
                 int k, float* cand_s, long long* cand_i, int* cand_n, long long cap, int* flags) {
  constexpr int kStage = kDepth * kPad;
  constexpr int kGemmFloats = 4 * kStage;     // A and B tiles, two stages each
  constexpr int kScoreFloats = 64 * kPad;     // half the query tile's scores
  __shared__ __align__(16) float smem[kGemmFloats > kScoreFloats ? kGemmFloats : kScoreFloats];
  __shared__ __align__(16) float inv_s[kTile];

  const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
  const int q0 = blockIdx.x * kTile, r0 = blockIdx.y * kTile;
  const int rows_left = nrows - r0;
  if (t < kTile) inv_s[t] = inv != nullptr && t < rows_left ? inv[r0 + t] : 1.0f;

  // Loader: thread t fills row t/2, depth (t%2)*4 .. +3 of both tiles.
  const int lr = t >> 1, lk = (t & 1) * 4;
  const float* qrow = q0 + lr < nq ? Q + (long long)(q0 + lr) * d : nullptr;
  const T* vrow = lr < rows_left ? V + (long long)(r0 + lr) * d : nullptr;
  float* As = smem;               // [stage][depth][kPad], query-major columns
  float* Bs = smem + 2 * kStage;  // same for rows
  float a[4], b[4];
  load4<float, VEC>(qrow, d, lk, a);
  load4<T, VEC>(vrow, d, lk, b);
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    As[(lk + u) * kPad + lr] = a[u];
    Bs[(lk + u) * kPad + lr] = b[u];
  }
  __syncthreads();

  // Thread owns queries {ty*4+i, 64+ty*4+i} and rows {tx*4+j, 64+tx*4+j}.
  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
  int stage = 0;
  for (int k0 = 0; k0 < d; k0 += kDepth) {
    const bool more = k0 + kDepth < d;
    if (more) {  // prefetch the next depth step into registers
      load4<float, VEC>(qrow, d, k0 + kDepth + lk, a);
      load4<T, VEC>(vrow, d, k0 + kDepth + lk, b);
    }
    const float* as = As + stage * kStage;
    const float* bs = Bs + stage * kStage;
#pragma unroll
    for (int kk = 0; kk < kDepth; ++kk) {
      float av[8], bv[8];
      load4_aligned(as + kk * kPad + ty * 4, av);
      load4_aligned(as + kk * kPad + 64 + ty * 4, av + 4);
      load4_aligned(bs + kk * kPad + tx * 4, bv);
      load4_aligned(bs + kk * kPad + 64 + tx * 4, bv + 4);
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    if (more) {  // the other stage was last read before the previous barrier
      float* an = As + (stage ^ 1) * kStage;
      float* bn = Bs + (stage ^ 1) * kStage;
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        an[(lk + u) * kPad + lr] = a[u];
        bn[(lk + u) * kPad + lr] = b[u];
      }
    }
    __syncthreads();
    stage ^= 1;
  }

  // Selection, one half of the query tile at a time: scores go through smem
  // so that one warp sees one query's 128 scores.
  const int lane = t & 31, warp = t >> 5;
  float* sc = smem;  // [64 queries][kPad]
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) sc[(ty * 4 + i) * kPad + (j < 4 ? tx * 4 + j : 64 + tx * 4 + j - 4)] = acc[h * 4 + i][j];
    __syncthreads();
    for (int w = 0; w < 64 / kSelectWarps; ++w) {
      const int ql = warp * (64 / kSelectWarps) + w, q = q0 + h * 64 + ql;
      if (q >= nq) break;
      select_query(sc + ql * kPad, inv_s, rows_left, id0 + r0, thr_s[q], thr_i[q], k, cand_s + q * cap,
                   cand_i + q * cap, cand_n + q, cap, flags, lane);
    }
    __syncthreads();
  }
}

// 1/‖row‖ per row (fp64 sum, as the CPU engine); a zero norm records the
// smallest such row (row0 + r) in zero_row.
template <typename T>
__global__ void __launch_bounds__(kNormThreads)
    row_inv_norms(const T* __restrict__ V, int nrows, int d, float* inv, unsigned long long* zero_row,
                  long long row0, int* flags) {
  const int lane = threadIdx.x & 31;
  const int r = blockIdx.x * (kNormThreads / 32) + (threadIdx.x >> 5);
  if (r >= nrows) return;  // warp-uniform
  double ss = 0;
  for (int c = lane; c < d; c += 32) {
    const double x = to_f32(V[(long long)r * d + c]);
    ss += x * x;
  }
#pragma unroll
  for (int m = 16; m > 0; m >>= 1) ss += __shfl_xor_sync(kFullMask, ss, m);
  if (lane != 0) return;
  if (!isfinite(ss)) atomicOr(&flags[kNonFinite], 1);
  if (ss > 0) {
    inv[r] = (float)(1.0 / sqrt(ss));
  } else {
    inv[r] = 0.0f;
    atomicMin(zero_row, (unsigned long long)(row0 + r));
  }
}

// Empty top-k lists and thresholds.
__global__ void init_state(float* top_s, long long* top_i, long long n, float* thr_s, long long* thr_i, int nq) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    top_s[i] = -INFINITY;
    top_i[i] = kNoId;
  }
  if (i < nq) {
    thr_s[i] = -INFINITY;
    thr_i[i] = kNoId;
  }
}

// In-place bitonic sort of n (a power of two) pairs in smem, best first.
__device__ __forceinline__ void block_sort(float* s, long long* id, int n) {
  for (int size = 2; size <= n; size <<= 1) {
    for (int j = size >> 1; j > 0; j >>= 1) {
      for (int t = threadIdx.x; t < n / 2; t += blockDim.x) {
        const int e = 2 * j * (t / j) + (t % j), p = e + j;
        order_pair(s[e], id[e], s[p], id[p], (e & size) == 0);
      }
      __syncthreads();
    }
  }
}

// Block per query: merges the query's candidates into its top-k list (best
// first), updates its threshold (the k-th best) and empties the list.
__global__ void __launch_bounds__(kMergeThreads)
    merge_candidates(float* top_s, long long* top_i, float* thr_s, long long* thr_i, int k,
                     const float* __restrict__ cand_s, const long long* __restrict__ cand_i, int* cand_n,
                     long long cap) {
  __shared__ float bs[kMergeSlots];
  __shared__ long long bi[kMergeSlots];
  const long long q = blockIdx.x;
  const int n = (int)(cand_n[q] < cap ? cand_n[q] : cap);
  if (n == 0) return;
  float* ts = top_s + q * k;
  long long* ti = top_i + q * k;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    bs[i] = ts[i];
    bi[i] = ti[i];
  }
  const int room = kMergeSlots - k;
  for (int done = 0; done < n; done += room) {
    const int m = n - done < room ? n - done : room;
    int len = 1;
    while (len < k + m) len <<= 1;
    for (int i = k + threadIdx.x; i < len; i += blockDim.x) {
      const int c = i - k;
      bs[i] = c < m ? cand_s[q * cap + done + c] : -INFINITY;
      bi[i] = c < m ? cand_i[q * cap + done + c] : kNoId;
    }
    __syncthreads();
    block_sort(bs, bi, len);
  }
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    ts[i] = bs[i];
    ti[i] = bi[i];
  }
  if (threadIdx.x == 0) {
    thr_s[q] = bs[k - 1];
    thr_i[q] = bi[k - 1];
    cand_n[q] = 0;
  }
}

}  // namespace cudak
}  // namespace cl
