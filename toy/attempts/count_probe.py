"""Where does the toy lose the count? Linear probes of the true count from the LLM's hidden state
at the last prompt position (where the answer's first token is read), layer by layer, against
what the clip's red-square area alone says. Count clips from a diagnostic seed range
(4,000,000 + i: no training, held-out, validation or demo seed), uncompressed, no compressor.

    python toy/attempts/count_probe.py CHECKPOINT [N]    # N count clips (default 400)

Each clip goes through `stc.eval`'s path (mp4, `load_video`, its prompt) with one new token; a
forward hook on every decoder layer keeps the prefill's last position. Probes: multinomial
logistic regression (torch, L2 1e-3, standardised inputs), fitted on the first 70% of the clips
and scored on the rest; "area" is the same probe on the red square's visible area in pooled
tokens (a mass counter's best case); "answered" is the model's own answer on the scored clips.
~1 s a clip on 2 cores.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from stc.eval import build_prompt, load_manifest, parse_answer
from stc.models import load
from stc.toy.data import FRAMES, LETTERS, make_sample, write_manifest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from count_mass import count_seeds, red_area  # noqa: E402  (the same clips, the same area)



def _probe(x: torch.Tensor, y: torch.Tensor, fit: int) -> float:
    """Held-out accuracy of a multinomial logistic regression from x [n, d] to y [n] (0..3)."""
    mean, std = x[:fit].mean(0), x[:fit].std(0) + 1e-6
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], 4, requires_grad=True)
    b = torch.zeros(4, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x[:fit] @ w + b, y[:fit]) + 1e-3 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((x[fit:] @ w + b).argmax(1) == y[fit:]).float().mean())


def main() -> None:
    checkpoint = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 400
    torch.set_num_threads(2)
    torch.manual_seed(0)
    seeds = count_seeds(n)
    llm = load(checkpoint, device="cpu", dtype="float32")
    layers = llm.model.model.language_model.layers
    kept: dict[int, torch.Tensor] = {}

    def hook(i):
        def keep(_module, _args, output):
            h = output[0] if isinstance(output, tuple) else output
            if h.shape[1] > 1:  # the prefill, not a decoding step
                kept[i] = h[0, -1].detach().clone()
        return keep

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    states, truth, answered, area = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="stc-count-probe-") as tmp:
        items = load_manifest(write_manifest(Path(tmp), seeds, FRAMES))
        for item, seed in zip(items, seeds):
            kept.clear()
            text = llm.answer(str(item.video), build_prompt(item.question, item.options), max_new_tokens=4,
                              num_frames=FRAMES).text
            states.append(torch.stack([kept[i] for i in range(len(layers))]))
            truth.append(LETTERS.index(item.answer))
            got = parse_answer(text, item.options)
            answered.append(-1 if got is None else LETTERS.index(got))
            area.append(red_area(make_sample(seed)))
    for h in handles:
        h.remove()
    x = torch.stack(states)  # [n, layers, d]
    y = torch.tensor(truth)
    fit = int(0.7 * n)
    print(f"{checkpoint}: {n} count clips (seeds {seeds[0]}..{seeds[-1]}), probes fitted on {fit}, "
          f"scored on {n - fit}")
    print(f"  answered (the model itself):  {np.mean(np.array(answered[fit:]) == np.array(truth[fit:])):.3f}")
    print(f"  area alone (a mass counter):  {_probe(torch.tensor(area)[:, None], y, fit):.3f}")
    for i in range(x.shape[1]):
        print(f"  layer {i + 1} output, last position: {_probe(x[:, i], y, fit):.3f}")


if __name__ == "__main__":
    main()
