"""The `command` adapter driving a real subprocess: a tiny fake trainer written here that logs its
LR per update. Trunk, branch and from-scratch run go through `cooldown adapter run|branch`; the
branch's LR sequence is read back from its own logs and checked against cooldown's schedule."""

from __future__ import annotations

import csv
import json
import textwrap

import numpy as np
import pytest

from cooldown.adapters import RunRequest, load_adapter
from cooldown.adapters.command import parse_log
from cooldown.cli import main
from cooldown.schedule_specs import parse_schedule_spec

FAKE_TRAINER = textwrap.dedent(
    '''
    """Minimises (w - 3)^2 by gradient descent with a WSD schedule; checkpoints are JSON files."""
    import argparse, json, math, os
    p = argparse.ArgumentParser()
    p.add_argument("--out"); p.add_argument("--steps", type=int)
    p.add_argument("--cooldown-start", type=int); p.add_argument("--cooldown-steps", type=int)
    p.add_argument("--shape"); p.add_argument("--save-every", type=int)
    p.add_argument("--resume-step", type=int, default=0)
    a = p.parse_args()
    def lr(n):  # update n (1-based)
        if a.cooldown_steps == 0 or n <= a.cooldown_start:
            return 1.0
        x = min((n - a.cooldown_start) / a.cooldown_steps, 1.0)
        return 1 - x if a.shape == "linear" else 1 - math.sqrt(x)
    w = 0.0
    if a.resume_step:
        w = json.load(open(os.path.join(a.out, f"step_{a.resume_step}.json")))["w"]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "log.jsonl"), "a") as log:
        for n in range(a.resume_step + 1, a.steps + 1):
            w -= 0.1 * lr(n) * 2 * (w - 3)
            print(f"step {n} lr {lr(n):.17g} loss {(w - 3) ** 2:.17g}", flush=True)
            log.write(json.dumps({"it": n, "loss": (w - 3) ** 2}) + "\\n")
            if n % a.save_every == 0 or n == a.steps:
                json.dump({"w": w}, open(os.path.join(a.out, f"step_{n}.json"), "w"))
    '''
)

ADAPTER = """
adapter = "command"
command = "{python} fake_trainer.py --out {checkpoint_dir} --steps {total_steps} --cooldown-start {cooldown_start} --cooldown-steps {cooldown_steps} --shape {shape} --save-every 5"
resume = "--resume-step {branch_step}"
checkpoint_dir = "{run_dir}/ckpt"
checkpoint_files = ["step_{step}.json"]
handover = "copy"
[log]
format = "regex"
train = 'step (?P<step>\\d+) lr (?P<lr>\\S+) loss (?P<train_loss>\\S+)'
[counts]
params = 1
tokens_per_step = 8
[exactness]
exact = ["lr", "w at the branch step"]
[exactness.not_exact]
nothing = "the fake trainer has no other state"
"""


