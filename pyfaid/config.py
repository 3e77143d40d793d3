"""Training configuration: nested dataclasses loaded from YAML.

A config file has up to six sections (``data``, ``model``, ``loss``, ``optim``, ``train``, ``log``);
every key is optional and falls back to the dataclass default below. The defaults are the main job's
(``python -m pyfaid.train`` with no arguments): ``configs/default.yaml`` states the same values with
the reasons for them (a test checks that they agree), and every other config states what differs.
Unknown keys are an error that
names the key and suggests the closest valid one, so a typo never silently trains the wrong model.
A top-level ``base: NAME`` inherits another config (a bundled name or a path relative to this
file): the file then states only what it changes; sections merge key by key.

Training runs in declarative stages (``train.stages``, a list of ``{name, objective, steps,
batch_size, lr}``; see :class:`StageConfig`): each stage trains ``steps`` steps with its objective
(:data:`pyfaid.models.OBJECTIVES`), batch and learning rate, and the last one runs until
``train.max_steps`` / ``train.max_minutes``. No stages means one ``faid`` stage with
``train.batch_size`` and ``optim.lr``.

Configs are frozen: code that needs a variant builds a new one (``dataclasses.replace``,
:func:`apply_overrides`), so a run's config is exactly what was loaded.

    cfg = load_config("default")                 # bundled configs/default.yaml
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


def _config_dir() -> str:
    """``pyfaid/configs`` of an installed package, else ``configs/`` of the source checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(here, "configs"), os.path.join(os.path.dirname(here), "configs")):
        if os.path.isdir(cand):
            return cand
    return os.path.join(here, "configs")


CONFIG_DIR = _config_dir()


@dataclass(frozen=True)
class DataConfig:
    """Where training images come from.

    ``dataset``: ``synthetic`` (pyfaid.synth.SyntheticFaces, offline default), ``folder`` (any folder of
    face photos), ``celeba`` (``img_align_celeba/`` + ``list_attr_celeba.txt``) or ``aflw2000``.
    """

    dataset: str = "synthetic"
    root: Optional[str] = None          # dataset folder (folder / celeba / aflw2000)
    masks: Optional[str] = None         # optional folder of face-segmentation masks (celeba)
    image_size: int = 128               # render / photometric-loss resolution (square; camera scaled from 224)
    length: int = 20000                 # number of synthetic samples per epoch
    seed: int = 0                       # synthetic training seed
    occlusion: bool = True              # synthetic occluders on training images
    cache: bool = False                 # keep generated synthetic samples in memory
    align: bool = True                  # align real photos with pyfaid.encoders.align_faces
    num_workers: int = 0
    val_size: int = 200                 # held-out synthetic samples for evaluation
    val_seed: int = 1000003             # seed of the held-out synthetic set (disjoint from training)
    synthetic: dict = field(default_factory=dict)  # more SyntheticFaces options (occlusion_prob, context, ...)


