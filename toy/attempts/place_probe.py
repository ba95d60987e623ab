"""Do the toy tower's features say where a patch is? A least-squares probe (issue 20, motion).

    python toy/attempts/place_probe.py CHECKPOINT          # a trained toy's tower (~30 s)
    python toy/attempts/place_probe.py --stage-a PLACE     # a fresh toy after stage A with
                                                           # pretrain_vision(place=PLACE) (~3-4 min)

The ball patches (saturated colour) of 4 frames (0, 5, 10, 15) of the motion clips among
training seeds 5,000-5,399 (never the validation or test seeds), each patch's tower features
(the layer LLaVA-OneVision reads) -> its column and its row on the 27 x 27 grid, by least
squares with a bias, fitted on the clips of the first 70% of those seeds and scored on the rest:
R^2 and mean absolute error in patches. A ball crossing the frame moves ~10 columns or rows
of the 14 x 14 grid the LLM sees, so a probe within ~2 patches names where it is early and late.
"""
import sys

import numpy as np
import torch

from stc.toy.data import TYPES, make_sample
from stc.toy.model import PATCHES, build_toy, patch_labels, pixel_values, vision_features
from stc.toy.stages import pretrain_vision

SEEDS = range(5_000, 5_400)
FRAMES = (0, 5, 10, 15)


def probe(model) -> dict[str, tuple[float, float]]:
    """{"column" | "row": (R^2, mean absolute error in patches)} on the held-back 30% of clips."""
    feats, cols, rows, clip = [], [], [], []
    with torch.no_grad():
        for s in SEEDS:
            if TYPES[s % len(TYPES)] != "motion":
                continue
            sample = make_sample(s)
            pick = np.array(FRAMES)
            f = vision_features(model, pixel_values(sample.frames[pick]))[:, : PATCHES * PATCHES]
            _, colour = patch_labels(sample.labels[pick])
            for t in range(len(pick)):
                for p in (colour[t] >= 2).nonzero().flatten().tolist():
                    feats.append(f[t, p].numpy())
                    cols.append(p % PATCHES)
                    rows.append(p // PATCHES)
                    clip.append(s)
    x = np.c_[np.array(feats, np.float64), np.ones(len(feats))]
    clip = np.array(clip)
    fit = clip < np.quantile(clip, 0.7)
    out = {}
    for name, y in (("column", np.array(cols, float)), ("row", np.array(rows, float))):
        w = np.linalg.lstsq(x[fit], y[fit], rcond=None)[0]
        pred, true = x[~fit] @ w, y[~fit]
        out[name] = (1 - ((pred - true) ** 2).sum() / ((true - true.mean()) ** 2).sum(), float(np.abs(pred - true).mean()))
    out["patches"] = (int(fit.sum()), int((~fit).sum()))
    return out


def main() -> None:
    torch.set_num_threads(2)
    if sys.argv[1] == "--stage-a":
        place = float(sys.argv[2])
        model, _ = build_toy(0)
        pretrain_vision(model, seed=0, place=place)
        name = f"a fresh toy after stage A, place={place}"
    else:
        from stc.models import load

        model = load(sys.argv[1], device="cpu", dtype="float32").model
        name = sys.argv[1]
    model.eval()
    result = probe(model)
    fit, held = result.pop("patches")
    for axis, (r2, err) in result.items():
        print(f"{name}: a ball patch's {axis} from its tower features: R^2 {r2:.3f}, mean abs error {err:.2f} patches "
              f"({fit} patches fitted, {held} scored)")


if __name__ == "__main__":
    main()