@pytest.fixture
def adapter_file(tmp_path):
    (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
    (tmp_path / "fake.toml").write_text(ADAPTER)
    return tmp_path / "fake.toml"


def _curve(run_dir) -> list[dict]:
    with open(run_dir / "curve.csv") as f:
        return list(csv.DictReader(f))


def test_branch_reads_back_the_cooldown_lr_and_states_its_exactness(tmp_path, adapter_file, capsys):
    trunk = tmp_path / "trunk"
    main(["adapter", "run", str(adapter_file), "--out", str(trunk), "--steps", "20"])
    main(
        [
            "adapter",
            "branch",
            str(adapter_file),
            str(trunk),
            "--at",
            "10",
            "--length",
            "6",
            "--shape",
            "1-sqrt",
        ]
    )
    branch = trunk / "branches" / "s10-1-sqrt-k6"
    rows = _curve(branch)
    assert [int(r["step"]) for r in rows] == list(range(11, 17))
    want = parse_schedule_spec("branch:branch_step=10,cooldown_steps=6,shape=1-sqrt")
    assert np.allclose([float(r["lr"]) for r in rows], want.multipliers(11, 17), rtol=1e-12)
    assert [int(r["tokens"]) for r in rows] == [8 * s for s in range(11, 17)]
    manifest = json.loads((branch / "manifest.json").read_text())
    assert manifest["role"] == "branch" and manifest["status"] == "complete"
    assert manifest["parent"] == {"run_dir": str(trunk.absolute()), "step": 10}
    assert manifest["exactness"]["exact"] == ["lr", "w at the branch step"]
    assert "nothing" in manifest["exactness"]["not_exact"]
    assert manifest["counts"]["tokens_per_step"] == 8
    # The hand-over is real: the branch ends where the from-scratch run with that cooldown ends.
    scratch = tmp_path / "scratch"
    main(
        [
            "adapter",
            "run",
            str(adapter_file),
            "--out",
            str(scratch),
            "--steps",
            "16",
            "--cooldown",
            "6",
            "--shape",
            "1-sqrt",
        ]
    )
    assert _curve(scratch)[-1]["train_loss"] == rows[-1]["train_loss"]
    assert "branch complete" in capsys.readouterr().out


def test_branch_from_a_step_without_checkpoint_is_one_line_exit_2(tmp_path, adapter_file, capsys):
    adapter = load_adapter(adapter_file)
    adapter.run(tmp_path / "trunk", RunRequest.trunk(10))
    with pytest.raises(SystemExit) as e:
        main(
            [
                "adapter",
                "branch",
                str(adapter_file),
                str(tmp_path / "trunk"),
                "--at",
                "7",
                "--length",
                "3",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no checkpoint at step 7" in err and "\n" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('adapter = "slurm"', "adapter: must be one of"),
        ('adapter = "command"\ncommand = "x"\ncheckpoint_dir = "c"', "adapter.checkpoint_files"),
        (
            'adapter = "command"\ncommand = "x {nope}"\ncheckpoint_dir = "c"\ncheckpoint_files = []',
            "unknown field {nope}",
        ),
        (
            'adapter = "nanochat"\nnanochat_dir = "n"\nbase_dir = "b"\nsave_every = 5\n'
            'args = ["--num-iterations=3"]',
            "--num-iterations is set by the adapter",
        ),
        (
            'adapter = "nanochat"\nnanochat_dir = "n"\nbase_dir = "b"\nsave_every = 5\n'
            'compile = "no"',
            "adapter.compile: must be true or false",
        ),
    ],
)
def test_bad_adapter_file_is_one_line_exit_2(tmp_path, text, message, capsys):
    (tmp_path / "a.toml").write_text(text)
    with pytest.raises(SystemExit) as e:
        main(
            [
                "adapter",
                "run",
                str(tmp_path / "a.toml"),
                "--out",
                str(tmp_path / "r"),
                "--steps",
                "5",
            ]
        )
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_log_parsers_csv_jsonl_and_step_offsets():
    jsonl = '{"it": 0, "loss": 2.5, "lr": 1}\n{"it": 1, "loss": 2.0, "lr": 0.5}\n'
    rows = parse_log(
        jsonl, "jsonl", columns={"step": "it", "train_loss": "loss"}, tokens_per_step=4
    )
    assert [(r["step"], r["train_loss"], r["lr"], r["tokens"]) for r in rows] == [
        (0, 2.5, 1.0, 0),
        (1, 2.0, 0.5, 4),
    ]
    rows = parse_log("step,val_metric\n10,3.5\n", "csv")
    assert rows[0]["step"] == 10 and rows[0]["val_metric"] == 3.5
    log = "step 00009/00020 (45%) | loss: 7.5 | lrm: 1.00\nStep 00010 | Validation bpb: 4.0\n"
    rows = parse_log(
        log,
        "regex",
        {
            "train": r"^step (?P<step>\d+)/\d+ .*?\| loss: (?P<train_loss>[\d.]+) \| lrm: (?P<lr>[\d.]+)",
            "val": r"^Step (?P<step>\d+) \| Validation bpb: (?P<val_metric>[\d.]+)",
        },
        step_offsets={"train": 1},
    )
    assert rows == [{"step": 10, "lr": 1.0, "train_loss": 7.5, "val_metric": 4.0, "tokens": None}]


def test_nanochat_exactness_names_weight_decay_unless_it_is_zero(tmp_path):
    from cooldown.adapters import adapter_from_config

    base = {"adapter": "nanochat", "nanochat_dir": "n", "base_dir": "b", "save_every": 5}
    request = RunRequest.branch(tmp_path / "trunk", 10, 5)
    default = adapter_from_config({**base, "args": ["--depth=2"]}).exactness(request)
    assert "weight_decay" in default.not_exact and "data_position" in default.not_exact
    assert default.to_make_exact == {"weight_decay": "add --weight-decay=0 to the adapter's args"}
    zero = adapter_from_config({**base, "args": ["--weight-decay=0"]}).exactness(request)
    assert "weight_decay" not in zero.not_exact and any(e.startswith("lr:") for e in zero.exact)
    with pytest.raises(Exception, match="warmdown is linear"):
        adapter_from_config(base).command(
            tmp_path / "b", RunRequest.branch(tmp_path / "trunk", 10, 5, shape="1-sqrt")
        )


def test_nanochat_compile_false_disables_dynamo_for_its_process_only(tmp_path):
    from cooldown.adapters import adapter_from_config

    base = {"adapter": "nanochat", "nanochat_dir": "n", "base_dir": "b", "save_every": 5}
    _, _, env = adapter_from_config(base).command(tmp_path / "t", RunRequest.trunk(5))
    assert "TORCHDYNAMO_DISABLE" not in env
    _, _, env = adapter_from_config({**base, "compile": False}).command(
        tmp_path / "t", RunRequest.trunk(5)
    )
    # TORCHDYNAMO_DISABLE makes torch.compile return its argument; TORCH_COMPILE_DISABLE would
    # make nanochat's fullgraph=True optimizer steps raise.
    assert env["TORCHDYNAMO_DISABLE"] == "1" and "TORCH_COMPILE_DISABLE" not in env


def test_cooldown_branch_with_an_adapter_makes_one_branch_per_shape(tmp_path, adapter_file, capsys):
    trunk = tmp_path / "trunk"
    main(["adapter", "run", str(adapter_file), "--out", str(trunk), "--steps", "20"])
    args = ["branch", str(trunk), "--adapter", str(adapter_file), "--at", "10", "--length", "4"]
    main([*args, "--shape", "linear", "--shape", "1-sqrt"])
    for shape in ("linear", "1-sqrt"):
        rows = _curve(trunk / "branches" / f"s10-{shape}-k4")
        want = parse_schedule_spec(f"branch:branch_step=10,cooldown_steps=4,shape={shape}")
        assert np.allclose([float(r["lr"]) for r in rows], want.multipliers(11, 15), rtol=1e-12)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([*args, "--fraction", "0.2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--adapter" in err[0]
