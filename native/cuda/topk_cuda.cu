#include "topk_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "../core/error.h"
#include "cuda_device.h"
#include "cuda_util.cuh"
#include "topk_kernels.cuh"

namespace cl {
namespace {

using cudak::kTile;

// Device budget for the candidate lists, which bounds the rows per chunk.
constexpr int64_t kCandidateBytes = int64_t(512) << 20;
constexpr int64_t kStagingBytes = int64_t(64) << 20;  // per staging buffer
constexpr int64_t kMaxRowTiles = 65535;               // grid.y limit

// Page-locked host buffer: the source of asynchronous uploads.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) { check(cudaMallocHost(&p_, bytes), "cudaMallocHost (staging buffer)"); }
  ~PinnedBuffer() { cudaFreeHost(p_); }
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
};

// Host copy into a staging buffer over a few threads: one thread's memcpy
// (~10 GB/s) would be slower than both the upload and the scan.
void parallel_copy(void* dst, const void* src, size_t bytes) {
  static const int threads = std::clamp(int(std::thread::hardware_concurrency()) / 2, 1, 8);
  constexpr size_t kMinSlice = size_t(8) << 20;
  const int n = int(std::min<size_t>(threads, (bytes + kMinSlice - 1) / kMinSlice));
  const size_t part = n > 1 ? (bytes + n - 1) / n : bytes;
  auto slice = [&](int i) {
    const size_t off = i * part;
    if (off < bytes) std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off,
                                 std::min(part, bytes - off));
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < n; ++i) pool.emplace_back(slice, i);
  slice(0);
  for (std::thread& t : pool) t.join();
}

// Queries validated like the CPU engine's, normalised under cosine (fp64).
std::vector<float> prepare_queries(const float* queries, int64_t nq, int64_t d, Metric metric) {
  std::vector<float> q(queries, queries + nq * d);
  for (int64_t i = 0; i < nq * d; ++i)
    require(std::isfinite(q[i]), "queries: expected finite values, found NaN or Inf at row " + std::to_string(i / d) +
                                     ", column " + std::to_string(i % d));
  if (metric != Metric::Cosine) return q;
  for (int64_t i = 0; i < nq; ++i) {
    double s = 0;
    for (int64_t j = 0; j < d; ++j) s += double(q[i * d + j]) * q[i * d + j];
    require(s > 0, "queries: row " + std::to_string(i) + " has zero norm, cosine is undefined");
    const float inv = static_cast<float>(1.0 / std::sqrt(s));
    for (int64_t j = 0; j < d; ++j) q[i * d + j] *= inv;
  }
  return q;
}

// Row of the first NaN/Inf element of the shard, or -1.
int64_t first_bad_row(const MatrixView& m) {
  for (int64_t i = 0; i < m.rows * m.cols; ++i) {
    const bool bad = m.dtype == DType::F16 ? (m.f16()[i] & 0x7c00u) == 0x7c00u : !std::isfinite(m.f32()[i]);
    if (bad) return i / m.cols;
  }
  return -1;
}

// Rows per chunk: a multiple of the tile within the staging and candidate
// budgets (each row tile may emit min(k, 128) candidates per query).
int64_t pick_chunk_rows(int64_t nq, int64_t d, int k) {
  const int64_t per_tile = nq * std::min(k, kTile) * int64_t(sizeof(float) + sizeof(long long));
  int64_t tiles = std::min(kCandidateBytes / per_tile, kStagingBytes / (d * int64_t(sizeof(float)) * kTile));
  return std::max<int64_t>(1, std::min(tiles, kMaxRowTiles)) * kTile;
}

}  // namespace

struct CudaTopK::Impl {
  int64_t nq, d, chunk;
  int k;
  Metric metric;
  long long cap;  // candidate slots per query and chunk
  int64_t rows_seen = 0;
  bool broken = false;

