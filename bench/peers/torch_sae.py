#!/usr/bin/env python3
"""PyTorch peer of `bench sae`: one SAE training step, timed, on the same batch.

The SAE of native/core/sae.h in float32: x_c = x - b, f = act(W_e x_c + b_e),
x_hat = D^T f + b with D held as m x d (row j = atom j), and
    loss = mean_i [ mean_c (x - x_hat)^2 + l1 * sum_j |f_j| ] + aux_coef * aux
where act is ReLU (relu-l1), each item's k largest positive pre-activations
(topk) or the batch's n*k largest positive ones (batchtopk); aux (TopK kinds)
is the mean square error of the dead latents' (unfired for dead_steps steps)
aux_k largest codes reconstructing the detached residual x - x_hat. The
decoder gradient loses its component along each (unit) atom before Adam and
the atoms are renormalised after. Atoms start as random unit rows, the
encoder equal to them, the biases at 0.

Steps the first --batch rows of --features --warmup times, then times
--repeats steps (forward, backward, Adam, renormalisation) and prints one JSON
line with the median. Exit status 3 with {"skipped": why} when PyTorch is missing.
"""
import argparse

from peer import emit, need, timed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", required=True, help="items x d float32 .npy")
    ap.add_argument("--m", type=int, required=True, help="latents")
    ap.add_argument("--kind", choices=["relu-l1", "topk", "batchtopk"], default="relu-l1")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--l1", type=float, default=3e-5)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--aux-coef", type=float, default=1 / 32)
    ap.add_argument("--aux-k", type=int, default=256)
    ap.add_argument("--dead-steps", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    np, torch = need("numpy", "torch")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(np.array(np.load(args.features, mmap_mode="r")[: args.batch], dtype=np.float32))
    n, d = x.shape
    D = torch.randn(args.m, d)
    D.div_(D.norm(dim=1, keepdim=True))
    W_e, b_e, b = D.clone().requires_grad_(), torch.zeros(args.m, requires_grad=True), torch.zeros(d, requires_grad=True)
    D.requires_grad_()
    opt = torch.optim.Adam([W_e, b_e, D, b], lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    last_fired = torch.zeros(args.m, dtype=torch.long)

    def keep(pre, mask):
        return torch.where(mask & (pre > 0), pre, torch.zeros_like(pre))

    def step(t):
        pre = (x - b) @ W_e.T + b_e
        if args.kind == "relu-l1":
            f = torch.relu(pre)
        elif args.kind == "topk":
            f = keep(pre, pre >= pre.topk(args.k, dim=1).values[:, -1:])
        else:
            f = keep(pre, pre >= pre.flatten().topk(n * args.k).values[-1])
        x_hat = f @ D + b
        loss = ((x - x_hat) ** 2).mean() + args.l1 * f.abs().sum(1).mean()
        dead = t - last_fired >= args.dead_steps
        if args.kind != "relu-l1" and args.aux_coef > 0 and bool(dead.any()):
            cand = torch.where(dead & (pre > 0), pre, torch.zeros_like(pre))
            ka = min(args.aux_k, int(dead.sum()))
            a = torch.zeros_like(pre).scatter(1, *reversed(cand.topk(ka, dim=1)))
            loss = loss + args.aux_coef * (((x - x_hat).detach() - a @ D) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            last_fired[(f > 0).any(0)] = t + 1
            D.grad.sub_((D.grad * D).sum(1, keepdim=True) / (D * D).sum(1, keepdim=True) * D)
            opt.step()
            D.div_(D.norm(dim=1, keepdim=True))

    steps = iter(range(args.warmup + args.repeats))
    _, timing = timed(lambda: step(next(steps)), args.warmup, args.repeats)
    emit({
        "name": "torch-sae",
        "label": f"PyTorch {torch.__version__} CPU, {args.threads} threads",
        **timing,
        "samples_per_s": n / timing["seconds"],
        "kind": args.kind,
    })


if __name__ == "__main__":
    main()
