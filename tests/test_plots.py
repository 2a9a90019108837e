"""Plot annotations: where the learning curves mark the switches and the selected epoch."""

from __future__ import annotations

from absgd.training.plots import markers


def test_markers_put_a_change_at_0_based_epoch_k_between_plotted_epochs_k_and_k_plus_1():
    config = {
        "objective": {
            "weighting": "absgd",
            "lam_switch": 15,
            "class_weighting": "drw",
            "class_weighting_options": {"switch": 15},
        },
        "optim": {"schedule": "step", "milestones": [15, 18]},
    }
    assert markers(config, {"selected_epoch": 19}) == [
        (15.5, "ABSGD on"),
        (15.5, "DRW on"),
        (15.5, "LR decay"),
        (18.5, "LR decay"),
        (19.0, "selected"),
    ]
    plain = {"objective": {"weighting": "none"}, "optim": {"schedule": "cosine"}}
    assert markers(plain, {"selected_epoch": 4}) == [(4.0, "selected")]
    assert markers(None, {}) == []
