"""Host reads of a piece of torch code, counted on any device: a CPU-side stand-in for the
device synchronisations a GPU run pays (torch's sync debug mode needs CUDA).

A host read is an operation whose result the host must see before it can go on: a tensor's
value as a Python number or bool (``item``, ``bool()``, ``int()``, ``float()``, ``tolist``), or
an output whose size depends on the data (``nonzero``, boolean-mask indexing, ``masked_select``,
``unique``, ``bincount``). On a GPU each one waits for the device. Used by tests/test_compress.py
and benchmarks/compress_speed.py.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

_READS = {"__bool__", "__float__", "__int__", "__index__", "item", "tolist", "nonzero", "argwhere", "masked_select",
          "unique", "unique_consecutive", "bincount", "repeat_interleave"}
_INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}


class HostReads(TorchFunctionMode):
    """``with HostReads() as reads: ...``; then ``reads.total`` and ``reads.calls`` (by name)."""

    def __init__(self):
        super().__init__()
        self.calls: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in _READS:
            self.calls[name] += 1
        elif name in _INDEXING and len(args) > 1:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                self.calls[f"{name}[mask]"] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.calls.values())