  DeviceBuffer<float> q, top_s, thr_s, cand_s, inv;
  DeviceBuffer<long long> top_i, thr_i, cand_i;
  DeviceBuffer<int> cand_n, flags;
  DeviceBuffer<unsigned long long> zero_row;
  DeviceBuffer<char> rows[2];
  PinnedBuffer staging[2];
  cudaStream_t copy = nullptr, compute = nullptr;
  cudaEvent_t copied[2] = {nullptr, nullptr}, consumed[2] = {nullptr, nullptr};

  ~Impl() {
    // Queued work may still read the buffers (after an error or a cancel).
    if (compute) cudaStreamSynchronize(compute);
    if (copy) cudaStreamSynchronize(copy);
    for (cudaEvent_t e : {copied[0], copied[1], consumed[0], consumed[1]})
      if (e) cudaEventDestroy(e);
    if (compute) cudaStreamDestroy(compute);
    if (copy) cudaStreamDestroy(copy);
  }

  void launch_check(const char* kernel) { check(cudaGetLastError(), kernel); }

  // Uploads chunk c of the shard into device buffer c % 2 (copy stream) and
  // queues its scan on the compute stream.
  void queue_chunk(const MatrixView& shard, int64_t r0, int64_t n, int64_t id0, int b) {
    const size_t bytes = size_t(n * d) * shard.element_size();
    check(cudaEventSynchronize(copied[b]), "cudaEventSynchronize (staging buffer reuse)");
    parallel_copy(staging[b].get(), static_cast<const char*>(shard.data) + size_t(r0 * d) * shard.element_size(), bytes);
    check(cudaStreamWaitEvent(copy, consumed[b], 0), "cudaStreamWaitEvent");
    check(cudaMemcpyAsync(rows[b].get(), staging[b].get(), bytes, cudaMemcpyHostToDevice, copy), "upload of a chunk");
    check(cudaEventRecord(copied[b], copy), "cudaEventRecord");
    check(cudaStreamWaitEvent(compute, copied[b], 0), "cudaStreamWaitEvent");
    if (shard.dtype == DType::F16)
      scan<uint16_t>(reinterpret_cast<const uint16_t*>(rows[b].get()), int(n), id0, r0);
    else
      scan<float>(reinterpret_cast<const float*>(rows[b].get()), int(n), id0, r0);
    check(cudaEventRecord(consumed[b], compute), "cudaEventRecord");
  }

  template <typename T>
  void scan(const T* v, int n, long long id0, long long shard_row0) {
    const float* inv_p = nullptr;
    if (metric == Metric::Cosine) {
      const int per_block = cudak::kNormThreads / 32;
      cudak::row_inv_norms<T><<<(n + per_block - 1) / per_block, cudak::kNormThreads, 0, compute>>>(
          v, n, int(d), inv.get(), zero_row.get(), shard_row0, flags.get());
      launch_check("row_inv_norms kernel");
      inv_p = inv.get();
    }
    const dim3 grid(unsigned((nq + kTile - 1) / kTile), unsigned((n + kTile - 1) / kTile));
    auto kernel = d % 4 == 0 ? cudak::score_select<T, true> : cudak::score_select<T, false>;
    kernel<<<grid, cudak::kThreads, 0, compute>>>(q.get(), int(nq), int(d), v, n, id0, inv_p, thr_s.get(),
                                                  thr_i.get(), k, cand_s.get(), cand_i.get(), cand_n.get(), cap,
                                                  flags.get());
    launch_check("score_select kernel");
    cudak::merge_candidates<<<unsigned(nq), cudak::kMergeThreads, 0, compute>>>(
        top_s.get(), top_i.get(), thr_s.get(), thr_i.get(), k, cand_s.get(), cand_i.get(), cand_n.get(), cap);
    launch_check("merge_candidates kernel");
  }

