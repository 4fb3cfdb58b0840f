"""The batch sampler: windows, determinism, exact resume, rank slices; validation batches."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from cooldown.data import BatchSampler, unigram_entropy, validation_batches
from cooldown.errors import CooldownError

TOKENS = np.arange(10_000, dtype=np.uint16)  # token i == position i: windows are easy to check


def draw(sampler, n):
    return [sampler.next_batch() for _ in range(n)]


def test_windows_are_contiguous_and_shifted():
    x, y = BatchSampler(TOKENS, batch_size=8, seq_len=16, seed=3).next_batch()
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    assert torch.equal(y, x + 1)
    assert torch.equal(x - x[:, :1], torch.arange(16).expand(8, 16))
    assert int(y.max()) < len(TOKENS)


def test_batch_i_depends_only_on_seed_and_i():
    s = BatchSampler(TOKENS, 4, 8, seed=7)
    batches = draw(s, 3)
    rng = np.random.default_rng([7, 2])
    starts = rng.integers(0, len(TOKENS) - 8, size=4)
    assert batches[2][0][:, 0].tolist() == starts.tolist()
    other = draw(BatchSampler(TOKENS, 4, 8, seed=8), 1)[0][0]
    assert not torch.equal(other, batches[0][0])


def test_resume_matches_an_uninterrupted_run():
    s = BatchSampler(TOKENS, 6, 12, seed=11)
    draw(s, 5)
    state = s.state_dict()
    assert state == {"seed": 11, "batches_drawn": 5}
    assert all(type(v) is int for v in state.values())
    rest = draw(s, 5)
    buf = io.BytesIO()
    torch.save({"sampler": state}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)["sampler"]
    fresh = BatchSampler(TOKENS, 6, 12, seed=11)
    fresh.load_state_dict(loaded)
    for (x1, y1), (x2, y2) in zip(rest, draw(fresh, 5), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_rank_slices_make_up_the_global_batch():
    whole = draw(BatchSampler(TOKENS, 8, 10, seed=5), 3)
    for world in (2, 4, 8):
        ranks = [
            draw(BatchSampler(TOKENS, 8, 10, seed=5, rank=r, world_size=world), 3)
            for r in range(world)
        ]
        for i in range(3):
            assert ranks[0][i][0].shape == (8 // world, 10)
            assert torch.equal(torch.cat([ranks[r][i][0] for r in range(world)]), whole[i][0])
            assert torch.equal(torch.cat([ranks[r][i][1] for r in range(world)]), whole[i][1])


def test_sampler_argument_errors():
    with pytest.raises(CooldownError, match="batch_size 6 is not divisible by world_size 4"):
        BatchSampler(TOKENS, 6, 8, world_size=4)
    with pytest.raises(CooldownError, match=r"rank 2 is outside 0\.\.1"):
        BatchSampler(TOKENS, 4, 8, rank=2, world_size=2)
    with pytest.raises(CooldownError, match=r"has 8 tokens, fewer than seq_len \+ 1 = 9"):
        BatchSampler(TOKENS[:8], 4, 8)
    BatchSampler(TOKENS[:9], 4, 8).next_batch()  # exactly one possible window
    with pytest.raises(CooldownError, match="seq_len must be a positive integer"):
        BatchSampler(TOKENS, 4, 0)
    with pytest.raises(CooldownError, match="seed must be a non-negative integer"):
        BatchSampler(TOKENS, 4, 8, seed=-1)


def test_state_errors():
    s = BatchSampler(TOKENS, 4, 8, seed=1)
    with pytest.raises(CooldownError, match="has seed 2 but this sampler was built with seed 1"):
        s.load_state_dict({"seed": 2, "batches_drawn": 3})
    with pytest.raises(CooldownError, match="must have keys seed and batches_drawn"):
        s.load_state_dict({"seed": 1})
    with pytest.raises(CooldownError, match="batches_drawn must be a non-negative int"):
        s.load_state_dict({"seed": 1, "batches_drawn": -1})
    assert s.batches_drawn == 0


def test_validation_batches_cover_every_window_once():
    tokens = np.arange(103, dtype=np.uint16)
    batches = list(validation_batches(tokens, batch_size=4, seq_len=10))
    # (103 - 1) // 10 = 10 windows: batches of 4, 4, 2; the 2-token tail is left out.
    assert [x.shape[0] for x, _ in batches] == [4, 4, 2]
    ys = torch.cat([y.flatten() for _, y in batches])
    assert ys.tolist() == list(range(1, 101))
    xs = torch.cat([x.flatten() for x, _ in batches])
    assert xs.tolist() == list(range(100))
    assert len(list(validation_batches(tokens, 4, 10, max_batches=3))) == 3  # 3 covers all 10


def test_validation_subset_is_spread_over_the_split():
    tokens = np.arange(103, dtype=np.uint16)
    subset = list(validation_batches(tokens, batch_size=4, seq_len=10, max_batches=2))
    assert [x.shape[0] for x, _ in subset] == [4, 4]
    starts = torch.cat([x[:, 0] for x, _ in subset]).tolist()
    # 8 of the 10 windows, floor(i * 10 / 8): from the first window to the last, none twice.
    assert starts == [0, 10, 20, 30, 50, 60, 70, 80]
    again = list(validation_batches(tokens, 4, 10, max_batches=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(subset, again, strict=True))
    with pytest.raises(
        CooldownError, match=r"validation split has 10 tokens, fewer than seq_len \+ 1"
    ):
        validation_batches(tokens[:10], 4, 10)


def test_sampler_on_a_memmap(tmp_path):
    path = tmp_path / "t.bin"
    TOKENS.tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r")
    a = draw(BatchSampler(mm, 4, 32, seed=2), 2)
    b = draw(BatchSampler(TOKENS, 4, 32, seed=2), 2)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))


def test_unigram_entropy():
    assert unigram_entropy(np.arange(8, dtype=np.uint16)) == pytest.approx(math.log(8))
    assert unigram_entropy(np.zeros(5, dtype=np.uint16)) == 0.0
    tokens = np.array([0, 0, 0, 1], dtype=np.uint16)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert unigram_entropy(tokens) == pytest.approx(h)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 300, size=10_000).astype(np.uint16)
    assert unigram_entropy(big, chunk=777) == pytest.approx(unigram_entropy(big))
    with pytest.raises(CooldownError, match="empty"):
        unigram_entropy(np.zeros(0, dtype=np.uint16))
