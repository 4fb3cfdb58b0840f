"""The evidence `cooldown reproduce` judges claims on: every run's loss on the same validation
tokens, per document, and paired bootstrap intervals of differences between runs.

Each finished run is evaluated once, in the worker that trained it, on the first
`preset.val_doc_tokens` predicted tokens of every validation document (`cooldown.compare`, cached
in the run folder), so two runs are always compared on identical tokens and a difference's
interval comes from resampling documents (and seed pairs, or sweep points, when several runs stand
on each side) rather than from the spread of unpaired final losses.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from cooldown.compare import DocLosses, document_losses, paired_difference
from cooldown.reproduce.presets import Preset

Side = str | list[str]


def evaluate_run(p: Preset, run_dir: Path, weights: str = "raw") -> DocLosses:
    """The paired-evaluation losses of one finished run (computed once, then read from its cache)."""
    return document_losses(
        run_dir, weights, max_doc_tokens=p.val_doc_tokens, device=p.device, precision=p.precision
    )


class Evidence:
    """Per-document losses of a reproduction's runs (by run key) and the intervals built on them."""

    def __init__(self, p: Preset, runs_root: Path):
        self.p, self.runs_root = p, runs_root
        self._docs: dict[tuple[str, str], DocLosses] = {}

    def docs(self, key: str, weights: str = "raw") -> DocLosses:
        if (key, weights) not in self._docs:
            self._docs[key, weights] = evaluate_run(self.p, self.runs_root / key, weights)
        return self._docs[key, weights]

    def loss(self, key: str, weights: str = "raw") -> float:
        return float(self.docs(key, weights).mean)

    def mean_interval(self, key: str, weights: str = "raw", seed: int = 0) -> dict:
        """A run's mean loss with the 95% interval over resampled validation documents (how
        well this validation set pins the loss itself; paired differences are far tighter)."""
        d = self.docs(key, weights)
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(d.nats), size=(self.p.n_boot, len(d.nats)))
        boot = d.nats[idx].sum(axis=1) / d.tokens[idx].sum(axis=1)
        low, high = np.quantile(boot, [0.025, 0.975])
        return {"loss": float(d.mean), "low": float(low), "high": float(high)}

    def difference(
        self,
        a: Side,
        b: Side,
        a_weights: str = "raw",
        b_weights: str = "raw",
        pairs: str = "seeds",
    ) -> dict:
        """loss(b) - loss(a) in nats/token with its paired 95% interval, JSON-ready. Lists on
        both sides are paired by position: seeds, or (`pairs="points"`) the points of a sweep,
        which the interval then names as its second source of noise."""

        def side(keys: Side, weights: str):
            if isinstance(keys, str):
                return self.docs(keys, weights)
            return [self.docs(k, weights) for k in keys]

        d = asdict(paired_difference(side(a, a_weights), side(b, b_weights), n_boot=self.p.n_boot))
        if pairs != "seeds" and d["n_seeds"] > 1:
            d["noise"] = d["noise"].replace("seeds", pairs)
            d["dominant"] = d["dominant"].replace("seeds", pairs)
        return d
