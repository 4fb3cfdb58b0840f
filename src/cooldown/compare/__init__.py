"""Paired comparisons of runs on the same validation documents, with bootstrap intervals.

`paired_difference` and `verdict` (numpy only) judge a difference; `document_losses` computes what
they need from a run's weights; `compare_runs` is `cooldown compare`. torch is imported only when
weights are evaluated, so `import cooldown.compare` (and `cooldown.compare.paired`) stays free of
it (a test holds it to that).
"""

from cooldown.compare.doc_losses import DocLosses, document_losses
from cooldown.compare.paired import Difference, paired_difference, verdict
from cooldown.compare.runs import Comparison, compare_runs

__all__ = [
    "Comparison",
    "Difference",
    "DocLosses",
    "compare_runs",
    "document_losses",
    "paired_difference",
    "verdict",
]
