// FALCON (Kalibhat et al., ICML 2023) kernels: the highly-activating
// threshold and per-image firing sets over the row-normalised
// representations, and GradCAM maps with their largest thresholded box.
#pragma once
#include <cstdint>
#include <vector>

#include "matrix.h"
#include "progress.h"

namespace cl {

// Statistics of R̂ (R with each row divided by its L2 norm; zero rows stay
// zero) and, per image, the ascending features with R̂[x,i] >= tau.
struct Firing {
  double mean = 0, std = 0;  // over all N·D entries of R̂; std unbiased (N·D − 1), as torch.std
  float tau = 0;             // mean + sigmas · std
  std::vector<float> inv_norms;  // N: 1/‖R[x]‖ (0 for a zero row)
  std::vector<int64_t> offsets;  // N + 1: image x fires features[offsets[x] .. offsets[x+1])
  std::vector<int32_t> features;
};

Firing falcon_firing(const MatrixView& r, double sigmas, Progress& progress);

// One target layer of a batch: activations [N, C, H, W] and, unless the
// target is the layer's global average pool, the target's gradients (same shape).
struct CamLayer {
  const float* acts = nullptr;
  const float* grads = nullptr;  // null: analytic GAP gradient over `group` channels
  int64_t channels = 0, height = 0, width = 0;
};

struct Box {
  int32_t left = 0, top = 0, right = 0, bottom = 0;  // right/bottom exclusive
};

struct CamOptions {
  int64_t out_height = 224, out_width = 224;
  float threshold = 0.6f;
};

// For each of n images: per layer, weights = spatial mean of the gradient,
// cam = ReLU(Σ_c w_c A_c), min-max scaled, bilinearly resized; the layers'
// maps averaged and min-max scaled again (pytorch-grad-cam's order). cams
// receives n × out_height × out_width values, boxes n boxes: the largest-area
// bounding box of the 4-connected islands of cam >= threshold (the whole
// image when no pixel reaches it).
void falcon_cams(const std::vector<CamLayer>& layers, int64_t n, const std::vector<int32_t>& group,
                 const CamOptions& opt, float* cams, Box* boxes, Progress& progress);

// The largest-area box over the 4-connected islands of map >= threshold;
// ties go to the island met first in row-major order.
Box largest_island_box(const float* map, int64_t height, int64_t width, float threshold);

// cv2.resize INTER_LINEAR (half-pixel centres, edge clamp) of one map.
void resize_bilinear(const float* src, int64_t sh, int64_t sw, float* dst, int64_t dh, int64_t dw);

}  // namespace cl
