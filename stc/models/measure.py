"""Measuring and guarding one answer: when tokens arrive, when to stop (after a token, before a
vision-encoder layer), peak memory, and the device running out of it."""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from typing import Callable

import torch
from transformers.generation.stopping_criteria import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from ..results import OutOfMemory
from ..video import Cancelled


def is_out_of_memory(error: BaseException) -> bool:
    # CUDA raises OutOfMemoryError; the CPU allocator raises a plain RuntimeError.
    return isinstance(error, torch.OutOfMemoryError) or "can't allocate memory" in str(error)


@contextmanager
def out_of_memory_as_error(recover: Callable[[], None], message: Callable[[], str]):
    """Turn the device running out of memory into `OutOfMemory` (``message()``: one line, what to
    lower), after ``recover()`` (drop the caches) so the model keeps serving."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as e:
        if not is_out_of_memory(e):
            raise
        recover()
        raise OutOfMemory(message()) from e


@contextmanager
def stop_between_layers(layers: Callable[[], torch.nn.ModuleList], should_stop: Callable[[], bool] | None):
    """While inside: ``should_stop()`` is asked before each of ``layers()`` (the vision encoder's:
    encoding is the longest step before the first token), and True raises `stc.video.Cancelled`
    there. Nothing is hooked (nor ``layers`` asked) when ``should_stop`` is None."""
    if should_stop is None:
        yield
        return

    def check(_module, _args):
        if should_stop():
            raise Cancelled("cancelled while encoding the video")

    handles = [layer.register_forward_pre_hook(check) for layer in layers()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class Timer(BaseStreamer):
    """Streamer that timestamps the first generated token and the end of generation."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.calls = 0
        self.first: float | None = None
        self.last: float | None = None
        self.tokens = 0

    def put(self, value):
        self.calls += 1
        if self.calls == 1:  # the prompt
            return
        self.sync()
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.tokens += value.numel()
        self.last = now

    def end(self):
        pass


class StopWhen(StoppingCriteria):
    """Stops generation as soon as ``should_stop()`` says so (asked once per new token)."""

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), bool(self.should_stop()), dtype=torch.bool, device=input_ids.device)


class PeakMemory:
    """Peak memory during a block: CUDA max allocated on GPU, sampled process RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "process_rss"
        self._stop = threading.Event()

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: fall back to the lifetime peak
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.kind == "cuda_max_allocated":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())
