"""Training batches that resume exactly, fixed validation batches, and the unigram entropy baseline.

`BatchSampler` draws random contiguous windows of `seq_len + 1` tokens. Batch number i comes from
`np.random.default_rng([seed, i])` alone, so the sampler's whole state is two integers,
`{"seed": s, "batches_drawn": i}`: it goes into a checkpoint as plain ints (loadable with
`torch.load(weights_only=True)`), and a resumed or branched run continues the same stream of
batches as if it had never stopped. In data parallelism every rank computes the same global batch's
window starts and gathers only its contiguous slice of rows, so the global batch is the same
whatever the world size.

Windows start anywhere and may cross document boundaries (the eod token between documents is part
of the stream), as in nanoGPT and most pretraining code.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cooldown.errors import CooldownError


def _check_positive(**values: int) -> None:
    for name, v in values.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise CooldownError(f"{name} must be a positive integer (got {v!r})")


def _windows(tokens: np.ndarray, starts: np.ndarray, length: int):
    """(x, y) int64 tensors [len(starts), length - 1] from windows of `length` tokens."""
    import torch

    idx = starts[:, None] + np.arange(length, dtype=np.int64)
    w = torch.from_numpy(tokens[idx].astype(np.int64))
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


class BatchSampler:
    """Random windows of `seq_len + 1` tokens; `batch_size` is the GLOBAL batch (all ranks)."""

    def __init__(
        self,
        tokens: np.ndarray,
        batch_size: int,
        seq_len: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        _check_positive(batch_size=batch_size, seq_len=seq_len, world_size=world_size)
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise CooldownError(f"sampler seed must be a non-negative integer (got {seed!r})")
        if not 0 <= rank < world_size:
            raise CooldownError(f"rank {rank} is outside 0..{world_size - 1} (world_size)")
        if batch_size % world_size:
            raise CooldownError(
                f"batch_size {batch_size} is not divisible by world_size {world_size}"
            )
        if len(tokens) < seq_len + 1:
            raise CooldownError(
                f"the training split has {len(tokens)} tokens, fewer than seq_len + 1 = "
                f"{seq_len + 1}: use more data or a shorter seq_len"
            )
        self.tokens = tokens
        self.batch_size, self.seq_len = int(batch_size), int(seq_len)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.local_batch_size = self.batch_size // self.world_size
        self.batches_drawn = 0

    def window_starts(self, batch_index: int) -> np.ndarray:
        """Start offsets of the GLOBAL batch number `batch_index` (all ranks' rows)."""
        rng = np.random.default_rng([self.seed, batch_index])
        # Exclusive high: the last window, start + seq_len, is still inside the array.
        return rng.integers(0, len(self.tokens) - self.seq_len, size=self.batch_size)

    def next_batch(self):
        """(x, y): int64 tensors [local batch, seq_len]; y is x shifted by one token."""
        starts = self.window_starts(self.batches_drawn)
        lo = self.rank * self.local_batch_size
        x, y = _windows(self.tokens, starts[lo : lo + self.local_batch_size], self.seq_len + 1)
        self.batches_drawn += 1
        return x, y

    def __iter__(self):
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or set(state) != {"seed", "batches_drawn"}:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise CooldownError(f"sampler state must have keys seed and batches_drawn (got {got})")
        seed, drawn = state["seed"], state["batches_drawn"]
        for name, v in (("seed", seed), ("batches_drawn", drawn)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise CooldownError(f"sampler state {name} must be a non-negative int (got {v!r})")
        if int(seed) != self.seed:
            # Resuming with another seed would silently switch to a different data stream.
            raise CooldownError(
                f"sampler state has seed {int(seed)} but this sampler was built with seed "
                f"{self.seed}"
            )
        self.batches_drawn = int(drawn)


def validation_batches(
    tokens: np.ndarray, batch_size: int, seq_len: int, max_batches: int | None = None
) -> Iterator[tuple[Any, Any]]:
    """Non-overlapping windows in order: window k predicts tokens k*seq_len+1 .. (k+1)*seq_len.

    Consecutive windows share one boundary token (the last target of one is the first input of the
    next), so every token after the first is predicted exactly once. A full pass (max_batches None)
    ends with a smaller batch if the windows do not fill the last one; the tail shorter than a
    window is left out.

    With `max_batches` smaller than a full pass, the max_batches x batch_size windows are spread
    evenly over the whole split (window floor(i * n / m) for i < m), not taken from its start: the
    validation documents are in corpus order, so the first windows would be a few documents and
    the periodic evaluation a biased, noisy sample of the split (on the embedded default, the first
    8 batches read 0.2 nats/token above the full pass).
    """
    _check_positive(batch_size=batch_size, seq_len=seq_len)
    if max_batches is not None:
        _check_positive(max_batches=max_batches)
    n_windows = (len(tokens) - 1) // seq_len
    if n_windows < 1:
        raise CooldownError(
            f"the validation split has {len(tokens)} tokens, fewer than seq_len + 1 = "
            f"{seq_len + 1}: raise data.val_fraction or shorten seq_len"
        )
    return _validation_batches(tokens, batch_size, seq_len, n_windows, max_batches)


def _validation_batches(tokens, batch_size, seq_len, n_windows, max_batches):
    chosen = np.arange(n_windows, dtype=np.int64)
    if max_batches is not None and max_batches * batch_size < n_windows:
        m = max_batches * batch_size
        chosen = np.arange(m, dtype=np.int64) * n_windows // m
    for b in range(0, chosen.size, batch_size):
        yield _windows(tokens, chosen[b : b + batch_size] * seq_len, seq_len + 1)


def unigram_entropy(tokens: np.ndarray, chunk: int = 1 << 24) -> float:
    """Entropy of the token frequencies, in nats/token: the loss of a model that ignores context."""
    if len(tokens) == 0:
        raise CooldownError("unigram entropy of an empty token array is undefined")
    counts = np.zeros(0, dtype=np.int64)
    for off in range(0, len(tokens), chunk):
        c = np.bincount(np.asarray(tokens[off : off + chunk]))
        if c.size > counts.size:
            c[: counts.size] += counts
            counts = c
        else:
            counts[: c.size] += c
    p = counts[counts > 0] / len(tokens)
    return float(-(p * np.log(p)).sum())
