"""Any cooldown schedule in a foreign PyTorch trainer: `LambdaLR` and a Hugging Face `Trainer`.

The LR each optimizer update actually used is read back and compared with `cooldown`'s schedule
for updates 1..N (the index convention in `cooldown.lr_lambda`).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from cooldown.errors import CooldownError
from cooldown.lr_lambda import lambda_lr, lr_lambda
from cooldown.schedule_specs import parse_schedule_spec

PEAK = 1e-2
SPECS = [
    "wsd:shape=1-sqrt,cooldown_frac=0.3",
    "wsd:shape=1-sqrt,cooldown_steps=7,final_lr_frac=0.1",
    "wsd:shape=linear,cooldown_start=10,cooldown_steps=5",
    "cosine",
    "branch:branch_step=12,cooldown_steps=8,shape=1-sqrt",
]


def _lrs_of_updates(schedule_spec: str, steps: int) -> list[float]:
    """The LR of each of `steps` plain-PyTorch updates under `lambda_lr`."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=PEAK)
    sched = lambda_lr(opt, schedule_spec, total_steps=steps, warmup_steps=3)
    seen = []
    for _ in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


@pytest.mark.parametrize("spec", SPECS)
def test_lambda_lr_gives_each_update_the_schedules_lr(spec):
    steps = 20
    schedule = parse_schedule_spec(spec, total_steps=steps, defaults={"warmup_steps": 3})
    expected = PEAK * schedule.multipliers(1, steps + 1)
    assert np.allclose(_lrs_of_updates(spec, steps), expected, rtol=1e-12, atol=0)
    if "final_lr_frac" not in spec and spec != "cosine":
        assert expected[-1] == 0.0  # the last update reaches the end of the cooldown


def test_state_dict_round_trips_with_weights_only_load():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=PEAK)
    sched = lambda_lr(opt, "wsd:shape=1-sqrt,cooldown_frac=0.5", total_steps=10)
    for _ in range(6):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    other = lambda_lr(opt2, "constant", total_steps=10)  # replaced by the loaded state
    other.load_state_dict(state)
    assert other.lr_lambdas[0].schedule_config == sched.lr_lambdas[0].schedule_config
    assert other.lr_lambdas[0](7) == sched.lr_lambdas[0](7)


def test_bad_spec_is_a_one_line_error_naming_the_field():
    with pytest.raises(CooldownError, match=r"cooldown_frac"):
        lr_lambda("wsd:shape=1-sqrt,cooldown_frac=1.5", total_steps=100)
    with pytest.raises(CooldownError, match=r"shape"):
        lr_lambda({"kind": "wsd", "shape": "zigzag", "cooldown_frac": 0.2}, total_steps=100)


transformers = pytest.importorskip("transformers")


class _TinyRegressor(torch.nn.Module):
    """The smallest model a `Trainer` accepts: forward returns a dict with the loss."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def forward(self, x, y):
        return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)}


class _Data(torch.utils.data.Dataset):
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x.sum(-1)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


class _RecordLR(transformers.TrainerCallback):
    def __init__(self):
        self.lrs = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append(optimizer.param_groups[0]["lr"])


def _args(tmp_path, steps):
    return transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=steps,
        per_device_train_batch_size=2,
        learning_rate=PEAK,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )


@pytest.mark.parametrize("how", ["optimizers", "create_scheduler"])
def test_hugging_face_trainer_follows_the_schedule(tmp_path, how):
    steps, spec = 12, "wsd:shape=1-sqrt,cooldown_frac=0.25"
    model, record = _TinyRegressor(), _RecordLR()
    args = _args(tmp_path, steps)
    if how == "optimizers":
        opt = torch.optim.AdamW(model.parameters(), lr=PEAK)
        sched = lambda_lr(opt, spec, total_steps=steps, warmup_steps=2)
        trainer = transformers.Trainer(
            model=model,
            args=args,
            train_dataset=_Data(64),
            optimizers=(opt, sched),
            callbacks=[record],
        )
    else:

        class CooldownTrainer(transformers.Trainer):
            def create_scheduler(self, num_training_steps, optimizer=None):
                if self.lr_scheduler is None:
                    self.lr_scheduler = lambda_lr(
                        optimizer or self.optimizer,
                        spec,
                        total_steps=num_training_steps,
                        warmup_steps=2,
                    )
                return self.lr_scheduler

        trainer = CooldownTrainer(
            model=model, args=args, train_dataset=_Data(64), callbacks=[record]
        )
    trainer.train()
    schedule = parse_schedule_spec(spec, total_steps=steps, defaults={"warmup_steps": 2})
    assert np.allclose(record.lrs, PEAK * schedule.multipliers(1, steps + 1), rtol=1e-12, atol=0)
    assert record.lrs[-1] == 0.0
