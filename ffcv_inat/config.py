"""The typed training config: recipes (YAML) -> dataclasses, with `--set a.b=value` overrides.

Every key is declared here with its type; an unknown key, a value of the wrong type or a
required value left as `???` is a UserError that names the key and the file it came from.
Recipes are found by file name in the bundled `ffcv_inat.recipes` package or as a path.

Why not OmegaConf's structured configs (weighed on omegaconf 2.4.0, which takes these
dataclasses as they are): they would replace only the typing below (~85 lines), while its
errors are four lines each (message, full_key, reference_type, object_type) that we would
translate back to one, and it coerces strings ("yes" -> True, "5" -> 5) that we refuse as
typos; the module would shrink by about a fifth for a new dependency and looser checks.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from . import UserError
from .environment import PRECISIONS
from .loader import CROPS, DECODES
from .training.progress import PROGRESS_MODES

# A recipe value that the user must supply (OmegaConf's convention), e.g. `init: ???`.
REQUIRED = "???"
DEVICES = ("auto", "cpu", "cuda")
FREEZE = ("none", "backbone")


@dataclass
class ModelConfig:
    arch: str = "resnet50"
    # Classes of the head; null = from the train beton's manifest.
    num_classes: int | None = None
    # ffcv-train checkpoint or torchvision ResNet-50 state_dict to start from; null = random init.
    init: str | None = None
    # The ImageNet class set `init` was pretrained on (all, A, NA, R-100-s0, ...), for ffcv-analyze,
    # where init is not a run dir of this toolkit (given weights, e.g. torchvision's); null = ask its run dir.
    init_pretrained_on: str | None = None
    # "none": train everything; "backbone": only `fc` learns and BatchNorm statistics stay fixed.
    freeze: str = "none"
    blurpool: bool = False
    # Zero the last BatchNorm scale of each residual block (Goyal et al. 2017): every block
    # starts as the identity. Off in the paper's recipes; it makes tiny CPU runs stable.
    zero_init_residual: bool = False


@dataclass
class DataConfig:
    train: str | None = None
    val: str | None = None
    batch_size: int = 256  # global: split over the processes of a distributed run
    res: int = 224  # train resolution (end resolution when progressive resizing is on)
    val_res: int = 224
    workers: int = 0  # 0 = this process's share of the usable cores (all of them without torchrun)
    augment: bool = True  # RandomResizedCrop + flip; off = centre crop, no flip
    # Who draws the training crops and flips: "seeded" = a function of (seed, epoch, image),
    # reproducible (ffcv_inat.loader.crops); "ffcv" = ffcv's stock decoder + flip, unseeded.
    crop: str = "seeded"
    # Where JPEGs are decoded: "cpu" in ffcv's workers; "gpu" on the device (nvJPEG), the workers
    # only copy bytes (ffcv_inat.loader.gpu); "auto" = gpu on CUDA, cpu otherwise.
    decode: str = "cpu"
    os_cache: bool = True


@dataclass
class ProgressiveConfig:
    """Train resolution ramps linearly from start_res to end_res over [start_epoch, end_epoch]."""

    enabled: bool = False
    start_res: int = 160
    end_res: int = 192
    start_epoch: int = 0
    end_epoch: int = 0
    multiple: int = 32  # resolutions are rounded down to this (tensor-core friendly shapes)


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    no_bn_bias_decay: bool = False  # exclude BatchNorm and bias parameters from weight decay
    label_smoothing: float = 0.0


@dataclass
class ScheduleConfig:
    epochs: int = 90
    # LR is multiplied by gamma every step_every epochs (unless milestones lists the epochs).
    step_every: int = 30
    gamma: float = 0.1
    milestones: list[int] | None = None
    warmup_epochs: int = 0  # linear warmup, per iteration, from lr/iters to lr
    max_steps_per_epoch: int | None = None  # cap on train steps per epoch (benchmarks, smoke runs)


@dataclass
class EvalConfig:
    every: int = 0  # evaluate every N epochs; 0 = only after the last epoch
    tta_flip: bool = False  # average the logits of the image and its mirror image
    batch_size: int | None = None  # null = data.batch_size


@dataclass
class LoggingConfig:
    # Progress inside an epoch: "auto" = a per-step bar on a terminal, a line every
    # `every_seconds` otherwise (SLURM logs, pipes); "bar", "lines" or "off" force one.
    progress: str = "auto"
    every_seconds: float = 30.0
    tensorboard: bool = True  # event files in RUN_DIR/tensorboard/ (rank 0)


@dataclass
class CheckpointConfig:
    # Besides checkpoints/last.pt (always) and best.pt (the best top-1, when the run evaluates):
    # checkpoints/epoch_N.pt every `keep_every` epochs; 0 = none.
    keep_every: int = 0


@dataclass
class Config:
    recipe: str = ""  # where the config came from (set by the loader)
    out: str | None = None  # run directory
    seed: int = 0  # model init, shuffle order and (data.crop: seeded) the training crops and flips
    device: str = "auto"
    precision: str = "bf16"  # autocast dtype on GPU; always fp32 on CPU
    channels_last: bool = True
    compile: bool = False
    log_every: int = 50  # read the loss back from the device every N steps (progress, TensorBoard)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


# Values restricted to a few choices, checked after typing.
CHOICES = {
    "device": DEVICES,
    "precision": PRECISIONS,
    "model.arch": ("resnet50",),
    "model.freeze": FREEZE,
    "data.crop": CROPS,
    "data.decode": DECODES,
    "optim.name": ("sgd",),
    "logging.progress": PROGRESS_MODES,
}


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return "null" if tp is type(None) else tp.__name__


def _coerce(value: Any, tp) -> tuple[bool, Any]:
    """(ok, value) for `value` as type `tp`; ints are accepted where floats are declared."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        (item_tp,) = typing.get_args(tp)
        items = [_coerce(v, item_tp) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported config type {tp}")


def _build(cls, data: Any, prefix: str, source: str):
    if not isinstance(data, dict):
        where = prefix.rstrip(".") or "the top level"
        raise UserError(f"{source}: {where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise UserError(f"{source}: unknown key {prefix}{key!s} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value if value is not None else {}, f"{prefix}{name}.", source)
            continue
        if value == REQUIRED:
            kwargs[name] = REQUIRED  # checked by require_filled once all overrides are in
            continue
        ok, v = _coerce(value, tp)
        if not ok:
            raise UserError(f"{source}: {prefix}{name} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
        kwargs[name] = v
    return cls(**kwargs)


def config_from_dict(data: dict, source: str) -> Config:
    cfg = _build(Config, data, "", source)
    for key, allowed in CHOICES.items():
        value = get_key(cfg, key)
        if value != REQUIRED and value not in allowed:
            raise UserError(f"{source}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    return cfg


def get_key(cfg: Config, dotted: str) -> Any:
    obj = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of a nested config mapping, in its order (the keys `--set` takes)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def find_recipe(name_or_path: str) -> tuple[str, str]:
    """(source name, YAML text) of a recipe path, or of a bundled recipe by file name."""
    path = Path(name_or_path)
    if path.is_file():
        return str(path), path.read_text()
    bundled = resources.files("ffcv_inat.recipes")
    for candidate in (name_or_path, f"{name_or_path}.yaml"):
        res = bundled.joinpath(candidate)
        if "/" not in candidate and res.is_file():
            return candidate, res.read_text()
    names = sorted(p.name for p in bundled.iterdir() if p.name.endswith(".yaml"))
    raise UserError(f"recipe not found: {name_or_path} (not a file; bundled recipes: {', '.join(names)})")


def parse_set(item: str) -> tuple[str, Any]:
    """'a.b=value' -> ('a.b', value parsed as a YAML scalar or flow list)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {item}: expected KEY=VALUE, e.g. optim.lr=0.05")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise UserError(f"--set {item}: value is not valid YAML ({str(e).splitlines()[0]})") from None
    return key.strip(), value


def apply_set(data: dict, key: str, value: Any, source: str) -> None:
    """Set a dotted key in the raw dict, creating sections; unknown keys fail when typed."""
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"{source}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def load_config(
    recipe: str,
    sets: list[str] = (),
    extra: dict[str, Any] | None = None,
    typed: Mapping[str, Any] | None = None,
) -> Config:
    """Recipe + `--set` items + `typed` {dotted key: value} (the Python API's overrides, each
    checked as it is applied) + extra {dotted key: value} (CLI shorthands; None = not given)."""
    source, text = find_recipe(recipe)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{source}: invalid YAML ({str(e).splitlines()[0]})") from None
    data = data if data is not None else {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: a recipe must be a mapping of sections")
    config_from_dict(data, source)  # name errors in the recipe itself before overrides
    for item in sets:
        key, value = parse_set(item)
        apply_set(data, key, value, f"--set {item}")
        config_from_dict(data, f"--set {item}")
    for key, value in (typed or {}).items():
        apply_set(data, str(key), value, f"overrides[{key!r}]")
        config_from_dict(data, f"overrides[{key!r}]")
    for key, value in (extra or {}).items():
        if value is not None:
            apply_set(data, key, value, f"--{key}")
    if not data.get("recipe"):  # a run dir's config.yaml keeps the recipe it was made from
        data["recipe"] = source
    return config_from_dict(data, source)


def require_filled(cfg: Config, source: str) -> None:
    """Fail on any `???` value left in the config."""

    def walk(obj, prefix):
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if dataclasses.is_dataclass(v):
                walk(v, f"{prefix}{f.name}.")
            elif v == REQUIRED:
                hint = {
                    "model.init": " (pass --init CKPT)",
                    "data.train": " (pass --train B.beton)",
                    "data.val": " (pass --val B.beton)",
                }.get(prefix + f.name, "")
                raise UserError(f"{source}: {prefix}{f.name} is required{hint}")

    walk(cfg, "")


def validate(cfg: Config) -> None:
    """Checks across keys, and that the paths named exist."""
    src = cfg.recipe or "config"
    require_filled(cfg, src)
    for key in ("data.batch_size", "data.res", "data.val_res", "schedule.epochs", "schedule.step_every"):
        if get_key(cfg, key) < 1:
            raise UserError(f"{src}: {key} must be at least 1, got {get_key(cfg, key)}")
    if cfg.schedule.max_steps_per_epoch is not None and cfg.schedule.max_steps_per_epoch < 1:
        raise UserError(f"{src}: schedule.max_steps_per_epoch must be at least 1 or null")
    if cfg.checkpoint.keep_every < 0:
        raise UserError(f"{src}: checkpoint.keep_every must be >= 0 (0 = keep no epoch checkpoints)")
    if cfg.logging.every_seconds < 0:
        raise UserError(f"{src}: logging.every_seconds must be >= 0")
    if cfg.data.workers < 0:
        raise UserError(f"{src}: data.workers must be >= 0 (0 = this process's share of the usable cores)")
    if cfg.data.train is None:
        raise UserError(f"{src}: data.train is required (pass --train B.beton)")
    for key in ("data.train", "data.val", "model.init"):
        p = get_key(cfg, key)
        if p is not None and not Path(p).is_file():
            raise UserError(f"{src}: {key}: file not found: {p}")
    p = cfg.progressive
    if p.enabled and (p.end_epoch < p.start_epoch or min(p.start_res, p.end_res) < p.multiple):
        raise UserError(f"{src}: progressive needs start_epoch <= end_epoch and resolutions >= multiple")
