#!/usr/bin/env python3
"""SpLiCE's decomposition by scikit-learn, for `bench splice`.

    python3 bench/peers/sklearn_sparse_encode.py --dictionary C.npy --samples Z.npy --l1 L
        --warmup W --repeats R [--n N] [--out W.npy]

C is c×d, Z is n×d (float32, C already SpLiCE-centred and normalised). The
Gram C·Cᵀ is computed once per dictionary, as a user decomposing many images
would, and timed apart (gram_seconds, with the same warm-up and repeats);
each repeat then runs sklearn.decomposition.sparse_encode(Z, C, gram=…,
algorithm='lasso_cd', positive=True), so the bench may solve a subset of the
samples without charging the peer the Gram on each. Prints one JSON line;
exits 3 with {"skipped": why} when scikit-learn is missing.

Our objective per sample is ‖z − Cᵀw‖² + λ‖w‖₁ over w ≥ 0. sparse_encode's
lasso_cd fits Lasso(alpha = alpha/d) to the d "samples" of z, whose objective
is (1/(2d))‖z − Cᵀw‖² + (alpha/d)‖w‖₁ = (1/(2d))·(‖z − Cᵀw‖² + 2·alpha‖w‖₁):
the same minimiser when alpha = λ/2.
"""
import argparse
import sys
import warnings

from peer import emit, need, timed


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dictionary", required=True, help="C.npy, c×d float32")
    p.add_argument("--samples", required=True, help="Z.npy, n×d float32")
    p.add_argument("--l1", type=float, required=True, help="λ of ‖z − Cᵀw‖² + λ‖w‖₁")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n", type=int, default=None, help="solve only the first N samples")
    p.add_argument("--out", default=None, help="write the last repeat's weights (n×c float32)")
    a = p.parse_args()
    if not a.l1 >= 0:
        p.error(f"--l1: expected λ ≥ 0, got {a.l1}")
    if a.warmup < 0 or a.repeats < 1:
        p.error(f"--warmup ≥ 0 and --repeats ≥ 1 expected, got {a.warmup} and {a.repeats}")
    if a.n is not None and a.n < 1:
        p.error(f"--n: expected ≥ 1, got {a.n}")
    return a


def main():
    a = parse()
    np, sklearn, decomposition = need("numpy", "sklearn", "sklearn.decomposition")

    C = np.load(a.dictionary).astype(np.float32, copy=False)
    Z = np.load(a.samples).astype(np.float32, copy=False)
    if C.ndim != 2 or Z.ndim != 2 or C.shape[1] != Z.shape[1]:
        sys.exit(f"--dictionary {C.shape} and --samples {Z.shape}: expected c×d and n×d with the same d")
    Z = Z[: a.n] if a.n is not None else Z

    gram, gram_timing = timed(lambda: C @ C.T, a.warmup, a.repeats)

    def solve():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: its objective below says how far it got
            return decomposition.sparse_encode(Z, C, gram=gram, algorithm="lasso_cd", alpha=a.l1 / 2, positive=True)

    W, timing = timed(solve, a.warmup, a.repeats)

    W64, C64 = W.astype(np.float64), C.astype(np.float64)
    R = Z.astype(np.float64) - W64 @ C64
    objective = (R * R).sum(axis=1) + a.l1 * W64.sum(axis=1)
    if a.out:
        np.save(a.out, np.ascontiguousarray(W, dtype=np.float32))
    emit({
        "name": "sklearn-sparse-encode",
        "label": f"scikit-learn {sklearn.__version__} sparse_encode lasso_cd, Gram precomputed once",
        **timing,
        "gram_seconds": gram_timing["seconds"],
        "samples": int(Z.shape[0]),
        "samples_per_s": Z.shape[0] / timing["seconds"],
        "objective": objective.tolist(),
    })


if __name__ == "__main__":
    main()
