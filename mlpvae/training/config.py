"""A training run's settings, from command-line flags or a TOML file (Sec. 7).

One flat table of keys; a TOML file may hold any subset, an unknown key is an
error that lists the valid keys, and a flag given on the command line overrides
the file.  Defaults are the paper's: four dense layers of 200 units, Adam with
learning rate 1e-3, batch 300, 200 epochs, grayscale MNIST targets.
"""

from __future__ import annotations

import dataclasses
import sys
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from mlpvae.nn.model import LIKELIHOODS, POSTERIORS, ModelConfig
from vaetheory.validate import choice, scalar

DATASETS = ("mnist", "fashion-mnist", "synthetic")
DEVICES = ("auto", "cpu", "gpu")
CHOICES = {
    "dataset": DATASETS,
    "binarize": ("none", "dynamic"),
    "posterior": POSTERIORS,
    "likelihood": LIKELIHOODS,
    "device": DEVICES,
    "dtype": ("float32", "float64"),
}
# Keys that are passed to mlpvae.nn.model.ModelConfig unchanged: its fields, which TrainConfig inherits.
MODEL_KEYS = tuple(f.name for f in fields(ModelConfig))
# Keys that may differ between a run and its resumption (they do not change the result).
RESUMABLE_KEYS = ("epochs", "device", "progress", "out", "data", "eval_every")
INTEGER_KEYS = ("m", "n", "hidden", "layers", "batch_size", "eval_k", "eval_every", "epochs", "seed")
INTEGER_KEYS += ("limit", "test_limit")
REAL_KEYS = ("scale", "sigma2", "t", "tau", "lr", "latent_scale")
# Keys that mean nothing for some models: key -> (does it matter for this config?, when it does).
MODE_KEYS = {
    "sigma2": (lambda c: c.posterior != "learned", 'posterior "constant" or "bilbo"'),
    "t": (lambda c: c.likelihood == "gaussian", 'likelihood "gaussian"'),
    "tau": (lambda c: c.likelihood == "baggins", 'likelihood "baggins"'),
    "binarize": (lambda c: c.binarize == "none" or c.likelihood == "bernoulli", 'likelihood "bernoulli"'),
}


