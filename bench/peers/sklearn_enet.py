#!/usr/bin/env python3
"""scikit-learn peer of `bench glm`: ElasticNet on a precomputed Gram, all targets.

Times (Gram X'X + fit of every column of Y) per repeat after warm-up runs and
prints one JSON line with the median, the per-repeat times, the median process
CPU time (all threads) and each target's objective in conceptlens's
definition (float64):
    (1/2n)||y_k - X w_k - b_k||^2 + lambda (alpha ||w_k||_1 + (1 - alpha)/2 ||w_k||^2).
sklearn's alpha is our lambda and its l1_ratio our alpha. X's columns are
centred (standardised), so the best intercept is 0 and fit_intercept=False
fits the same objective. The fit runs in the arrays' dtype (float32 as given,
as sklearn keeps it; --dtype float64 converts first, outside the timing).
Exit status 3 with {"skipped": why} when numpy or scikit-learn is missing.
"""
import argparse
import os

from peer import emit, need, timed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--x", required=True, help="n x p float32 .npy (standardised)")
    ap.add_argument("--y", required=True, help="n x K float32 .npy")
    ap.add_argument("--lambda", dest="lam", type=float, required=True)
    ap.add_argument("--alpha", type=float, required=True)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--out", help="write the K x p weights here as float32 .npy")
    args = ap.parse_args()
    np, sklearn, linear_model = need("numpy", "sklearn", "sklearn.linear_model")

    X = np.load(args.x).astype(args.dtype, copy=False)
    Y = np.load(args.y).astype(args.dtype, copy=False)

    def fit():
        G = X.T @ X
        return linear_model.ElasticNet(alpha=args.lam, l1_ratio=args.alpha, precompute=G, tol=args.tol, fit_intercept=False).fit(X, Y)

    model, timing = timed(fit, args.warmup, args.repeats)

    W = np.atleast_2d(model.coef_).astype(np.float64)
    R = Y.astype(np.float64) - X.astype(np.float64) @ W.T - model.intercept_
    penalty = args.lam * (args.alpha * np.abs(W).sum(1) + 0.5 * (1 - args.alpha) * (W * W).sum(1))
    objective = 0.5 * (R * R).sum(0) / X.shape[0] + penalty
    if args.out:
        np.save(args.out, np.ascontiguousarray(W, dtype=np.float32))
    emit({
        "name": "sklearn-elasticnet",
        "label": f"scikit-learn {sklearn.__version__} ElasticNet, Gram precomputed",
        **timing,
        "dtype": args.dtype,
        "objective": objective.tolist(),
        "threads": blas_threads(),
    })


def blas_threads():
    """Threads numpy's BLAS uses for the Gram (the coordinate descent is single-threaded)."""
    try:
        from threadpoolctl import threadpool_info
        return max(p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas")
    except (ImportError, ValueError):
        return os.cpu_count()


if __name__ == "__main__":
    main()
