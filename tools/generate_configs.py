"""Write the shipped configs under ``src/absgd/configs`` (run from the repository root).

The configs are plain YAML files composed with ``base:``; this script only saves typing the
dataset × method grid. ``tests/test_configs.py`` checks that the files equal its output, so
edit the grid here and re-run ``python tools/generate_configs.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1] / "src" / "absgd" / "configs"


# LDAM-DRW + ABSGD ships with a target effective sample size instead of a fixed λ: LDAM's
# losses (s = 30) times the DRW weights inside the exponent put a fixed λ on the wrong scale.
LDAM_TARGET = {"lam": 1.0, "target_ess": 0.9}
LDAM_TARGET_WHY = (
    "A fixed λ\ncollapsed here: λ = 5 on CIFAR-10-LT (effective sample size 4-19 %), and\n"
    "every λ in {1, 3, 10} on Fashion-MNIST-LT; target 0.9 did not (docs/results.md).\n"
    "Choose it on validation with absgd tune --values 0.9 0.7 0.5."
)


def _yaml(mapping: dict) -> str:
    return yaml.safe_dump(mapping, sort_keys=False, default_flow_style=None, width=100)


def files() -> dict[str, str]:
    out: dict[str, str] = {}

    def put(path: str, mapping: dict, comment: str = "") -> None:
        head = "".join(f"# {line}\n" for line in comment.splitlines())
        out[path] = head + _yaml(mapping)

    # -- CIFAR-LT (Cao et al. 2019 protocol, followed by the ABSGD paper) --------------------
    cifar_optim = {
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 2.0e-4,
        "schedule": "step",
        "warmup_epochs": 5,
        "milestones": [160, 180],
        "factors": [0.01, 0.0001],
    }
    put(
        "_protocol/cifar_lt.yaml",
        {
            "model": {"name": "resnet32"},
            "optim": cifar_optim,
            "train": {"epochs": 200, "batch_size": 128, "select": "last"},
            "data": {"augment": "crop_flip", "padding": 4, "val_source": "none"},
        },
        "CIFAR-LT protocol of LDAM-DRW (Cao et al. 2019), used by the ABSGD paper: ResNet-32,\n"
        "200 epochs, batch 128, SGD momentum 0.9, weight decay 2e-4, LR 0.1 with a 5-epoch\n"
        "warm-up, x0.01 at epoch 160 and x0.0001 at 180; crop 32 (padding 4) + flip.\n"
        "The training split is exactly the standard long-tailed one, so there is no validation\n"
        "split and the last epoch is reported (never the best test epoch). For model or λ\n"
        "selection add: --set data.val_source=leftover --set data.val_per_class=50\n"
        "--set data.val_fraction=null --set train.select=best_balanced_accuracy (where the\n"
        "deployment keeps the training skew: best_top1_train_prior, and absgd tune --metric\n"
        "top1_train_prior with λ = inf among the candidates; docs/training.md)",
    )
    datasets = {"cifar10": "data/cifar10", "cifar100": "data/cifar100"}
    for ds, root in datasets.items():
        for profile in ("exp", "step"):
            for ratio in (100, 10):
                put(
                    f"_data/{ds}_lt_{profile}{ratio}.yaml",
                    {
                        "base": "../_protocol/cifar_lt.yaml",
                        "data": {
                            "name": ds,
                            "root": root,
                            "imbalance_ratio": ratio,
                            "profile": profile,
                        },
                    },
                    f"{ds.upper()}-LT, {profile} profile, imbalance ratio {ratio}. Put the\n"
                    f"canonical python archive in {root}/ or pass --set data.root=DIR.",
                )
    drw = {"class_weighting": "drw", "class_weighting_options": {"switch": 160}}
    methods = {
        "ce": ({"loss": "ce"}, {}),
        "focal": ({"loss": "focal", "loss_options": {"gamma": 1.0}}, {}),
        "cb_drw": ({"loss": "ce", **drw}, {}),
        "ldam_drw": (
            {"loss": "ldam", "loss_options": {"max_margin": 0.5, "scale": 30.0}, **drw},
            {"model": {"options": {"normed_classifier": True}}},
        ),
    }
    lam = {"cifar10": 5.0, "cifar100": 3.0}
    gamma = {"cifar10": 0.7, "cifar100": 0.45}
    for name, (objective, extra) in methods.items():
        put(f"_method/{name}.yaml", {"objective": objective, **extra})
    for ds in datasets:
        for name in methods:
            if name == "ldam_drw":
                put(
                    f"_method/{ds}_{name}_absgd.yaml",
                    {
                        "base": f"{name}.yaml",
                        "objective": {"weighting": "absgd", **LDAM_TARGET, "lam_switch": 160},
                    },
                    "ABSGD stacked on LDAM-DRW, two-stage: plain SGD until epoch 160 (with the LR\n"
                    "decay and DRW), then ABSGD with λ solved per batch for an effective sample\n"
                    "size of 0.9 (step rescaled to the mean loss). " + LDAM_TARGET_WHY,
                )
                continue
            put(
                f"_method/{ds}_{name}_absgd.yaml",
                {
                    "base": f"{name}.yaml",
                    "objective": {
                        "weighting": "absgd",
                        "lam": lam[ds],
                        "lam_switch": 160,
                        "weighting_options": {"gamma": gamma[ds]},
                    },
                },
                "ABSGD stacked on the method, two-stage: plain SGD until epoch 160 (with the LR\n"
                "decay and DRW), λ from then on. λ and γ follow the authors' example commands\n"
                f"for {ds.upper()}-LT; α = 1 and the first-batch initialisation are absgd's\n"
                "defaults.",
            )
        for profile in ("exp", "step"):
            for ratio in (100, 10):
                setting = f"{ds}_lt_{profile}{ratio}"
                for name in methods:
                    for suffix, method_file in (
                        ("", f"{name}.yaml"),
                        ("_absgd", f"{ds}_{name}_absgd.yaml"),
                    ):
                        put(
                            f"cifar_lt/{setting}/{name}{suffix}.yaml",
                            {
                                "base": [
                                    f"../../_data/{setting}.yaml",
                                    f"../../_method/{method_file}",
                                ],
                                "name": f"{setting}-{name}{suffix}",
                            },
                        )

    # -- CIFAR-LT as the ABSGD authors run it (qiqi-helloworld/ABSGD: train.py, mylosses.py,
    # myutils.py and the README's commands) ----------------------------------------------------
    put(
        "_protocol/cifar_lt_authors.yaml",
        {
            "model": {"name": "resnet32"},
            # their decay from 0-based epoch 159, and none at 180
            "optim": {**cifar_optim, "milestones": [159], "factors": [0.01]},
            "train": {"epochs": 200, "batch_size": 128, "select": "last", "test_every": 1},
            "data": {"augment": "crop_flip", "padding": 4, "val_source": "none"},
        },
        "The ABSGD authors' CIFAR-LT runs: LR 0.1 with a 5-epoch warm-up and x0.01 once\n"
        "epoch + 1 >= 160 (0-based epoch 159), no decay at 180; DRW and the λ switch at 0-based\n"
        "epoch 160; the test split every epoch for the paper-style column (final.json\n"
        "paper_style: the best test epoch, as they report), the last epoch as the selected\n"
        "model. Differences that remain: docs/method.md, section 8.",
    )
    authors_data = {
        # the README's CIFAR-10 command: batch 100, dropout 0.2 before the classifier
        "cifar10": ({"batch_size": 100}, {"dropout": 0.2}),
        "cifar100": ({}, {}),
    }
    pretty = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
    authors_absgd = {
        "cifar10": {"lam": 5.0, "gamma": 0.7, "alpha": 0.5},
        "cifar100": {"lam": 3.0, "gamma": 0.45, "alpha": 0.3},
    }
    authors_methods = {
        "ce": ({"loss": "ce"}, {}),
        "cb_drw": ({"loss": "ce", **drw}, {}),
        "ldam_drw": (
            {"loss": "ldam", "loss_options": {"max_margin": 0.5, "scale": 30.0}, **drw},
            {"normed_classifier": True},
        ),
    }
    for ds, (train_extra, model_extra) in authors_data.items():
        a = authors_absgd[ds]
        absgd_note = (
            "ABSGD as the authors run it: p = exp(c·l/λ)/(B·u), u starting at 0\n"
            f"at the switch (init: zero), α = {a['alpha']}, γ = {a['gamma']}, the raw Σ p·(c·l).\n"
            f"λ = {a['lam']:g} is their {pretty[ds]} command's (cross-entropy); select it on\n"
            "validation for other settings (absgd tune --param objective.lam ... with\n"
            "data.val_source=leftover)."
        )
        for profile in ("exp", "step"):
            for ratio in (100, 10):
                setting = f"{ds}_lt_{profile}{ratio}"
                for name, (objective, model_options) in authors_methods.items():
                    variants = [("", objective, "")]
                    if name != "ldam_drw":
                        variants.append(
                            (
                                "_absgd",
                                {
                                    **objective,
                                    "weighting": "absgd",
                                    "lam": a["lam"],
                                    "lam_switch": 160,
                                    "placement": "inside",
                                    "normalize_class_weights": False,
                                    "weighting_options": {
                                        "gamma": a["gamma"],
                                        "alpha": a["alpha"],
                                        "init": "zero",
                                    },
                                },
                                absgd_note,
                            )
                        )
                    for suffix, obj, comment in variants:
                        put(
                            f"cifar_lt/{setting}/authors/{name}{suffix}.yaml",
                            {
                                "base": [
                                    f"../../../_data/{setting}.yaml",
                                    "../../../_protocol/cifar_lt_authors.yaml",
                                ],
                                "name": f"{setting}-authors-{name}{suffix}",
                                "model": {"options": {**model_options, **model_extra}},
                                "objective": obj,
                                **({"train": train_extra} if train_extra else {}),
                            },
                            comment,
                        )

    # -- Noisy labels --------------------------------------------------------------------------
    put(
        "_protocol/noisy_cifar10.yaml",
        {
            "data": {
                "name": "cifar10",
                "root": "data/cifar10",
                "augment": "crop_flip",
                "val_source": "split",
                "val_fraction": 0.1,
            },
            "model": {"name": "cnn8"},
            "optim": {
                "lr": 0.01,
                "weight_decay": 1.0e-4,
                "schedule": "cosine",
                "warmup_epochs": 0,
            },
            "train": {"epochs": 120, "batch_size": 128, "select": "best_top1"},
        },
        "Noisy CIFAR-10 after Wang et al. 2019 (SCE): the 8-layer CNN, 120 epochs, SGD LR 0.01,\n"
        "weight decay 1e-4 (cosine decay here). The validation split is carved from the noisy\n"
        "training labels, so selection never sees a clean label; the test set is clean.",
    )
    put(
        "_protocol/noisy_cifar100.yaml",
        {
            "data": {
                "name": "cifar100",
                "root": "data/cifar100",
                "augment": "crop_flip",
                "val_source": "split",
                "val_fraction": 0.1,
            },
            "model": {"name": "resnet32"},
            "optim": {
                "lr": 0.1,
                "weight_decay": 5.0e-4,
                "schedule": "cosine",
                "warmup_epochs": 5,
            },
            "train": {"epochs": 150, "batch_size": 128, "select": "best_top1"},
        },
        "Noisy CIFAR-100: ResNet-32, 150 epochs, SGD LR 0.1 (cosine), weight decay 5e-4.\n"
        "Validation carved from the noisy training labels; the test set is clean.",
    )
    noise_methods = {
        "ce": {"loss": "ce"},
        "sce": {"loss": "sce"},
        "gce": {"loss": "gce", "loss_options": {"q": 0.7}},
        "ce_absgd": {"loss": "ce", "weighting": "absgd", "lam": -2.0},
        "sce_absgd": {"loss": "sce", "weighting": "absgd", "lam": -2.0},
    }
    sce_options = {"cifar10": {"alpha": 0.1, "beta": 1.0}, "cifar100": {"alpha": 6.0, "beta": 0.1}}
    # λ < 0 switched on for the last third: the authors' noisy-label code switches at epoch 80
    # of 120 (their second LR decay); CIFAR-100 takes the same 2/3 of its 150 epochs. From the
    # first step it can collapse onto the classes the model already fits.
    noise_switch = {"cifar10": (80, 120), "cifar100": (100, 150)}
    for ds in ("cifar10", "cifar100"):
        for kind in ("symmetric", "asymmetric"):
            for rate in (0.2, 0.4):
                setting = f"{ds}_{kind[:3]}{int(rate * 100)}"
                for name, objective in noise_methods.items():
                    objective = dict(objective)
                    switch, epochs = noise_switch[ds]
                    if "absgd" in name:
                        objective["lam_switch"] = switch
                    if objective["loss"] == "sce":
                        objective["loss_options"] = sce_options[ds]
                    data = {"noise_rate": rate, "noise_kind": kind}
                    if kind == "asymmetric":
                        data["noise_mapping"] = "cifar10" if ds == "cifar10" else "groups"
                    put(
                        f"noisy/{setting}/{name}.yaml",
                        {
                            "base": f"../../_protocol/noisy_{ds}.yaml",
                            "name": f"noisy-{setting}-{name}",
                            "data": data,
                            "objective": objective,
                        },
                        "ABSGD with λ < 0 down-weights high-loss (likely mislabelled) samples,\n"
                        f"two-stage: plain SGD, then λ from epoch {switch} of {epochs} (the\n"
                        "last third, as in the authors' noisy-label code; from the first step,\n"
                        "λ < 0 can collapse onto the classes the model already fits). The best\n"
                        "validation epoch can precede the switch (selected_before_switch in\n"
                        "final.json). λ = -2 is a starting point: select it on validation."
                        if "absgd" in name
                        else "",
                    )

    # -- Large-scale long-tailed: second-stage fine-tuning ------------------------------------
    large = {
        "imagenet_lt": ("resnet10", 1000, "ImageNet_LT"),
        "inaturalist2018": ("resnet50", 8142, "iNaturalist18"),
        "places_lt": ("resnet50", 365, "Places_LT"),
    }
    for ds, (model, classes, prefix) in large.items():
        data = {
            "name": "list_file",
            "root": f"data/{ds}",
            "options": {
                "train_list": f"{prefix}_train.txt",
                "val_list": f"{prefix}_val.txt",
                "test_list": f"{prefix}_test.txt",
                "num_classes": classes,
                "resize": 256,
                "crop": 224,
            },
            "augment": "flip",
            "val_source": "split",
            "val_fraction": None,
        }
        if ds == "inaturalist2018":  # iNaturalist 2018 has no separate test list
            data["options"]["test_list"] = f"{prefix}_val.txt"
            del data["options"]["val_list"]
            data["val_source"] = "none"
        train = {"batch_size": 256, "num_workers": 8, "precision": "bf16", "eval_batch_size": 512}
        put(
            f"large_scale/{ds}_stage1_ce.yaml",
            {
                "name": f"{ds}-stage1-ce",
                "data": data,
                "model": {"name": model, "channels_last": True},
                "objective": {"loss": "ce"},
                "optim": {
                    "lr": 0.1,
                    "weight_decay": 5.0e-4,
                    "schedule": "cosine",
                    "warmup_epochs": 0,
                },
                "train": {**train, "epochs": 90, "select": "last"},
            },
            f"{ds}: first stage, plain cross-entropy from scratch ({model}, 90 epochs, cosine).\n"
            f"Lists 'path label' under data/{ds}/ (pass --set data.root=DIR).",
        )
        put(
            f"large_scale/{ds}_stage2_absgd.yaml",
            {
                "name": f"{ds}-stage2-absgd",
                "data": data,
                "model": {
                    "name": model,
                    "channels_last": True,
                    "init_from": f"runs/{ds}-stage1-ce",
                },
                "objective": {
                    "loss": "ce",
                    "weighting": "absgd",
                    "lam": 1.0,
                    "weighting_options": {"gamma": 0.9},
                },
                "optim": {
                    "lr": 0.01,
                    "weight_decay": 5.0e-4,
                    "schedule": "cosine",
                    "warmup_epochs": 0,
                },
                "train": {**train, "epochs": 30, "select": "last"},
            },
            f"{ds}: second stage, ABSGD fine-tuning of the whole network from the first-stage\n"
            "run (model.init_from). Point init_from at your stage-1 run directory.",
        )

    # -- CPU-sized settings ------------------------------------------------------------------
    digits = {
        "name": "digits",
        "imbalance_ratio": 50,
        "val_source": "none",
        "augment": "crop",
        "padding": 1,
    }
    for name, objective in {
        "ce": {"loss": "ce"},
        "ce_absgd": {"loss": "ce", "weighting": "absgd", "lam": 2.0, "lam_switch": 20},
    }.items():
        put(
            f"cpu/digits_lt50_{name}.yaml",
            {
                "name": f"digits-lt50-{name}",
                "data": digits,
                "model": {"name": "mlp", "options": {"hidden": [128]}},
                "objective": objective,
                "optim": {
                    "lr": 0.05,
                    "weight_decay": 5.0e-4,
                    "schedule": "step",
                    "warmup_epochs": 0,
                    "milestones": [20],
                    "factors": [0.1],
                },
                "train": {
                    "epochs": 30,
                    "batch_size": 32,
                    "device": "cpu",
                    "deterministic": True,
                    "select": "last",
                },
            },
            "The setting of `absgd demo`: scikit-learn's bundled digits (no download) made\n"
            "long-tailed at ratio 50, an MLP, 30 epochs; seconds on a CPU.",
        )
    fmnist = {
        "name": "fashion_mnist",
        "root": "data/fashion-mnist",
        "imbalance_ratio": 100,
        "profile": "exp",
        "augment": "crop",
        "padding": 2,
        "val_source": "leftover",
        "val_fraction": None,
        "val_per_class": 100,
    }
    cpu_train = {
        "epochs": 20,
        "batch_size": 128,
        "select": "best_balanced_accuracy",
        "device": "cpu",
    }
    cpu_optim = {
        "lr": 0.05,
        "weight_decay": 5.0e-4,
        "schedule": "step",
        "warmup_epochs": 1,
        "milestones": [15],
        "factors": [0.1],
    }
    for name, objective in {
        "ce": {"loss": "ce"},
        "ce_absgd": {"loss": "ce", "weighting": "absgd", "lam": 2.0, "lam_switch": 15},
        "ldam_drw": {
            "loss": "ldam",
            "loss_options": {"scale": 30.0},
            "class_weighting": "drw",
            "class_weighting_options": {"switch": 15},
        },
        "ldam_drw_absgd": {
            "loss": "ldam",
            "loss_options": {"scale": 30.0},
            "class_weighting": "drw",
            "class_weighting_options": {"switch": 15},
            "weighting": "absgd",
            **LDAM_TARGET,
            "lam_switch": 15,
        },
    }.items():
        model = {"name": "small_cnn"}
        if name.startswith("ldam"):
            model["options"] = {"normed_classifier": True}
        put(
            f"cpu/fashion_mnist_lt_exp100_{name}.yaml",
            {
                "name": f"fmnist-lt-exp100-{name}",
                "data": fmnist,
                "model": model,
                "objective": objective,
                "optim": cpu_optim,
                "train": cpu_train,
            },
            "Fashion-MNIST-LT (exp, ratio 100) with the small CNN: minutes on a laptop CPU.\n"
            "A balanced validation split of 100 images per class comes from the images the\n"
            "long-tailed selection left out.",
        )
    short = {
        "name": "image_folder",
        "root": "data/cifar10_jpeg_q75.tar.gz",
        "imbalance_ratio": 100,
        "profile": "exp",
        "val_source": "leftover",
        "val_fraction": None,
        "val_per_class": 50,
    }
    for name, objective in {
        "ce": {"loss": "ce"},
        "ce_absgd": {"loss": "ce", "weighting": "absgd", "lam": 5.0, "lam_switch": 16},
        "ldam_drw": {
            "loss": "ldam",
            "class_weighting": "drw",
            "class_weighting_options": {"switch": 16},
        },
        "ldam_drw_absgd": {
            "loss": "ldam",
            "class_weighting": "drw",
            "class_weighting_options": {"switch": 16},
            "weighting": "absgd",
            **LDAM_TARGET,
            "lam_switch": 16,
        },
    }.items():
        model = {"name": "resnet32"}
        if name.startswith("ldam"):
            model["options"] = {"normed_classifier": True}
        put(
            f"cpu/cifar10_lt_exp100_short_{name}.yaml",
            {
                "base": "../_protocol/cifar_lt.yaml",
                "name": f"cifar10-lt-exp100-short-{name}",
                "data": short,
                "model": model,
                "objective": objective,
                "optim": {"warmup_epochs": 1, "milestones": [16, 18]},
                "train": {"epochs": 20, "select": "best_balanced_accuracy", "device": "cpu"},
            },
            "CIFAR-10-LT (exp, ratio 100) on a 20-epoch schedule (the 200-epoch protocol scaled\n"
            "by 1/10: LR decay and DRW / λ switch at 16, 18): about 20 min on 2 CPU cores.\n"
            "root: an image-folder archive of CIFAR-10 (train/test/<class>/*.jpg) or directory.",
        )
    return out


def main() -> int:
    check = "--check" in sys.argv
    expected = files()
    stale = []
    for rel, text in expected.items():
        path = ROOT / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(rel)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    extra = sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.yaml")
        if str(p.relative_to(ROOT)) not in expected
    )
    if check:
        for rel in stale:
            print(f"out of date: {rel}")
        for rel in extra:
            print(f"not generated: {rel}")
        return 1 if stale or extra else 0
    print(f"wrote {len(stale)} of {len(expected)} configs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