@dataclass(frozen=True)
class ModelConfig:
    """Coarse model, fine model and the frozen encoders."""

    face_model: str = "default"         # "default" or a path to a BFM file
    backbone: str = "resnet18"          # resnet18 | resnet50
    backbone_weights: Optional[str] = None  # local torchvision-format weights; None = random init
    input_size: int = 128               # CNN input resolution (images are resized to it)
    fine: bool = True                   # train the fine model (mesh-wise + feature-wise refiners)
    mesh_refiner: bool = True
    faid_decoder: bool = True
    hierarchy: bool = True              # refiners are U-Nets over a mesh hierarchy (False: flat GCNs)
    gcn_channels: tuple = (8, 16, 32, 64)  # hierarchical refiners: channels per level, finest first
    photo_input: bool = True            # the mesh-wise refiner reads the photo on the mesh and blends it in where visible
    hierarchy_factors: tuple = (4, 4, 4)   # vertex reduction between levels
    hidden: int = 16                    # flat GCN width
    cheb_k: int = 3                     # Chebyshev order K
    decoder_nodes: int = 256            # coarse vertex subset the FAID decoder's code lives on
    decoder_code: int = 8               # channels per coarse node
    pos_embed: int = 8                  # learned per-vertex positional embedding channels
    use_id_features: bool = True        # feed identity features to the FAID decoder
    use_fa_features: bool = True        # feed face-attribute features (ablation "w/o FA")
    landmark_head: bool = True          # the coarse model also predicts 68 landmarks with confidences (2D-style)
    landmark_head_3d: bool = False      # ... and the 68 3D-style points (the landmark vertices projected)
    landmark_branch: str = "shared"     # the heads read: shared (the backbone's features) | layer4 (their own last block)
    segmenter: bool = True              # a face/occluder segmentation net (masks photometric terms)
    identity_encoder: str = "dlib"      # dlib | facenet
    identity_weights: Optional[str] = None
    attribute_weights: Optional[str] = None  # None = pyfaid's bundled attribute encoder


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (paper Eq. 5 and Deep3DFaceRecon's coefficient regularisers)."""

    photo: float = 1.0
    id: float = 0.2
    att: float = 0.005
    rob: float = 0.001
    coarse_photo: float = 0.0           # photometric loss on the coarse render too (0: the coarse model is frozen)
    id_features: bool = False           # add 1-cos on intermediate identity feature maps to L_id
    reg: float = 3.0e-4                 # coefficient-norm regulariser weight
    reg_id: float = 1.0
    reg_exp: float = 0.8
    reg_tex: float = 1.7e-2
    gamma: float = 10.0                 # monochromatic-light regulariser
    landmark: float = 0.0               # landmark term of the coarse stage (projected model landmarks)
    landmark_head: float = 0.0          # coarse stage: the landmark head's Laplace NLL (model.landmark_head)
    landmark_head_3d: float = 0.0       # pretrain objective: the 3D-style head's NLL against the data's landmarks_3d
    sup_shape: float = 0.0              # pretrain objective: model-space vertex error (cm) against the data's coeffs
    sup_pose: float = 0.0               # pretrain objective: rotation-angle error (radians, squared)
    sup_tex: float = 0.0                # pretrain objective: albedo error against the data's colours (L1)
    sup_light: float = 0.0              # pretrain objective: SH lighting error (squared)
    seg: float = 0.0                    # pretrain objective: the segmenter's BCE against the data's visible-face mask
    fine_smooth: float = 0.0            # Laplacian smoothness of the fine colour residual
    fine_residual: float = 0.0          # L2 size of the fine colour residual
    sup_fine_tex: float = 1.0           # FAID objective, data with ground-truth colours (synthetic): L1 error of the fine albedo
    self_aug: bool = True               # self-augmentation (paper 3.2.3)
    sa_rot: bool = True
    sa_occ: bool = True
    sa_weight: float = 1.0              # weight of the self-augmentation terms
    sa_size: int = 2                    # how many batch items get self-augmented (0 = all)
    sa_every: int = 1                   # self-augment on every k-th step (1 = every step)
    rob_views: int = 1                  # random views for L_rob
    rob_occ: bool = True                # occluded render for L_rob
    max_yaw: float = 0.9                # radians, random views
    max_pitch: float = 0.3
    max_roll: float = 0.2


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3.0e-4
    betas: tuple = (0.9, 0.999)
    weight_decay: float = 0.0
    lr_decay: float = 0.9
    decay_every: int = 200              # steps between learning-rate decays
    grad_clip: float = 1.0              # 0 = off


@dataclass(frozen=True)
class StageConfig:
    """One training stage: ``steps`` steps of ``objective`` with its own batch and learning rate.

    ``steps: 0`` (allowed for the last stage only) runs until the end of training. ``batch_size``
    and ``lr`` of 0 take ``train.batch_size`` and ``optim.lr``.
    """

    name: str = "faid"
    objective: str = "faid"             # coarse | faid (pyfaid.models.OBJECTIVES)
    steps: int = 0
    batch_size: int = 0                 # per process
    lr: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    batch_size: int = 4                 # per process
    max_steps: int = 3000
    stages: tuple = (StageConfig(),)    # StageConfig entries; () = one faid stage
    init_from: Optional[str] = "pretrained"  # start from a checkpoint's trained weights ("pretrained" = the shipped model)
    init_parts: tuple = ("coarse", "segmenter")  # which of its trained parts to take (coarse, fine, segmenter)
    freeze: tuple = ("coarse", "segmenter")  # trained parts kept fixed (no gradient, BatchNorm in eval mode): coarse,
                                        # fine, segmenter or a submodule of one (coarse.backbone, coarse.fc, ...)
    max_minutes: float = 15.0           # stop (with a checkpoint) after this much training time; 0 = off
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda
    out: str = "runs/default"
    ckpt_every: int = 50
    keep_last: int = 2
    threads: int = 0                    # torch.set_num_threads (0 = leave)
    precision: str = "auto"             # auto | fp32 | bf16: the networks in bfloat16 (pyfaid.precision); auto = bf16
                                        # where the hardware has native bfloat16 (avx512_bf16 / amx_bf16 CPUs)
    eval_at_end: bool = True            # masked PSNR on the held-out synthetic set after training
    val_every: int = 0                  # steps between held-out landmark checks (val.jsonl, TensorBoard val/); 0 = off


@dataclass(frozen=True)
class LogConfig:
    tensorboard: bool = True
    every: int = 5                      # scalars
    image_every: int = 25               # image grids
    image_count: int = 4


@dataclass(frozen=True)
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


def _stages(value, where: str) -> tuple:
    """``train.stages``: a list of mappings -> tuple of :class:`StageConfig` (validated)."""
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list of stages ({{name, objective, steps, batch_size, lr}})")
    keys = {f.name: f for f in dataclasses.fields(StageConfig)}
    out = []
    for i, st in enumerate(value):
        if isinstance(st, StageConfig):
            out.append(st)
            continue
        if not isinstance(st, dict):
            raise ConfigError(f"{where}[{i}]: expected a mapping, got {st!r}")
        kw = {}
        for k, v in st.items():
            if k not in keys:
                raise ConfigError(f"{where}[{i}]: unknown stage key '{k}'.{_suggest(k, keys)} "
                                  f"Valid keys: {', '.join(keys)}")
            kw[k] = _coerce(v, keys[k].default, f"{where}[{i}].{k}")
        out.append(StageConfig(**kw))
    for i, st in enumerate(out):
        if st.steps < 0 or (st.steps == 0 and i != len(out) - 1):
            raise ConfigError(f"{where}[{i}] ({st.name}): `steps` must be > 0 (only the last stage may "
                              f"have steps 0 = until the end), got {st.steps}")
        if st.batch_size < 0 or st.lr < 0:
            raise ConfigError(f"{where}[{i}] ({st.name}): `batch_size` and `lr` must be >= 0")
    names = [st.name for st in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: stage names must be unique, got {names}")
    return tuple(out)


def from_dict(d: dict, source: str = "<dict>") -> Config:
    """Build a :class:`Config` from a nested dict, rejecting unknown sections and keys."""
    if d is None:
        return Config()
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    sections = {f.name: f for f in dataclasses.fields(Config)}
    built = {}
    for sec, values in d.items():
        if sec not in sections:
            raise ConfigError(f"{source}: unknown config section '{sec}'.{_suggest(sec, sections)} "
                              f"Valid sections: {', '.join(sections)}")
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{sec}' must be a mapping of keys, got {values!r}")
        default = sections[sec].default_factory()
        keys = {f.name: f for f in dataclasses.fields(default)}
        kw = {}
        for key, value in (values or {}).items():
            if key not in keys:
                raise ConfigError(f"{source}: unknown config key '{sec}.{key}'.{_suggest(key, keys, sec + '.')} "
                                  f"Valid keys of '{sec}': {', '.join(keys)}")
            where = f"{source}: {sec}.{key}"
            kw[key] = _stages(value, where) if (sec, key) == ("train", "stages") else \
                _coerce(value, getattr(default, key), where)
        built[sec] = dataclasses.replace(default, **kw)
    return Config(**built)


def resolve_path(name_or_path: str, relative_to: Optional[str] = None) -> str:
    """A config path as given (or relative to ``relative_to``'s folder), or ``<name>.yaml`` from
    the bundled configs."""
    if os.path.isfile(name_or_path):
        return name_or_path
    if relative_to is not None:
        near = os.path.join(os.path.dirname(os.path.abspath(relative_to)), name_or_path)
        for cand in (near, near + ".yaml"):
            if os.path.isfile(cand):
                return cand
    base = os.path.basename(name_or_path)
    stem = base[:-5] if base.endswith(".yaml") else base
    bundled = os.path.join(CONFIG_DIR, stem + ".yaml")
    if os.path.isfile(bundled):
        return bundled
    names = sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".yaml")) if os.path.isdir(CONFIG_DIR) else []
    raise ConfigError(f"config '{name_or_path}' not found (not a file, not a bundled config)."
                      f"{_suggest(stem, names)} Bundled configs: {', '.join(names)}")


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``, section by section (keys of a section replace the base's)."""
    out = {k: dict(v or {}) for k, v in base.items()}
    for sec, values in over.items():
        if isinstance(values, dict) and isinstance(out.get(sec), dict):
            out[sec].update(values)
        else:
            out[sec] = values
    return out


def read_config_dict(name_or_path: str, _seen: tuple = (), relative_to: Optional[str] = None) -> dict:
    """The raw dict of a config file with its ``base:`` chain resolved (no defaults applied)."""
    path = os.path.abspath(resolve_path(name_or_path, relative_to))
    if path in _seen:
        chain = " -> ".join(list(_seen) + [path])
        raise ConfigError(f"{path}: `base:` chain loops ({chain})")
    with open(path) as f:
        try:
            d = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    base = d.pop("base", None)
    if base is None:
        return d
    if not isinstance(base, str):
        raise ConfigError(f"{path}: `base` must be a config name or path, got {base!r}")
    return _merge(read_config_dict(base, _seen + (path,), relative_to=path), d)


def load_config(name_or_path: str = "default", overrides=None) -> Config:
    """Load a YAML config by path or bundled name (with its ``base:`` chain), then apply
    ``section.key=value`` overrides."""
    path = resolve_path(name_or_path)
    cfg = from_dict(read_config_dict(path), source=path)
    return apply_overrides(cfg, overrides or [])


def apply_overrides(cfg: Config, overrides) -> Config:
    """A new config with ``section.key=value`` strings applied (values parsed as YAML); a mapping-valued
    key such as ``data.synthetic`` takes single entries, ``data.synthetic.views=4``."""
    overrides = list(overrides or [])
    if not overrides:
        return cfg
    d = cfg.to_dict()
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected section.key=value")
        key, value = ov.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) not in (2, 3):
            raise ConfigError(f"override {ov!r}: expected section.key=value (or section.key.entry=value)")
        sec, k = parts[:2]
        d.setdefault(sec, {})
        if not isinstance(d[sec], dict):
            d[sec] = {}
        if len(parts) == 3:  # one entry of a mapping-valued key, e.g. data.synthetic.views=4
            if not isinstance(d[sec].get(k) or {}, dict):
                raise ConfigError(f"override {ov!r}: {sec}.{k} is not a mapping")
            d[sec][k] = dict(d[sec].get(k) or {}, **{parts[2]: yaml.safe_load(value)})
        else:
            d[sec][k] = yaml.safe_load(value)
    return from_dict(d, source="--set")


