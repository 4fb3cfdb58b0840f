"""`cooldown.study.methods`: each study method is one registered object that the planner and the
run-config builder dispatch through."""

from __future__ import annotations

from cooldown.study.methods import REGISTRY, TRUNK_METHODS
from cooldown.study.plan import build_plan
from cooldown.study.spec import METHODS, Methods, study_from_dict


def _spec(**methods):
    return study_from_dict(
        {
            "sizes": [{"name": "s", "preset": "tiny-0.2M", "steps": [40, 80, 120]}],
            "batch_size": 4,
            "seq_len": 32,
            "warmup_steps": 5,
            "train": {"eval_interval": 10},
            "averaging": {"swa_window": 10},
            "methods": methods,
        }
    )


def test_every_method_table_is_a_registered_method():
    assert tuple(REGISTRY) == METHODS == ("cosine", "cooldown", "swa", "cooldown-predicted")
    fields = Methods.model_fields
    for name, method in REGISTRY.items():
        assert method.name == name
        assert method.settings_model is fields[name.replace("-", "_")].annotation.__args__[0]
    assert TRUNK_METHODS == ("cooldown", "swa", "cooldown-predicted")


def test_each_method_plans_only_its_own_nodes():
    spec = _spec(
        cosine={"lr": 2e-3},
        cooldown={"lr": 1e-3, "fraction": 0.25},
        swa={},
        **{"cooldown-predicted": {"measured": 1, "fraction": 0.25}},
    )
    plan = build_plan(spec)
    by_method = {}
    for node in plan.nodes:
        by_method.setdefault(node.method, []).append(node)
    assert set(by_method) == {"constant", *METHODS}
    # One trunk (one LR) to the last cooldown's branch point or the last swa read-off.
    (trunk,) = by_method["constant"]
    assert trunk.total_steps == 120 and trunk.branch_points == (30, 60, 90)
    assert [n.cooldown_steps for n in by_method["cooldown"]] == [10, 20, 30]
    assert [n.kind for n in by_method["swa"]] == ["average"] * 3
    # The predicted method's largest budget is the cooldown's branch (same run, trained once).
    kinds = [n.kind for n in by_method["cooldown-predicted"]]
    assert kinds == ["prediction", "prediction", "shared"]
    assert all(n.parent == trunk.id for n in plan.nodes if n.method != "cosine" and n != trunk)
    assert plan.definition(by_method["cosine"][0])["method_settings"] == {"final_lr_frac": 0.1}
