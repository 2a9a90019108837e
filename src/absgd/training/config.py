"""Run configuration: frozen dataclasses ⇄ YAML, with ``key=value`` overrides.

A config file is YAML whose keys mirror :class:`RunConfig`. It may start from other files
with ``base: other.yaml`` or ``base: [a.yaml, b.yaml]`` (paths relative to the file; nested
mappings are merged key by key, later bases and then the file's own values win).
``--set optim.lr=0.05`` style overrides are applied last; their values are parsed as YAML
(``.inf``, ``[160, 180]``, ``null`` ...).

Validation is done by pydantic (types, ranges, unknown keys) and then against the registries
(loss, class weighting, sample weighting, model, dataset names), so every mistake is reported
with the key, the bad value and what is allowed. The resolved config is saved with every run.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Iterable, Mapping
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dataset_name",
    "load_config",
    "load_config_dict",
    "method_name",
    "same_run",
    "switch_never_reached",
    "with_data_root",
]

_STRICT = ConfigDict(extra="forbid")

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class ConfigError(ValueError):
    """A config that cannot be used; the message names every bad key and what is allowed."""


@dataclass(frozen=True, config=_STRICT)
class DataConfig:
    """Where the data comes from and how the training split is shaped."""

    name: str = "digits"
    """Data source (see ``absgd configs --sources``): digits, fashion_mnist, mnist, cifar10,
    cifar100, image_folder, list_file, csv, synthetic."""
    root: str | None = None
    """File or directory the source reads (unused by ``digits`` and ``synthetic``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the source."""
    imbalance_ratio: Annotated[float, Field(ge=1, allow_inf_nan=False)] | None = None
    """Make the training split long-tailed with this ``n_max / n_min`` (``null``: as is)."""
    profile: Literal["exp", "step"] = "exp"
    lt_seed: int = 0
    """Seed of the long-tailed selection (0 reproduces the standard CIFAR-LT splits)."""
    noise_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Fraction of each training class whose label is corrupted."""
    noise_kind: Literal["symmetric", "asymmetric"] = "symmetric"
    noise_mapping: str | None = None
    """Asymmetric rule: ``cifar10``, ``mnist``, ``fmnist`` or ``groups`` (next class in its
    superclass)."""
    noise_seed: int = 0
    val_source: Literal["split", "leftover", "none"] = "split"
    """``split``: carve a stratified validation split from the training split; ``leftover``:
    a balanced one from the images the long-tailed selection left out (classes without enough
    of them give up training images); ``none``: no validation split."""
    val_fraction: Fraction | None = 0.1
    val_per_class: PositiveInt | None = None
    val_seed: int = 0
    meta_per_class: PositiveInt | None = None
    """Meta-Weight-Net: a balanced meta set of this many training images per class (they
    leave the training split, as in Shu et al. 2019)."""
    augment: Literal["crop_flip", "crop", "flip", "none"] = "crop_flip"
    """Training augmentation: random crop with ``padding`` and/or horizontal flip."""
    padding: NonNegativeInt = 4
    normalize: Literal["dataset", "none"] = "dataset"
    """``dataset``: per-channel mean/std of the training split."""


@dataclass(frozen=True, config=_STRICT)
class ModelConfig:
    name: str = "resnet32"
    options: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the model builder (e.g. ``normed_classifier: true``)."""
    channels_last: bool | None = None
    """Store activations and convolution weights channels-last (NHWC). ``null`` (default):
    on for convolutional models — 1.3–1.7× faster steps on the CPU here, and the usual
    choice on GPUs — off for the MLP. Results differ only by floating-point rounding."""
    init_from: str | None = None
    """A run directory or checkpoint whose model weights initialise this run (second stage)."""
    reset_classifier: bool = False
    """With ``init_from``: re-initialise the classifier instead of loading it."""
    train_only_classifier: bool = False
    """Freeze everything but the classifier (decoupled second-stage re-training)."""


@dataclass(frozen=True, config=_STRICT)
class ObjectiveConfig:
    loss: str = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    class_weighting: str = "none"
    class_weighting_options: dict[str, Any] = field(default_factory=dict)
    weighting: str = "none"
    """Per-sample weighting: ``none``, ``absgd``, ``rgd`` or ``meta_weight_net`` (needs
    ``data.meta_per_class``)."""
    lam: float | None = None
    """ABSGD's λ (> 0 imbalance, < 0 label noise, ``.inf`` plain SGD). With ``target_ess``
    only its sign counts (``null`` means +1)."""
    target_ess: Annotated[float, Field(gt=0, le=1)] | None = None
    """ABSGD without a fixed λ: each batch's λ is solved so that its weights have this
    normalised effective sample size (0.5: half the batch carries the weight), then smoothed
    (``weighting_options.lam_rate``); with λ > 0 the step is rescaled to the mean loss
    unless ``weighting_options.rescale: false`` (with λ < 0 only if ``true``). See
    docs/method.md."""
    lam_switch: float | None = None
    """Two-stage ABSGD: plain SGD (λ = ∞) before this epoch, ``lam`` from it on."""
    weighting_options: dict[str, Any] = field(default_factory=dict)
    """Other options of the weighting (ABSGD: gamma, alpha, init, max_weight, uniform,
    lam_rate, rescale; RGD: tau; Meta-Weight-Net: hidden, meta_lr, meta_momentum,
    meta_weight_decay)."""
    placement: Literal["inside", "outside"] = "inside"
    normalize_class_weights: Literal["weighted"] | bool = True
    """With class weights ``c``: ``true`` divides the objective by the batch mean of ``c`` (a
    plain run is ``cross_entropy(weight=c)``), ``weighted`` by its mean under ABSGD's sample
    weights (the step no longer grows when they move onto rare classes), ``false`` not at all
    (the authors' raw ``Σ p·c·l``). See :mod:`absgd.objective`."""


@dataclass(frozen=True, config=_STRICT)
class OptimConfig:
    name: Literal["sgd", "adam"] = "sgd"
    """``sgd``: momentum SGD (absgd.ABSGD); ``adam``: absgd.ABAdam."""
    lr: Positive = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = False
    weight_decay: NonNegative = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["step", "cosine", "constant"] = "step"
    warmup_epochs: NonNegative = 5
    milestones: tuple[float, ...] = (160, 180)
    factors: tuple[float, ...] = (0.01, 0.0001)
    """Absolute LR multipliers from each milestone on (step schedule)."""
    final_factor: Annotated[float, Field(ge=0, le=1)] = 0.0
    """Cosine schedule: the LR multiplier the half-cosine decays to at ``train.epochs`` (the
    last epoch, numbered ``epochs - 1`` from 0, trains just above it, as with torch's
    ``CosineAnnealingLR``)."""
    grad_clip: Positive | None = None
    """Clip the global gradient norm to this value."""


@dataclass(frozen=True, config=_STRICT)
class TrainConfig:
    epochs: PositiveInt = 200
    batch_size: PositiveInt = 128
    eval_batch_size: PositiveInt | None = None
    """Batch size of evaluation; ``None``: 512 on CUDA, 128 elsewhere (on a CPU larger batches
    overflow the caches: ResNet-32 evaluated 1.5x slower at 512 than at 128 on one core)."""
    sampler: Literal["none", "uniform", "class_balanced", "sqrt"] = "none"
    """Resampling of the training split (``none``: a shuffle of every sample)."""
    seed: int = 0
    deterministic: bool = False
    device: Annotated[str, Field(pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")] = "auto"
    """``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda``, ``cuda:1``, ``mps``."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """``bf16``: autocast to bfloat16; ``fp16``: autocast with a gradient scaler (GPU)."""
    select: Literal["last", "best_balanced_accuracy", "best_top1", "best_top1_train_prior"] = "last"
    """Which epoch's model is reported: the last, or the best on the validation split."""
    test_every: NonNegativeInt = 0
    """Also evaluate the test split every N epochs, for curves only (0: at the end only)."""
    num_workers: NonNegativeInt = 0
    """DataLoader workers for lazy (list-file) datasets."""
    checkpoint_every: PositiveInt = 1
    keep_checkpoints: tuple[PositiveInt, ...] = ()
    """Also keep the checkpoint written after each of these epochs (1-based counts of finished
    epochs) as ``checkpoint-epoch{E}.pt``, with the best-so-far model: a branch point."""
    branch_from: str | None = None
    """Start from another run's checkpoint at an epoch boundary (a kept checkpoint file or a
    run directory) instead of from scratch: everything but the objective continues from it
    (see :mod:`absgd.training.branch`, which checks the first epochs would have been equal)."""
    compile: bool = False
    """Train through ``torch.compile(model)``. It pays off on some GPUs; on the 2-core CPU
    here a ResNet-32 step was slower compiled (416 vs 320 ms) after 40 s of compilation."""
    batch_per_rank: bool = False
    """Under ``torchrun``: ``false`` splits ``batch_size`` across the processes (the global
    batch is ``batch_size``); ``true`` gives every process ``batch_size`` samples."""
    sync_batchnorm: bool = False
    """Under ``torchrun`` on CUDA: batch-norm statistics over the global batch."""
    dist_timeout_s: Positive = 600.0
    """Under ``torchrun``: how long a collective waits for a silent peer before failing."""
    log: tuple[Literal["csv", "tensorboard"], ...] = ()
    """Extra per-epoch logs beside ``metrics.jsonl``: ``csv`` (``metrics.csv``) and
    ``tensorboard`` (``tensorboard/``; needs the ``tensorboard`` extra)."""


@dataclass(frozen=True, config=_STRICT)
class RunConfig:
    name: str = "run"
    method: str | None = None
    """Display name of the method (default: derived from the objective)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_ADAPTER = TypeAdapter(RunConfig)


# -- loading ----------------------------------------------------------------------------------


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def load_config_dict(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The raw mapping of a YAML config file, with its ``base:`` chain merged in."""
    path = Path(path).expanduser().resolve()
    if path in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path))
        raise ConfigError(f"config files include each other in a loop: {chain}")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(raw).__name__}")
    base = raw.pop("base", None)
    if base is None:
        return raw
    bases = [base] if isinstance(base, str) else base
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(
            f"{path}: base must be a path (or a list of paths) to other config files, got {base!r}"
        )
    merged: dict[str, Any] = {}
    for item in bases:
        merged = _merge(merged, load_config_dict(path.parent / item, (*_seen, path)))
    return _merge(merged, raw)


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``raw`` with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
    out = _merge({}, raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"override {item!r} must look like section.key=value (e.g. optim.lr=0.05)"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({err})") from None
        *parents, leaf = key.split(".")
        node = out
        for i, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                prefix = ".".join(parents[: i + 1])
                raise ConfigError(f"override {item!r}: {prefix} is a value, not a section")
            node = child
        node[leaf] = value
    return out


def _valid_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the config section at ``loc`` (``()`` is the top level)."""
    node: Any = RunConfig
    for part in loc:
        node = typing.get_type_hints(node).get(part) if isinstance(part, str) else None
        if not is_dataclass(node):
            return []
    return [f.name for f in fields(node)]


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "<top>"
        if e["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            valid = _valid_keys(loc[:-1])
            lines.append(f"{where}: unknown key; valid keys here: {', '.join(valid)}")
        else:
            lines.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return "invalid config:\n  " + "\n  ".join(lines)


def config_from_dict(raw: Mapping[str, Any]) -> RunConfig:
    """Validate a raw mapping into a :class:`RunConfig` (types first, then names and ranges)."""
    try:
        cfg = _ADAPTER.validate_python(dict(raw))
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None
    problems = _semantic_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return cfg


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Load, merge (``base:``), override and validate a config file (``None``: the defaults)."""
    raw = load_config_dict(path) if path is not None else {}
    return config_from_dict(apply_overrides(raw, overrides))


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """A plain mapping (lists, floats incl. inf, strings) that :func:`config_from_dict` reads."""
    return _ADAPTER.dump_python(cfg, mode="python", round_trip=True)  # type: ignore[no-any-return]


def dump_yaml(cfg: RunConfig) -> str:
    """The config as YAML text."""
    return yaml.safe_dump(_plain(config_to_dict(cfg)), sort_keys=False)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# -- semantic checks --------------------------------------------------------------------------


def _semantic_problems(cfg: RunConfig) -> list[str]:
    from absgd.class_weights import CLASS_WEIGHTINGS
    from absgd.data.sources import SOURCES
    from absgd.losses import LOSSES
    from absgd.models import list_models
    from absgd.objective import SAMPLE_WEIGHTINGS

    problems: list[str] = []

    def check_name(key: str, value: str, valid: Iterable[str]) -> None:
        valid = sorted(valid)
        if value not in valid:
            problems.append(f"{key}: unknown name {value!r}; valid names: {', '.join(valid)}")

    d, o, opt, t = cfg.data, cfg.objective, cfg.optim, cfg.train
    check_name("data.name", d.name, SOURCES.names())
    check_name("model.name", cfg.model.name, list_models())
    check_name("objective.loss", o.loss, LOSSES.names())
    check_name("objective.class_weighting", o.class_weighting, CLASS_WEIGHTINGS.names())
    check_name("objective.weighting", o.weighting, [*SAMPLE_WEIGHTINGS.names(), "meta_weight_net"])

    def require(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    if d.noise_rate > 0 and d.noise_kind == "asymmetric":
        require(
            d.noise_mapping in ("cifar10", "mnist", "fmnist", "groups"),
            "data.noise_mapping must be cifar10, mnist, fmnist or groups for asymmetric noise, "
            f"got {d.noise_mapping!r}",
        )
    if d.val_source != "none":
        require(
            d.val_fraction is None or d.val_per_class is None,
            "give one of data.val_fraction and data.val_per_class, not both "
            f"(got {d.val_fraction} and {d.val_per_class})",
        )
    if d.val_source == "leftover":
        require(
            d.imbalance_ratio is not None, "data.val_source=leftover needs data.imbalance_ratio"
        )
        require(d.val_per_class is not None, "data.val_source=leftover needs data.val_per_class")
        require(d.noise_rate == 0, "data.val_source=leftover cannot be combined with label noise")
    if t.select != "last":
        require(d.val_source != "none", f"train.select={t.select} needs a validation split")

    if o.weighting == "absgd":
        require(
            o.lam is not None or o.target_ess is not None,
            "objective.lam is required with weighting=absgd (> 0 for imbalance, < 0 for label "
            "noise, .inf for plain SGD), or objective.target_ess (e.g. 0.7)",
        )
        if o.lam is not None:
            require(
                o.lam != 0 and not math.isnan(o.lam),
                f"objective.lam must be non-zero, got {o.lam}",
            )
    else:
        require(o.lam is None, f"objective.lam is only used with weighting=absgd, got {o.lam}")
        require(
            o.target_ess is None,
            f"objective.target_ess is only used with weighting=absgd, got {o.target_ess}",
        )
        require(o.lam_switch is None, "objective.lam_switch is only used with weighting=absgd")
    if o.weighting == "meta_weight_net":
        require(
            d.meta_per_class is not None,
            "objective.weighting=meta_weight_net needs data.meta_per_class (the size of the "
            "balanced meta set, e.g. 10)",
        )
        require(
            o.class_weighting == "none",
            "objective.weighting=meta_weight_net learns its own weights: use class_weighting=none",
        )
        require(t.precision == "fp32", "objective.weighting=meta_weight_net runs in fp32 only")
    if o.class_weighting == "drw":
        require(
            "switch" in o.class_weighting_options,
            "objective.class_weighting_options.switch is required for drw (the epoch the "
            "class weights start at, e.g. 160)",
        )

    if opt.schedule == "step":
        require(
            len(opt.milestones) == len(opt.factors),
            f"optim.milestones {list(opt.milestones)} and optim.factors {list(opt.factors)} "
            "must have the same length",
        )
        require(
            all(a < b for a, b in zip(opt.milestones, opt.milestones[1:], strict=False)),
            f"optim.milestones must be increasing, got {list(opt.milestones)}",
        )
    require(
        all(e <= t.epochs for e in t.keep_checkpoints),
        f"train.keep_checkpoints {list(t.keep_checkpoints)} must be epochs this run reaches "
        f"(1 to train.epochs={t.epochs})",
    )
    require(
        t.branch_from is None or o.weighting != "meta_weight_net",
        "train.branch_from: a Meta-Weight-Net run cannot branch (its meta-network is trained "
        "from the first step)",
    )
    if opt.schedule == "cosine":
        require(
            opt.warmup_epochs < t.epochs,
            f"optim.warmup_epochs ({opt.warmup_epochs}) must be < train.epochs ({t.epochs})",
        )

    return problems


def with_data_root(cfg: RunConfig, root: str | None = None) -> RunConfig:
    """``cfg`` with ``data.root`` replaced by ``root`` (if given) and made absolute, so a run
    directory works from any folder and on any machine that has the data at that path."""
    from dataclasses import replace

    value = cfg.data.root if root is None else root
    if value is None:
        return cfg
    absolute = str(Path(value).expanduser().resolve())
    return replace(cfg, data=replace(cfg.data, root=absolute))


def same_run(a: RunConfig, b: RunConfig) -> bool:
    """Whether two configs describe the same run, up to what cannot change its results: where
    the data lives and the batch size of evaluation (see :func:`comparable`)."""
    return comparable(config_to_dict(a)) == comparable(config_to_dict(b))


_BOOKKEEPING = ("eval_batch_size", "checkpoint_every", "keep_checkpoints", "log")


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a config dict without ``data.root`` and the bookkeeping of ``train``
    (``eval_batch_size``, ``checkpoint_every``, ``keep_checkpoints``, ``log``): two runs that
    differ only there train and score identically (evaluation is per sample)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    if isinstance(out.get("data"), dict):
        out["data"]["root"] = None
    if isinstance(out.get("train"), dict):
        for key in _BOOKKEEPING:
            out["train"].pop(key, None)
    return out


def dataset_name(cfg: RunConfig) -> str:
    """A short display name of the training data, e.g. ``cifar10-LT(exp, ratio 100)``."""
    d = cfg.data
    name = d.name
    if d.imbalance_ratio is not None:
        name += f"-LT({d.profile}, ratio {d.imbalance_ratio:g})"
    if d.noise_rate > 0:
        name += f"-noise({d.noise_kind} {d.noise_rate:g})"
    return name


def switch_never_reached(cfg: RunConfig) -> bool:
    """Whether a two-stage ABSGD run ends before its switch (it is then plain SGD throughout)."""
    o = cfg.objective
    return o.weighting == "absgd" and o.lam_switch is not None and o.lam_switch >= cfg.train.epochs


def method_name(cfg: RunConfig) -> str:
    """A short display name of what the run trains, e.g. ``ldam+drw+absgd(λ=1 after epoch 160)``
    (a switch the run never reaches is said so: the run is plain SGD)."""
    if cfg.method:
        return cfg.method
    o = cfg.objective
    parts = [o.loss]
    if o.class_weighting != "none":
        parts.append(o.class_weighting)
    if o.weighting == "absgd":
        if o.target_ess is not None:
            sign = "-" if o.lam is not None and o.lam < 0 else ""
            inner = f"{sign}ESS={o.target_ess:g}"
        else:
            inner = "λ=" + ("inf" if o.lam is not None and math.isinf(o.lam) else f"{o.lam:g}")
        if switch_never_reached(cfg):
            inner += f", switch at {o.lam_switch:g} never reached: plain SGD"
        elif o.lam_switch is not None:
            inner += f" after epoch {o.lam_switch:g}"
        parts.append(f"absgd({inner})")
    elif o.weighting != "none":
        parts.append(o.weighting)
    if cfg.train.sampler != "none":
        parts.append(f"{cfg.train.sampler}-sampling")
    return "+".join(parts)