#: Settings that change where a run writes, how long it runs, on what and how it reports, never what
#: it computes: a resumed run takes them from the command line, the rest from its checkpoint.
RUN_SETTINGS = ("train.max_steps", "train.max_minutes", "train.device", "train.out", "train.threads",
                "train.ckpt_every", "train.keep_last", "train.val_every", "data.num_workers", "log")


def resumed_config(saved: Config, given: Config, keep=()) -> Config:
    """The config a resumed run continues with: ``saved`` (its checkpoint's), with the
    :data:`RUN_SETTINGS` of ``given`` except those named in ``keep`` (``"all"``: keep every saved one)."""
    keep = RUN_SETTINGS if keep == "all" else tuple(keep)
    changes: dict = {}
    for name in RUN_SETTINGS:
        if name in keep:
            continue
        if name == "log":
            changes["log"] = dataclasses.asdict(given.log)
            continue
        sec, key = name.split(".")
        changes.setdefault(sec, {})[key] = getattr(getattr(given, sec), key)
    return replace(saved, **changes)


def replace(cfg: Config, **sections) -> Config:
    """A copy of ``cfg`` with some keys changed: ``replace(cfg, train={"out": "runs/x"})``."""
    kw = {}
    for sec, values in sections.items():
        kw[sec] = dataclasses.replace(getattr(cfg, sec), **values)
    return dataclasses.replace(cfg, **kw)