@dataclass(frozen=True)
class TrainConfig(ModelConfig):
    """Every setting of a training run.

    Model (see ``mlpvae.nn.model.ModelConfig``): ``m`` data dimension (784 for MNIST),
    ``n`` latent dimension, ``hidden`` units per hidden layer, ``layers`` dense
    layers per network, ``posterior`` ("learned" Eq. (1); "constant" Eq. (2)
    with floating prior; "bilbo" Eq. (24)), ``likelihood`` ("bernoulli",
    "gaussian" with T = t I, "gaussian-learned", "baggins" Eq. (29) with
    information factor ``tau``), ``sigma2`` the constant posterior variance,
    ``latent_scale`` the fixed encoder-output scaling of Fig. 8.

    Data: ``dataset`` ("mnist", "fashion-mnist", or "synthetic": random
    uint8 images of ``m`` pixels, for tests), ``data`` a directory searched
    first, ``limit`` / ``test_limit`` use only the first examples, ``binarize``
    ("none" = grayscale targets, "dynamic" = resampled each epoch), ``scale``
    the data scale factor lambda.

    Optimisation: ``epochs``, ``batch_size``, ``lr`` (Adam), ``seed`` (init,
    batch order and noise all derive from it), ``eval_k`` samples per test
    example for the per-epoch test ELBO, ``eval_every`` evaluate every so many
    epochs (and after the last; other rows leave the test columns empty), ``device`` ("auto" = CuPy if it
    finds a GPU), ``dtype`` ("float32"), ``progress`` (tqdm bar per epoch).
    """

    # data
    dataset: str = "mnist"
    data: str | None = None
    limit: int | None = None
    test_limit: int | None = None
    binarize: str = "none"
    scale: float = 1.0
    # optimisation
    epochs: int = 200
    batch_size: int = 300
    lr: float = 1e-3
    seed: int = 0
    eval_k: int = 1
    eval_every: int = 1
    device: str = "auto"
    dtype: str = "float32"
    progress: bool = True
    out: str | None = None

    def __post_init__(self):
        # Replaces ModelConfig's checks: the same ones on the inherited keys (bools strictly, as TOML gives them)
        # plus the run's own.
        for name in INTEGER_KEYS + REAL_KEYS:  # float() would take True as 1 and "0.001" as 0.001
            v = getattr(self, name)
            if isinstance(v, (bool, str, bytes)):
                raise ValueError(f"{name} must be a number, got {v!r} ({type(v).__name__})")
        for name, options in CHOICES.items():
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be one of {', '.join(options)} (a string), got {getattr(self, name)!r}")
            choice(name, getattr(self, name), options)
        for name in ("data", "out"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a path (a string), got {getattr(self, name)!r}")
        # frozen: normalise through object.__setattr__ (TOML may give 200.0 for an int, 1 for a float)
        for name in ("m", "n", "hidden", "layers", "batch_size", "eval_k", "eval_every", "epochs"):
            object.__setattr__(self, name, scalar(name, getattr(self, name), positive=True, integer=True))
        object.__setattr__(self, "seed", scalar("seed", self.seed, nonnegative=True, integer=True))
        for name in ("limit", "test_limit"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, scalar(name, getattr(self, name), positive=True, integer=True))
        for name in ("scale", "sigma2", "t", "tau", "lr", "latent_scale"):
            object.__setattr__(self, name, scalar(name, getattr(self, name), positive=True))
        for name in ("baggins_stop_gradient", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.dataset != "synthetic" and self.m != 784:
            raise ValueError(f"m must be 784 for {self.dataset} (28x28 images), got {self.m}")

    def model_config(self):
        """The ``mlpvae.nn.model.ModelConfig`` of this run."""
        return ModelConfig(**{k: getattr(self, k) for k in MODEL_KEYS})

    def to_dict(self) -> dict:
        """Every setting by name, as run.json and the checkpoint record it."""
        return dataclasses.asdict(self)


def valid_keys() -> list[str]:
    """Every key a TOML config or the flags may set (Not in the paper)."""
    return [f.name for f in fields(TrainConfig)]


def check_keys(d: dict, source: str) -> None:
    """Raise ValueError naming unknown keys and listing the valid ones (Not in the paper)."""
    unknown = sorted(set(d) - set(valid_keys()))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)}; valid keys are: {', '.join(valid_keys())}")


