"""``train.branch_from``: a run continued from another run's kept checkpoint equals the run its
config describes from scratch, and a checkpoint it could not have come from is refused."""

from __future__ import annotations

import json

import pytest
import torch

from absgd.training import RunInterrupted, train
from absgd.training.branch import BranchError, kept_checkpoint_name
from absgd.training.config import load_config

# the tiny runs' λ is sharp: the low effective sample size warning is expected here
pytestmark = pytest.mark.filterwarnings("ignore:epoch .*effective sample size:UserWarning")

TINY = [
    "data.name=synthetic",
    "data.options={num_classes: 3, train_per_class: 40, test_per_class: 6, shape: [8, 8, 1]}",
    "data.imbalance_ratio=8",
    "data.val_per_class=3",
    "data.val_fraction=null",
    "data.augment=none",
    "model.name=mlp",
    "model.options={hidden: [16], dropout: 0.2}",
    "train.batch_size=8",
    "train.epochs=4",
    "train.device=cpu",
    "train.deterministic=true",
    "optim.warmup_epochs=1",
    "optim.schedule=step",
    "optim.milestones=[3]",
    "optim.factors=[0.1]",
]
DRW = ["objective.class_weighting=drw", "objective.class_weighting_options={switch: 2}"]
ABSGD_AT_2 = ["objective.weighting=absgd", "objective.lam=1.0", "objective.lam_switch=2"]


def _cfg(*extra: str | list[str]):
    flat: list[str] = []
    for item in extra:
        flat += [item] if isinstance(item, str) else item
    return load_config(None, [*TINY, *flat])


