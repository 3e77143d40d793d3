"""Training configuration: nested dataclasses loaded from YAML.

A config file has up to six sections (``data``, ``model``, ``loss``, ``optim``, ``train``, ``log``);
every key is optional and falls back to the dataclass default below. Unknown keys are an error that
names the key and suggests the closest valid one, so a typo never silently trains the wrong model.

    cfg = load_config("default")                 # bundled src/pyfaid/configs/default.yaml
    cfg = load_config("configs/celeba_bfm.yaml") # a path
    cfg = apply_overrides(cfg, ["optim.lr=3e-4", "train.batch_size=4"])
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


@dataclass
class DataConfig:
    """Where training images come from.

    ``dataset``: ``synthetic`` (pyfaid.data.SyntheticFaces, offline default), ``folder`` (any folder of
    face photos), ``celeba`` (``img_align_celeba/`` + ``list_attr_celeba.txt``) or ``aflw2000``.
    """

    dataset: str = "synthetic"
    root: Optional[str] = None          # dataset folder (folder / celeba / aflw2000)
    masks: Optional[str] = None         # optional folder of face-segmentation masks (celeba)
    image_size: int = 224               # render / photometric-loss resolution (square)
    length: int = 100000                # number of synthetic samples per epoch
    seed: int = 0                       # synthetic training seed
    occlusion: bool = True              # synthetic occluders on training images
    cache: bool = False                 # keep generated synthetic samples in memory
    align: bool = True                  # align real photos with pyfaid.encoders.align_faces
    num_workers: int = 0
    val_size: int = 200                 # held-out synthetic samples for evaluation
    val_seed: int = 1000003             # seed of the held-out synthetic set (disjoint from training)


@dataclass
class ModelConfig:
    """Coarse model, fine model and the frozen encoders."""

    face_model: str = "default"         # "default" or a path to a BFM file
    backbone: str = "resnet18"          # resnet18 | resnet50
    backbone_weights: Optional[str] = None  # local torchvision-format weights; None = random init
    input_size: int = 224               # CNN input resolution (images are resized to it)
    fine: bool = True                   # train the fine model (mesh-wise + feature-wise refiners)
    mesh_refiner: bool = True
    faid_decoder: bool = True
    hidden: int = 16                    # GCN width
    cheb_k: int = 3                     # Chebyshev order K
    decoder_nodes: int = 256            # coarse vertex subset the FAID decoder's code lives on
    decoder_code: int = 16              # channels per coarse node
    pos_embed: int = 8                  # learned per-vertex positional embedding channels
    use_id_features: bool = True        # feed identity features to the FAID decoder
    use_fa_features: bool = True        # feed face-attribute features (ablation "w/o FA")
    identity_encoder: str = "dlib"      # dlib | facenet
    identity_weights: Optional[str] = None
    attribute_weights: Optional[str] = None  # None = pyfaid's bundled attribute encoder


@dataclass
class LossConfig:
    """Loss weights (paper Eq. 5 and Deep3DFaceRecon's coefficient regularisers)."""

    photo: float = 1.0
    id: float = 0.2
    att: float = 0.005
    rob: float = 0.001
    coarse_photo: float = 1.0           # photometric loss on the coarse render too
    id_features: bool = False           # add 1-cos on intermediate identity feature maps to L_id
    reg: float = 3.0e-4                 # coefficient-norm regulariser weight
    reg_id: float = 1.0
    reg_exp: float = 0.8
    reg_tex: float = 1.7e-2
    gamma: float = 10.0                 # monochromatic-light regulariser
    landmark: float = 0.0               # landmark term of the coarse pre-training stage (train.coarse_steps)
    fine_smooth: float = 0.0            # Laplacian smoothness of the fine colour residual
    fine_residual: float = 0.0          # L2 size of the fine colour residual
    self_aug: bool = True               # self-augmentation (paper 3.2.3)
    sa_rot: bool = True
    sa_occ: bool = True
    sa_weight: float = 1.0              # weight of the self-augmentation terms
    sa_size: int = 0                    # how many batch items get self-augmented (0 = all)
    rob_views: int = 1                  # random views for L_rob
    rob_occ: bool = True                # occluded render for L_rob
    max_yaw: float = 0.9                # radians, random views
    max_pitch: float = 0.3
    max_roll: float = 0.2


@dataclass
class OptimConfig:
    lr: float = 1.0e-4
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_decay: float = 0.9
    decay_every: int = 10000            # steps between learning-rate decays
    grad_clip: float = 0.0              # 0 = off
    coarse_lr: float = 0.0              # learning rate of the coarse pre-training stage (0 = lr)


@dataclass
class TrainConfig:
    batch_size: int = 16                # per process
    max_steps: int = 200000
    coarse_steps: int = 0               # coarse pre-training stage: first N steps train the coarse model only
    coarse_batch_size: int = 0          # per-process batch of that stage (0 = batch_size)
    max_minutes: float = 0.0            # stop (with a checkpoint) after this much training time; 0 = off
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda
    out: str = "runs/default"
    ckpt_every: int = 1000
    keep_last: int = 2
    threads: int = 0                    # torch.set_num_threads (0 = leave)
    eval_at_end: bool = True            # masked PSNR on the held-out synthetic set after training


@dataclass
class LogConfig:
    tensorboard: bool = True
    every: int = 10                     # scalars
    image_every: int = 200              # image grids
    image_count: int = 4


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    """A config file or override that names a key that does not exist or has a bad value."""


def _suggest(key: str, choices, prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{prefix}{close[0]}'?" if close else ""


def _coerce(value: Any, default: Any, where: str) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value))
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value)
        return tuple(value)
    return value