  // Turns the kernels' flags for the shard just scanned into errors.
  void check_flags(const MatrixView& shard, int64_t id_offset) {
    int f[cudak::kFlagCount];
    unsigned long long zr = 0;
    check(cudaMemcpy(f, flags.get(), sizeof f, cudaMemcpyDeviceToHost), "download of flags");
    check(cudaMemcpy(&zr, zero_row.get(), sizeof zr, cudaMemcpyDeviceToHost), "download of flags");
    if (zr != ULLONG_MAX)
      fail("vocabulary: row " + std::to_string(id_offset + int64_t(zr)) + " has zero norm, cosine is undefined");
    if (f[cudak::kNonFinite]) {
      const int64_t r = first_bad_row(shard);
      fail(r >= 0 ? "vocabulary: row " + std::to_string(id_offset + r) +
                        " gives a non-finite score (its vector holds NaN/Inf)"
                  : "vocabulary: a row in ids [" + std::to_string(id_offset) + ", " +
                        std::to_string(id_offset + shard.rows) + ") gives a non-finite score (overflow)");
    }
    require(!f[cudak::kOverflow], "CudaTopK: internal error, candidate list overflow");
  }
};

CudaTopK::CudaTopK(const float* queries, int64_t nq, int64_t d, int k, Metric metric, int64_t chunk_rows)
    : impl_(new Impl) {
  Impl& s = *impl_;
  require(nq > 0 && nq <= INT_MAX, "queries: expected 1 to " + std::to_string(INT_MAX) + " queries, got " +
                                       std::to_string(nq));
  require(d > 0 && d <= INT_MAX, "queries: expected dimension 1 to " + std::to_string(INT_MAX) + ", got " +
                                     std::to_string(d));
  require(k >= 1 && k <= kMaxK, "k: expected 1 <= k <= " + std::to_string(kMaxK) + " on the GPU, got " +
                                    std::to_string(k));
  require(chunk_rows >= 0, "chunk_rows: expected >= 0, got " + std::to_string(chunk_rows));
  require(cuda_available(), "CUDA: no usable GPU (cudaGetDeviceCount found none or the driver is missing)");
  std::vector<float> qh = prepare_queries(queries, nq, d, metric);

  s.nq = nq, s.d = d, s.k = k, s.metric = metric;
  s.chunk = chunk_rows > 0 ? std::min(chunk_rows, kMaxRowTiles * kTile) : pick_chunk_rows(nq, d, k);
  s.cap = (s.chunk + kTile - 1) / kTile * std::min(k, kTile);
  s.q = device_alloc<float>(nq * d, "cudaMalloc (queries)");
  s.top_s = device_alloc<float>(nq * k, "cudaMalloc (top-k scores)");
  s.top_i = device_alloc<long long>(nq * k, "cudaMalloc (top-k ids)");
  s.thr_s = device_alloc<float>(nq, "cudaMalloc (thresholds)");
  s.thr_i = device_alloc<long long>(nq, "cudaMalloc (thresholds)");
  s.cand_s = device_alloc<float>(nq * s.cap, "cudaMalloc (candidate scores)");
  s.cand_i = device_alloc<long long>(nq * s.cap, "cudaMalloc (candidate ids)");
  s.cand_n = device_alloc<int>(nq, "cudaMalloc (candidate counts)");
  s.flags = device_alloc<int>(cudak::kFlagCount, "cudaMalloc (flags)");
  s.zero_row = device_alloc<unsigned long long>(1, "cudaMalloc (flags)");
  if (metric == Metric::Cosine) s.inv = device_alloc<float>(s.chunk, "cudaMalloc (row norms)");
  const size_t chunk_bytes = size_t(s.chunk * d) * sizeof(float);
  for (int b = 0; b < 2; ++b) {
    s.rows[b] = device_alloc<char>(chunk_bytes, "cudaMalloc (chunk buffer)");
    s.staging[b] = PinnedBuffer(chunk_bytes);
    check(cudaEventCreateWithFlags(&s.copied[b], cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventCreateWithFlags(&s.consumed[b], cudaEventDisableTiming), "cudaEventCreate");
  }
  check(cudaStreamCreateWithFlags(&s.copy, cudaStreamNonBlocking), "cudaStreamCreate");
  check(cudaStreamCreateWithFlags(&s.compute, cudaStreamNonBlocking), "cudaStreamCreate");

  upload(s.q.get(), qh.data(), int64_t(qh.size()), "upload of queries");
  check(cudaMemset(s.cand_n.get(), 0, nq * sizeof(int)), "cudaMemset");
  check(cudaMemset(s.flags.get(), 0, cudak::kFlagCount * sizeof(int)), "cudaMemset");
  check(cudaMemset(s.zero_row.get(), 0xff, sizeof(unsigned long long)), "cudaMemset");
  const long long n = nq * k;
  cudak::init_state<<<unsigned((std::max<long long>(n, nq) + 255) / 256), 256>>>(s.top_s.get(), s.top_i.get(), n,
                                                                                s.thr_s.get(), s.thr_i.get(), int(nq));
  s.launch_check("init_state kernel");
  check(cudaDeviceSynchronize(), "init_state kernel");
}

CudaTopK::~CudaTopK() = default;

void CudaTopK::add(const MatrixView& shard, int64_t id_offset, Progress* progress) {
  Impl& s = *impl_;
  require(!s.broken, "CudaTopK: an earlier add() failed or was cancelled; create a new accumulator");
  require(shard.cols == s.d, "vocabulary: expected dimension " + std::to_string(s.d) + " (the queries'), got " +
                                 std::to_string(shard.cols));
  require(shard.rows >= 0, "vocabulary: expected rows >= 0, got " + std::to_string(shard.rows));
  require(id_offset >= 0, "id_offset: expected >= 0, got " + std::to_string(id_offset));
  if (progress) progress->set_total(shard.rows);
  s.broken = true;  // until the shard is fully merged
  for (int64_t r0 = 0, c = 0; r0 < shard.rows; r0 += s.chunk, ++c) {
    if (progress) progress->check();
    const int64_t n = std::min(s.chunk, shard.rows - r0);
    s.queue_chunk(shard, r0, n, id_offset + r0, int(c & 1));
    if (progress) progress->advance(n);
  }
  check(cudaStreamSynchronize(s.compute), "scan of a shard");
  s.check_flags(shard, id_offset);
  s.rows_seen += shard.rows;
  s.broken = false;
}

void CudaTopK::add(const uint16_t* fp16_rows, int64_t rows, int64_t cols, int64_t id_offset, Progress* progress) {
  add(MatrixView{fp16_rows, DType::F16, rows, cols}, id_offset, progress);
}

void CudaTopK::add(const float* rows, int64_t n, int64_t cols, int64_t id_offset, Progress* progress) {
  add(MatrixView{rows, DType::F32, n, cols}, id_offset, progress);
}

void CudaTopK::result(float* scores, int64_t* ids) {
  Impl& s = *impl_;
  require(!s.broken, "CudaTopK: an earlier add() failed or was cancelled; create a new accumulator");
  const size_t n = size_t(s.nq) * s.k;
  std::vector<long long> id(n);
  check(cudaStreamSynchronize(s.compute), "scan");
  download(scores, s.top_s.get(), int64_t(n), "download of scores");
  download(id.data(), s.top_i.get(), int64_t(n), "download of ids");
  for (size_t i = 0; i < n; ++i) {
    const bool empty = id[i] == cudak::kNoId;
    ids[i] = empty ? -1 : int64_t(id[i]);
    if (empty) scores[i] = -INFINITY;
  }
}

int64_t CudaTopK::queries() const { return impl_->nq; }
int64_t CudaTopK::dim() const { return impl_->d; }
int CudaTopK::k() const { return impl_->k; }
int64_t CudaTopK::chunk_rows() const { return impl_->chunk; }
int64_t CudaTopK::rows_seen() const { return impl_->rows_seen; }

}  // namespace cl