def _history(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _params(run, name="model.pt"):
    return torch.load(run / name, weights_only=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """DRW, keeping its checkpoint after the 2 epochs before the switch."""
    out = tmp_path_factory.mktemp("branch") / "base"
    train(_cfg(DRW, "train.keep_checkpoints=[2]", "train.select=best_balanced_accuracy"), out)
    return out


@pytest.mark.parametrize(
    "variant",
    [
        [],  # init first_batch (the default), λ = 1
        ["objective.weighting_options={gamma: 0.7, alpha: 0.5, init: zero}"],
        ["objective.target_ess=0.7"],
    ],
    ids=["first-batch", "init-zero", "target-ess"],
)
def test_a_branch_at_the_switch_equals_the_run_from_scratch(base, tmp_path, variant):
    settings = [*DRW, *ABSGD_AT_2, *variant, "train.select=best_balanced_accuracy"]
    scratch = tmp_path / "scratch"
    full = train(_cfg(settings), scratch)
    branch = tmp_path / "branch"
    kept = base / kept_checkpoint_name(2)
    got = train(_cfg(settings, f"train.branch_from={kept}"), branch)
    # the reference: the same config trained from its first step; the stage 1 differs from
    # the base's only in float32 rounding (ABSGD's uniform 1/B weights against the mean)
    ref, mine = _params(scratch), _params(branch)
    for key in ref:
        torch.testing.assert_close(mine[key], ref[key], rtol=1e-4, atol=1e-5)
    after = [(r["train_loss"], r.get("effective_sample_size")) for r in _history(branch)[2:]]
    want = [(r["train_loss"], r.get("effective_sample_size")) for r in _history(scratch)[2:]]
    for (loss, ess), (loss_ref, ess_ref) in zip(after, want, strict=True):
        assert loss == pytest.approx(loss_ref, rel=1e-4)
        assert ess == pytest.approx(ess_ref, rel=1e-4)
    assert got["selected_epoch"] == full["selected_epoch"]
    assert got["balanced_accuracy"] == pytest.approx(full["balanced_accuracy"], abs=1e-9)
    assert got["branched_from"] == {"checkpoint": str(kept.resolve()), "epoch": 2}
    assert full["branched_from"] is None
    # the first two epochs are the source's own lines
    assert _history(branch)[:2] == _history(base)[:2]


def test_branching_with_the_same_config_continues_the_run_exactly(base, tmp_path):
    """The base's own config from its kept checkpoint: the uninterrupted base, to the bit, the
    best-so-far model included (its selection reaches back before the branch point)."""
    cfg = _cfg(
        DRW,
        "train.select=best_balanced_accuracy",
        f"train.branch_from={base}/" + kept_checkpoint_name(2),
    )
    out = tmp_path / "again"
    got = train(cfg, out)
    ref = json.loads((base / "final.json").read_text())
    assert got["selected_epoch"] == ref["selected_epoch"]
    for key in ("top1", "balanced_accuracy", "per_class_accuracy"):
        assert got[key] == ref[key]
    for key, value in _params(base).items():
        assert torch.equal(_params(out)[key], value)
    assert _history(out) == [
        {**r, "epoch_seconds": s["epoch_seconds"]}
        for r, s in zip(_history(base), _history(out), strict=True)
    ]


def test_the_kept_checkpoint_carries_the_best_model_of_its_time(tmp_path):
    out = tmp_path / "kept"
    # checkpoint_every=3 writes checkpoint.pt after epochs 3 and 4 only; the kept ones anyway
    train(
        _cfg(
            DRW,
            "train.keep_checkpoints=[1, 2, 3, 4]",
            "train.checkpoint_every=3",
            "train.select=best_top1",
            "optim.lr=0.5",
        ),
        out,
    )
    names = sorted(p.name for p in out.glob("checkpoint*.pt"))
    assert names == [f"checkpoint-epoch{e}.pt" for e in (1, 2, 3, 4)] + ["checkpoint.pt"]
    kept = {e: torch.load(out / f"checkpoint-epoch{e}.pt", weights_only=True) for e in (1, 2, 3, 4)}
    for e, state in kept.items():
        assert state["epoch"] == e and state["step"] == 0
        best = state["best"]["epoch"]
        assert best <= e
        # the best-so-far model is the model that epoch ended with, kept independently
        for key, value in kept[best]["model"].items():
            assert torch.equal(state["best_model"][key], value)
    history = _history(out)
    scores = [r["val"]["top1"] for r in history]
    assert kept[4]["best"]["epoch"] == 1 + scores.index(max(scores))


def test_a_branched_run_resumes_after_an_interruption(base, tmp_path):
    settings = [
        *DRW,
        *ABSGD_AT_2,
        "train.select=best_balanced_accuracy",
        f"train.branch_from={base / kept_checkpoint_name(2)}",
    ]
    whole = tmp_path / "whole"
    train(_cfg(settings), whole)
    out = tmp_path / "interrupted"
    with pytest.raises(RunInterrupted):
        train(_cfg(settings), out, stop_after_steps=3)
    final = train(_cfg(settings), out, resume=True)
    assert final["branched_from"]["epoch"] == 2
    for key, value in _params(whole).items():
        assert torch.equal(_params(out)[key], value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # ABSGD on from the first epoch: epochs 0-1 would have trained otherwise
        (["objective.weighting=absgd", "objective.lam=1.0"], "this config's ABSGD weights are on"),
        # class-balanced weights from the start, where the source had none before epoch 2
        (
            ["objective.class_weighting=class_balanced", "objective.class_weighting_options={}"],
            "objective is not the source's at 0-based epoch 0",
        ),
        # ABSGD switched on one epoch before the branch point
        (
            ["objective.weighting=absgd", "objective.lam=1.0", "objective.lam_switch=1"],
            "this config's ABSGD weights are on before the checkpoint's epoch 2",
        ),
        (["data.imbalance_ratio=4"], "data.imbalance_ratio: 4"),
        (["optim.warmup_epochs=0"], "optim.warmup_epochs"),
        (["train.seed=1"], "train.seed"),
        (["train.epochs=2"], "nothing would be left to train"),
    ],
)
def test_a_config_that_would_not_have_trained_the_first_epochs_is_refused(
    base, tmp_path, extra, message
):
    settings = [
        *DRW,
        "train.select=best_balanced_accuracy",
        f"train.branch_from={base / kept_checkpoint_name(2)}",
        *extra,
    ]
    with pytest.raises(BranchError, match=message):
        train(_cfg(settings), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # refused before anything is written


def test_a_schedule_that_differs_before_the_branch_point_is_refused(tmp_path):
    source = tmp_path / "source"
    train(_cfg("optim.schedule=cosine", "train.keep_checkpoints=[2, 3]"), source)
    # cosine over 6 epochs instead of 4 (warm-up 1): the same rates up to 0-based epoch 1,
    # where the half-cosine starts, other rates from epoch 2 on
    train(
        _cfg(
            "optim.schedule=cosine",
            "train.epochs=6",
            f"train.branch_from={source}/" + kept_checkpoint_name(2),
        ),
        tmp_path / "cosine-at-2",
    )
    kept = source / kept_checkpoint_name(3)
    with pytest.raises(BranchError, match="learning rate of 0-based epoch 2 differs"):
        train(
            _cfg("optim.schedule=cosine", "train.epochs=6", f"train.branch_from={kept}"),
            tmp_path / "cosine",
        )
    # a step schedule stopped at the branch point: the same rates, so a longer run may branch
    stopped = tmp_path / "stopped"
    train(_cfg(DRW, "train.epochs=2"), stopped)
    train(_cfg(DRW, *ABSGD_AT_2, f"train.branch_from={stopped}"), tmp_path / "longer")


def test_a_checkpoint_inside_an_epoch_or_without_the_best_model_is_refused(tmp_path):
    source = tmp_path / "source"
    with pytest.raises(RunInterrupted):
        train(_cfg(DRW), source, stop_after_steps=3)
    with pytest.raises(BranchError, match="stopped inside epoch 1"):
        train(_cfg(DRW, f"train.branch_from={source}"), tmp_path / "mid")
    plain = tmp_path / "plain"
    train(_cfg(DRW, "train.select=best_top1", "train.epochs=2"), plain)
    (plain / "best_model.pt").unlink()
    with pytest.raises(BranchError, match="the checkpoint does not hold its model"):
        train(_cfg(DRW, "train.select=best_top1", f"train.branch_from={plain}"), tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="no checkpoint there"):
        train(_cfg(DRW, f"train.branch_from={tmp_path / 'nowhere'}"), tmp_path / "c")


def test_keep_checkpoints_beyond_the_run_is_a_config_error():
    with pytest.raises(ValueError, match=r"train.keep_checkpoints \[5\] must be epochs"):
        _cfg("train.keep_checkpoints=[5]")


def test_tune_branches_every_candidate_off_one_base(base, tmp_path):
    from absgd.cli import main
    from absgd.training.config import dump_yaml

    config = tmp_path / "absgd.yaml"
    config.write_text(dump_yaml(_cfg(DRW, ABSGD_AT_2, "train.select=best_balanced_accuracy")))
    kept = base / kept_checkpoint_name(2)
    args = ["tune", "--config", str(config), "--param", "objective.lam", "--values", "1", "3"]
    args += ["--set", f"train.branch_from={kept}", "--out", str(tmp_path / "tune"), "--quiet"]
    assert main(args) == 0
    finals = sorted((tmp_path / "tune").glob("*/final.json"))
    assert len(finals) == 2
    for path in finals:
        assert json.loads(path.read_text())["branched_from"]["epoch"] == 2


def test_a_source_weighting_before_the_branch_point_continues_or_is_refused(tmp_path):
    """ABSGD on from epoch 1: at the branch point its moving average s carries information. The
    source's own config continues it (the uninterrupted run, to the bit); another objective
    would start it afresh where a whole run would not, so it is refused."""
    early = [*DRW, "objective.weighting=absgd", "objective.lam=1.0", "objective.lam_switch=1"]
    source = tmp_path / "source"
    train(_cfg(early, "train.keep_checkpoints=[2]"), source)
    kept = source / kept_checkpoint_name(2)
    same = tmp_path / "same"
    train(_cfg(early, f"train.branch_from={kept}"), same)
    for key, value in _params(source).items():
        assert torch.equal(_params(same)[key], value)
    assert _history(same)[2]["train_loss"] == _history(source)[2]["train_loss"]
    other = [*early[:-2], "objective.lam=3.0", "objective.lam_switch=1"]
    with pytest.raises(BranchError, match="the source's ABSGD weights are on before"):
        train(_cfg(other, f"train.branch_from={kept}"), tmp_path / "other")


def test_the_objectives_are_compared_by_their_gradients_too(tmp_path):
    """A rescaled ABSGD objective returns the plain mean loss's value with other weights: the
    values agree, the gradients with respect to the logits do not."""
    from absgd.training.branch import check_objectives_agree
    from absgd.training.build import prepare_data

    plain = _cfg()
    rescaled = _cfg(
        "objective.weighting=absgd",
        "objective.lam=1.0",
        "objective.weighting_options={rescale: true}",
    )
    data = prepare_data(plain.data)
    check_objectives_agree(plain, plain, data, 2, torch.device("cpu"))
    with pytest.raises(BranchError, match="or their gradients differ"):
        check_objectives_agree(plain, rescaled, data, 1, torch.device("cpu"))


def test_a_meta_weight_net_source_is_refused(base, tmp_path):
    state = torch.load(base / kept_checkpoint_name(2), weights_only=True)
    state["config"]["objective"]["weighting"] = "meta_weight_net"
    state["config"]["objective"]["class_weighting"] = "none"
    state["config"]["data"]["meta_per_class"] = 2
    forged = tmp_path / "mwn.pt"
    torch.save(state, forged)
    with pytest.raises(BranchError, match="Meta-Weight-Net"):
        train(
            _cfg(DRW, "train.select=best_balanced_accuracy", f"train.branch_from={forged}"),
            tmp_path / "b",
        )
