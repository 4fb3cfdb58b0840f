"""Checking a searched cooldown by running it: `cooldown predict ... --search --run-best DIR`.

The best schedule of `search_cooldown` is trained from scratch with the first fitted run's model,
data, optimizer and training settings (its peak LR unless another was asked for), then its last
logged loss is compared with the prediction. A WSD run from scratch is update for update the
branch it would be from a constant run, so this is the check the issue asks for without needing
a checkpoint at the winner's cooldown start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cooldown.config import RunConfig
from cooldown.errors import CooldownError
from cooldown.predict.curves import read_run_curve
from cooldown.predict.search import ScheduleCandidate
from cooldown.run_dir import CONFIG_FILE, RunDir

__all__ = ["SearchCheck", "candidate_config", "check_candidate", "run_candidate"]


@dataclass(frozen=True)
class SearchCheck:
    run_dir: Path
    predicted: float  # nats/token, the law's final loss for the schedule
    measured: float  # the run's last logged loss (the quantity the law was fitted on)
    loss_name: str

    @property
    def relative_error(self) -> float:
        return (self.predicted - self.measured) / self.measured

    def text(self) -> str:
        return (
            f"ran the best schedule in {self.run_dir}: measured final {self.loss_name} "
            f"{self.measured:.4f}, predicted {self.predicted:.4f} nats/token "
            f"({100 * self.relative_error:+.2f}%)"
        )


def candidate_config(
    candidate: ScheduleCandidate, template: RunConfig, peak_lr: Optional[float] = None
) -> RunConfig:
    """The run that checks `candidate`: `template`'s model, data, optimizer and training settings,
    from scratch, with the candidate's schedule (at `peak_lr` when given)."""
    base = template.model_dump(mode="json", exclude_none=True)
    base.pop("parent", None)  # from scratch: the schedule below starts at step 0
    base["schedule"] = candidate.schedule.to_config()
    if peak_lr is not None:
        base["optim"]["lr"] = peak_lr
    base["train"]["permanent_steps"] = []
    base["train"]["branch_tokens"] = []
    return RunConfig.model_validate(base)


def check_candidate(
    candidate: ScheduleCandidate, run_dir: str | Path, loss: str = "val_loss"
) -> SearchCheck:
    """The finished check run's last logged `loss` against the candidate's prediction."""
    curve = read_run_curve(run_dir, loss)
    return SearchCheck(Path(run_dir), candidate.final_loss, float(curve.losses[-1]), loss)


def run_candidate(
    candidate: ScheduleCandidate,
    template_run: str | Path,
    out: str | Path,
    *,
    peak_lr: Optional[float] = None,
    loss: str = "val_loss",
) -> SearchCheck:
    """Train `candidate.schedule` into `out` with `template_run`'s config (from scratch), and
    compare its last logged `loss` with the prediction. Rerunning resumes the same run."""
    from cooldown.train import train  # torch: only this command trains

    template = RunDir(template_run)
    if not template.exists():
        raise CooldownError(
            f"--run-best: the first fitted input {template_run} is not a run folder (no "
            f"{CONFIG_FILE}); the best schedule is trained with that run's settings"
        )
    train(candidate_config(candidate, template.config, peak_lr), Path(out))
    return check_candidate(candidate, out, loss)