def load_toml(path: str | Path) -> dict:
    """Read a flat TOML table of :class:`TrainConfig` keys; unknown keys are errors (Not in the paper).

    A file that cannot be read or parsed is a ValueError naming it.
    """
    try:
        with open(path, "rb") as f:
            d = tomllib.load(f)
    except IsADirectoryError:
        raise ValueError(f"config {path} is a directory, not a TOML file") from None
    except FileNotFoundError:
        raise ValueError(f"config {path} not found") from None
    except OSError as exc:
        raise ValueError(f"config {path} cannot be read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"config {path} is not valid TOML: {exc}") from None
    check_keys(d, str(path))
    return d


def meaningless(cfg: TrainConfig, keys) -> list[str]:
    """Of ``keys`` (settings given), those that do nothing for ``cfg``'s model, with why (Not in the paper)."""
    found = []
    for key in keys:
        if key in MODE_KEYS and not MODE_KEYS[key][0](cfg):
            found.append(
                f"{key} = {getattr(cfg, key)!r} has no effect with posterior {cfg.posterior!r} and "
                f"likelihood {cfg.likelihood!r} (it is used with {MODE_KEYS[key][1]})"
            )
    return found


def make_config(toml: str | Path | None = None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from an optional TOML file and overrides (Not in the paper).

    An override of ``None`` means "not given".  An override that has no
    effect on the configured model (``sigma2`` with a learned posterior, ``t``
    or ``tau`` with another likelihood, ``binarize`` with a Gaussian one) is an
    error; the same setting from the TOML file is reported on stderr (a file
    of defaults may carry it for other models).
    """
    d = load_toml(toml) if toml else {}
    given = {k: v for k, v in overrides.items() if v is not None}
    check_keys(given, "overrides")
    from_file = set(d) - set(given)
    d.update(given)
    cfg = TrainConfig(**d)
    wrong = meaningless(cfg, sorted(given))
    if wrong:
        raise ValueError("; ".join(wrong))
    for note in meaningless(cfg, sorted(from_file)):
        print(f"vaetheory train: warning: {toml}: {note}", file=sys.stderr)
    return cfg


# One line per setting for `vaetheory train --help`, in the paper's terms.
HELP = {
    "m": "data dimension m: pixels per image (784 for MNIST)",
    "n": "latent dimension n",
    "hidden": "units per hidden layer of encoder and decoder (Sec. 7: 200)",
    "layers": "dense layers in each of encoder and decoder (Sec. 7: 4)",
    "posterior": "learned: Sigma from the encoder, Eq. (1); constant: Sigma = sigma2 I with the floating prior "
    "S^2 of Eq. (4), Eq. (2); bilbo: Eq. (24)",
    "likelihood": "bernoulli (grayscale targets); gaussian: T = t I; gaussian-learned: T from the decoder; "
    "baggins: T from Eq. (29)",
    "sigma2": "the constant posterior variance sigma^2 of posteriors constant and bilbo",
    "t": "the Gaussian likelihood variance T = t I of likelihood gaussian",
    "tau": "BAGGINS' information factor tau of Eq. (29)",
    "baggins_stop_gradient": "BAGGINS with T of Eq. (29) held fixed in the gradient (not differentiated)",
    "latent_scale": "c of Fig. 8: the encoder's outputs times c, the decoder's input divided by c",
    "dataset": "the data set; synthetic: random images for smoke tests",
    "data": "directory holding the data set's folder (default: $VAETHEORY_DATA, then the search path)",
    "limit": "train on the first N training images only (default: all)",
    "test_limit": "evaluate on the first N test images only (default: all)",
    "binarize": "none: grayscale targets in [0, 1]; dynamic: a fresh Bernoulli draw of each image every epoch",
    "scale": "lambda: the targets are multiplied by it (Fig. 6's data scale)",
    "epochs": "epochs to train (Sec. 7: 200)",
    "batch_size": "images per Adam step (Sec. 7: 300)",
    "lr": "Adam's learning rate",
    "seed": "seed of every random stream (initialisation, batch order, noise); equal seeds, equal runs on NumPy",
    "eval_k": "posterior samples per test image for the per-epoch test ELBO",
    "eval_every": "evaluate the test ELBO every this many epochs (and at the last)",
    "device": "auto: CuPy when it finds a GPU, else NumPy; cpu; gpu",
    "dtype": "floating-point type of training",
    "progress": "per-epoch progress on stderr",
}


def add_arguments(parser) -> None:
    """One flag per key, ``--batch-size`` for ``batch_size`` (Not in the paper).

    Every default is None, meaning "not given", so a TOML value is kept.
    """
    import argparse

    parser.add_argument("--config", metavar="TOML", help="TOML file of settings (flags override it)")
    convert = {"int": int, "float": float, "str": str}
    for f in fields(TrainConfig):
        if f.name == "out":  # the run directory is the train command's own --out
            continue
        flag = "--" + f.name.replace("_", "-")
        base = str(f.type).split(" ")[0]
        if base == "bool":
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{HELP[f.name]} (default {f.default})",
            )
        else:
            options = CHOICES.get(f.name)
            parser.add_argument(
                flag,
                dest=f.name,
                type=convert[base],
                default=None,
                choices=options,
                metavar="{" + ",".join(options) + "}" if options else base.upper(),
                help=f"{HELP[f.name]} (default {f.default})",
            )


def from_args(args) -> TrainConfig:
    """The :class:`TrainConfig` of parsed ``vaetheory train`` arguments (Not in the paper)."""
    overrides = {k: getattr(args, k, None) for k in valid_keys()}
    return make_config(getattr(args, "config", None), **overrides)
