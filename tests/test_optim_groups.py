"""Parameter groups, per-group LRs, Muon beside AdamW in one optimizer, cooldown-phase settings."""

from __future__ import annotations

import copy

import pytest
import torch

from cooldown.config import load_run_config
from cooldown.errors import CooldownError
from cooldown.model import Transformer, no_weight_decay
from cooldown.model_sizes import ModelConfig
from cooldown.optim import MuonAdamW, build_optimizer
from cooldown.optim_config import OptimConfig
from cooldown.schedule_specs import schedule_from_config


def _model(tie: bool = True) -> Transformer:
    torch.manual_seed(0)
    return Transformer(ModelConfig(preset="tiny-0.05M", tie_embeddings=tie).with_vocab(64))


def _step(model, opt, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 64, (2, 16), generator=gen)
    model.loss(x, x.roll(-1, 1)).backward()
    opt.step()
    opt.zero_grad()


def test_default_adamw_keeps_the_papers_two_groups_in_their_order():
    model = _model(tie=False)
    opt = build_optimizer(model, OptimConfig())
    decay = [p for n, p in model.named_parameters() if not no_weight_decay(n, p)]
    no_decay = [p for n, p in model.named_parameters() if no_weight_decay(n, p)]
    groups = opt.param_groups
    assert len(groups) == 2  # older checkpoints store exactly these two
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in decay]
    assert [id(p) for p in groups[1]["params"]] == [id(p) for p in no_decay]
    assert (groups[0]["weight_decay"], groups[1]["weight_decay"]) == (0.1, 0.0)


@pytest.mark.parametrize("tie", [True, False])
def test_each_group_gets_its_multiplier_times_the_scheduled_lr(tie):
    model = _model(tie)
    groups = {"matrix": 1.0, "embedding": 10.0, "unembedding": 0.2, "scalar": 25.0}
    opt = build_optimizer(model, OptimConfig(name="muon", lr=0.02, groups=groups))
    opt.set_lr(0.02 * 0.5)
    lrs = opt.group_lrs()
    expected = {f"lr_{g}": 0.01 * m for g, m in groups.items()}
    if tie:  # one tensor serves both ends: it is the embedding (and has the embedding's LR)
        del expected["lr_unembedding"]
    assert lrs == expected
    assert opt.last_lr() == 0.01
    emb = model.tok_embeddings.weight
    assert any(p is emb for p in opt.param_groups[opt.layout.index["embedding"]]["params"])


def test_muon_takes_the_matrices_and_adamw_the_rest():
    model = _model(tie=False)
    opt = build_optimizer(model, OptimConfig(name="muon"))
    assert isinstance(opt.optimizer, MuonAdamW)
    by_algo: dict[str, set] = {}
    for group, algo in zip(opt.param_groups, opt.layout.algorithms, strict=True):
        by_algo.setdefault(algo, set()).update(id(p) for p in group["params"])
    matrices = {
        id(p) for n, p in model.named_parameters() if p.ndim == 2 and n.startswith("layers.")
    }
    assert by_algo["muon"] == matrices
    assert len(by_algo["adamw"]) == len(list(model.parameters())) - len(matrices)
    assert "momentum" in opt.param_groups[0] and "betas" in opt.param_groups[-1]


def test_muon_state_round_trip_continues_bitwise():
    cfg = OptimConfig(name="muon", lr=0.02, groups={"embedding": 0.1, "scalar": 0.1})
    model = _model(tie=False)
    opt = build_optimizer(model, cfg)
    for seed in range(3):
        _step(model, opt, seed)
    state = copy.deepcopy(opt.state_dict())
    twin = copy.deepcopy(model)
    twin_opt = build_optimizer(twin, cfg)
    twin_opt.load_state_dict(state)
    for seed in range(3, 6):
        _step(model, opt, seed)
        _step(twin, twin_opt, seed)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert len(opt.state_dict()["state"]) == len(list(model.parameters()))


def test_cooldown_settings_apply_after_the_cooldown_start_only():
    cfg = OptimConfig(
        name="muon",
        betas=(0.9, 0.95),
        weight_decay=0.1,
        cooldown={"betas": [0.8, 0.99], "muon_momentum": 0.85, "weight_decay": 0.0},
    )
    sched = schedule_from_config({"kind": "wsd", "total_steps": 10, "cooldown_steps": 4})
    opt = build_optimizer(_model(tie=False), cfg)
    seen = {}
    for n in (6, 7):
        opt.apply_schedule(sched, n)
        muon, adamw = opt.param_groups[0], opt.param_groups[-1]
        seen[n] = (muon["momentum"], adamw["betas"], muon["weight_decay"])
    assert seen[6] == (0.95, (0.9, 0.95), 0.1)  # update 6 is the last stable one
    assert seen[7] == (0.85, (0.8, 0.99), 0.0)
    assert cfg.phases(6)["cooldown"] == {
        "betas": [0.8, 0.99],
        "weight_decay": 0.0,
        "muon_momentum": 0.85,
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["optim.name=muon", "train.parallelism=fsdp"], "optim.name: muon orthogonalises whole"),
        (
            ["schedule.kind=cosine", "schedule.total_steps=9", "optim.cooldown.betas=[0.9, 0.99]"],
            "optim.cooldown: the",
        ),
        (
            [
                "schedule={kind='constant',total_steps=9}",
                "optim.name=schedule-free",
                "optim.groups.scalar=2",
            ],
            "optim.groups: schedule-free",
        ),
        (["optim.muon.momentum=0.9"], "optim.muon: set for optim.name 'adamw'"),
        (["optim.cooldown.muon_momentum=0.9"], "optim.cooldown.muon_momentum: needs"),
        (["optim.groups.matrix=0"], "optim.groups.matrix"),
        (["optim.cooldown.betas=[0.9, 1.0]"], "optim.cooldown.betas"),
    ],
)
def test_bad_optimizer_settings_are_one_line(override, message):
    with pytest.raises(CooldownError) as info:
        load_run_config(None, override)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_configs_without_the_new_tables_resolve_as_before():
    dumped = load_run_config(None, []).model_dump(mode="json", exclude_none=True)["optim"]
    assert set(dumped) == {
        "name",
        "lr",
        "betas",
        "eps",
        "weight_decay",
        "grad_clip",
        "weight_lr_power",
    }
