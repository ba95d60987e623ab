"""A pruned exact neighbour pass for stc's DPC-kNN, measured (issue 26; not used by stc).

The idea: each row's 8 nearest without computing every full-width distance. A p-dimensional
basis P (subspace iteration on 1,024 sampled tokens) gives a lower bound of every squared
distance, ||P(x_i - x_j)||^2 + (r_i - r_j)^2 (r the norm outside the basis); each row's 8
smallest by the bound get exact fp32 distances, and so does every column whose bound is below
the 8th of those: the exact 8 nearest are among them. It prints each part's time against the
full fp32 product it would replace, on the 2% recycle pool of each clip's saved features
(`python benchmarks/compress_speed.py --clip ...` writes them).

    python benchmarks/pruned_knn.py [p]        # p: the basis width, default 64

Measured on a 2-core Intel Xeon without AMX (README, "Stage 1 alone"): the filter alone costs
more than HoliTom's whole stage 1, and the exact distances of the candidates, gathered row by
row, ~3x (world.mp4, b.mp4) to ~39x (a.mp4) the full product: not kept.
"""
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import stc  # noqa: E402
from stc.arith import round_half_up  # noqa: E402
from stc.compress import DEFAULT_CLUSTER_RATIO, DEFAULT_TAU, _normalize, unified_selection  # noqa: E402
from stc.compress.pairwise import _KNN_ROWS, _smallest  # noqa: E402

K2 = 8  # the neighbours stc's pass 1 keeps (`stc.compress.pairwise._NEAR`)


def recycle_pool(clip: str, retention: float = 0.02) -> torch.Tensor:
    """The tokens [m, D] stc's unified selection leaves to DPC-kNN on a clip's saved features."""
    f, s = torch.load(ROOT / "runs" / f"features-{clip}-0.5b-32.pt", weights_only=True)[:2]
    t, n, d = f.shape
    flat, total = f.reshape(-1, d).float(), t * n
    budget = stc.STCConfig(retention=retention).budget(total)
    quota = budget - round_half_up(DEFAULT_CLUSTER_RATIO * budget)  # as `stc.compress_tokens`
    order = torch.sort(s.reshape(-1).float(), descending=True, stable=True).indices
    keep = torch.ones(total, dtype=torch.bool)
    keep[unified_selection(_normalize(flat), order, quota, DEFAULT_TAU)] = False
    return flat[keep].contiguous()


def pruned_pass(x: torch.Tensor, p: int) -> tuple[dict[str, float], float]:
    """Seconds per part of the pruned pass over x [m, D], and the extra candidates per row."""
    times, clock = dict.fromkeys(["basis", "projection", "bound", "search", "mask", "exact"], 0.0), time.perf_counter
    t0 = clock()
    m, d = x.shape
    xc = x - x.mean(0)
    g = torch.Generator().manual_seed(0)
    sample = xc[torch.randperm(m, generator=g)[:1024]]
    cov = sample.T @ sample
    basis = torch.linalg.qr(torch.randn(d, p + 8, generator=g))[0]
    for _ in range(3):  # subspace iteration: any orthonormal basis keeps the bound a bound
        basis = torch.linalg.qr(cov @ basis)[0]
    basis = basis[:, :p].contiguous()
    times["basis"], t0 = clock() - t0, clock()
    y = xc @ basis
    rest = ((xc * xc).sum(1) - (y * y).sum(1)).clamp_min(0).sqrt()
    z = torch.cat([y, rest[:, None]], 1)
    zz = (z * z).sum(1)
    a = torch.cat([z, zz[:, None], torch.ones(m, 1)], 1)  # a_i . b_j = ||z_i - z_j||^2
    bt = torch.cat([-2 * z, torch.ones(m, 1), zz[:, None]], 1).T.contiguous()
    times["projection"] = clock() - t0
    extra = 0
    for s in range(0, m, _KNN_ROWS):
        t0 = clock()
        bound = torch.mm(a[s : s + _KNN_ROWS], bt)
        bound.diagonal(offset=s).fill_(float("inf"))
        times["bound"], t0 = times["bound"] + clock() - t0, clock()
        idx = _smallest(bound, K2)[1]
        times["search"], t0 = times["search"] + clock() - t0, clock()
        xi = xc[s : s + _KNN_ROWS]
        kth = ((xc[idx] - xi[:, None]) ** 2).sum(-1).amax(1)  # >= the exact 8th nearest
        times["exact"], t0 = times["exact"] + clock() - t0, clock()
        cand = bound <= (kth * 1.001 + 1e-3)[:, None]  # (a margin for the bound's rounding)
        cand.scatter_(1, idx, False)
        ri, ci = cand.nonzero(as_tuple=True)
        extra += ri.numel()
        times["mask"], t0 = times["mask"] + clock() - t0, clock()
        ((xc[ci] - xi[ri]) ** 2).sum(-1)
        times["exact"] += clock() - t0
    return times, extra / m


def full_product(x: torch.Tensor) -> float:
    """Seconds of the full fp32 pairwise product stc's "fp32" pass runs (chunks of rows)."""
    t0 = time.perf_counter()
    xc = x - x.mean(0)
    sq = (xc * xc).sum(1)
    for s in range(0, x.shape[0], _KNN_ROWS):
        rows = xc[s : s + _KNN_ROWS]
        torch.addmm(sq[None].expand(rows.shape[0], -1), rows, xc.T, alpha=-2.0)
    return time.perf_counter() - t0


def main() -> None:
    p = int(sys.argv[1]) if len(sys.argv) > 1 else 64
    for clip in ("world", "a", "b"):
        x = recycle_pool(clip)
        pruned_pass(x, p)  # warm-up
        runs = [pruned_pass(x, p) for _ in range(3)]
        times, extra = min(runs, key=lambda r: sum(r[0].values()))
        full = min(full_product(x) for _ in range(3))
        parts = ", ".join(f"{k} {1e3 * v:.0f}" for k, v in times.items())
        print(f"{clip}: m = {x.shape[0]}, p = {p}: pruned pass {1e3 * sum(times.values()):.0f} ms ({parts}), "
              f"extra candidates per row {extra:.1f}; the full fp32 product {1e3 * full:.0f} ms", flush=True)


if __name__ == "__main__":
    main()