def from_dict(d: dict, source: str = "<dict>") -> Config:
    """Build a :class:`Config` from a nested dict, rejecting unknown sections and keys."""
    cfg = Config()
    if d is None:
        return cfg
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for sec, values in d.items():
        if sec not in sections:
            raise ConfigError(f"{source}: unknown config section '{sec}'.{_suggest(sec, sections)} "
                              f"Valid sections: {', '.join(sections)}")
        sub = getattr(cfg, sec)
        keys = {f.name: f for f in dataclasses.fields(sub)}
        for key, value in (values or {}).items():
            if key not in keys:
                raise ConfigError(f"{source}: unknown config key '{sec}.{key}'.{_suggest(key, keys, sec + '.')} "
                                  f"Valid keys of '{sec}': {', '.join(keys)}")
            setattr(sub, key, _coerce(value, getattr(sub, key), f"{source}: {sec}.{key}"))
    return cfg


def resolve_path(name_or_path: str) -> str:
    """A config path as given, or ``<name>.yaml`` from the bundled ``pyfaid/configs``."""
    if os.path.isfile(name_or_path):
        return name_or_path
    base = os.path.basename(name_or_path)
    stem = base[:-5] if base.endswith(".yaml") else base
    bundled = os.path.join(CONFIG_DIR, stem + ".yaml")
    if os.path.isfile(bundled):
        return bundled
    names = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml")) if os.path.isdir(CONFIG_DIR) else []
    raise ConfigError(f"config '{name_or_path}' not found (not a file, not a bundled config)."
                      f"{_suggest(stem, names)} Bundled configs: {', '.join(names)}")


def load_config(name_or_path: str = "default", overrides=None) -> Config:
    """Load a YAML config by path or bundled name, then apply ``a.b=c`` overrides."""
    path = resolve_path(name_or_path)
    with open(path) as f:
        try:
            d = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    cfg = from_dict(d, source=path)
    return apply_overrides(cfg, overrides or [])


def apply_overrides(cfg: Config, overrides) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars)."""
    d = cfg.to_dict()
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected section.key=value")
        key, value = ov.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2:
            raise ConfigError(f"override {ov!r}: expected section.key=value")
        sec, k = parts
        d.setdefault(sec, {})
        if isinstance(d[sec], dict):
            d[sec][k] = yaml.safe_load(value)
        else:
            d[sec] = {k: yaml.safe_load(value)}
    return from_dict(d, source="--set")
