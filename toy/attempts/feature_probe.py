"""Issue 20 probe: are the frozen stage-A features enough to answer the questions? One
attention-pooling head per question type (4 learned queries over the 4 x 729 tokens of a clip,
learned frame and patch-position embeddings, a small MLP to the 4 options), trained on the first
640 clips of the pool that `stage_b_pilot.py` cached, scored on the rest. Never reads a
compressor's output. On a tree with toy-v2.patch applied:

    python toy/attempts/feature_probe.py runs/pilot/pool.pt 40
"""
import sys, time
import numpy as np, torch, torch.nn.functional as F
torch.manual_seed(0); torch.set_num_threads(2)
from stc.toy.data import TYPES
drawn, feats = torch.load(sys.argv[1])  # the pool.pt that stage_b_pilot.py cached
X = torch.stack([f.float() for f in feats])             # [M, 4, 729, 64]
kind = torch.tensor([TYPES.index(TYPES[s % 5]) for s, _ in drawn])
# make_sample's first draw is the answer's index (checked against make_sample on five seeds)
ans = torch.tensor([int(np.random.default_rng([s, 20]).integers(4)) for s, _ in drawn])
mean, std = X.flatten(0, 2).mean(0), X.flatten(0, 2).std(0) + 1e-3
X = (X - mean) / std
M = len(X); train, test = torch.arange(0, 640), torch.arange(640, M)
H, Q = 64, 4
class Probe(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = torch.nn.Linear(64, H)
        self.frame = torch.nn.Parameter(torch.zeros(4, 1, H)); self.pos = torch.nn.Parameter(torch.zeros(1, 729, H))
        self.k = torch.nn.Linear(H, H); self.v = torch.nn.Linear(H, H)
        self.q = torch.nn.Parameter(torch.randn(len(TYPES), Q, H) * 0.1)
        self.out = torch.nn.Sequential(torch.nn.Linear(Q * H, 128), torch.nn.GELU(), torch.nn.Linear(128, 4))
    def forward(self, x, t):
        h = F.gelu(self.inp(x)) + self.frame + self.pos            # [B, 4, 729, H]
        h = h.flatten(1, 2)
        att = torch.einsum("bqh,bnh->bqn", self.q[t], self.k(h)) / H ** 0.5
        pooled = torch.einsum("bqn,bnh->bqh", att.softmax(-1), self.v(h))
        return self.out(pooled.flatten(1))
probe = Probe(); opt = torch.optim.AdamW(probe.parameters(), lr=2e-3, weight_decay=0.01)
t0 = time.perf_counter()
def acc(idx):
    with torch.no_grad():
        pred = torch.cat([probe(X[idx[i:i+64]], kind[idx[i:i+64]]).argmax(-1) for i in range(0, len(idx), 64)])
    ok = pred == ans[idx]
    return " ".join(f"{k} {ok[kind[idx] == i].float().mean():.2f}" for i, k in enumerate(TYPES))
for epoch in range(int(sys.argv[2]) if len(sys.argv) > 2 else 40):
    perm = train[torch.randperm(len(train))]
    for i in range(0, len(perm), 32):
        b = perm[i:i+32]
        loss = F.cross_entropy(probe(X[b], kind[b]), ans[b])
        opt.zero_grad(); loss.backward(); opt.step()
    if (epoch + 1) % 10 == 0:
        print(f"epoch {epoch+1} {time.perf_counter()-t0:.0f}s loss {loss.item():.2f} | train {acc(train)} | held-out {acc(test)}", flush=True)
