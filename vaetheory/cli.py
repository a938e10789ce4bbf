"""The ``vaetheory`` command.

Each subcommand lives in the module that computes it; the module provides
``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).  Modules
are imported only to build the parser, so they keep heavy imports (matplotlib,
CuPy) inside functions.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# (words, module, one-line help).  A module that is not installed is left out.
COMMANDS: list[tuple[tuple[str, ...], str, str]] = [
    (
        ("verify",),
        "vaetheory.claims.command",
        "measure every claim of the paper at real stationary points on synthetic data",
    ),
    (("equations",), "vaetheory.equations", "table of every implemented equation -> function -> test"),
    (("data",), "mlpvae.training.data", "list the data sets found, where, and verify their checksums"),
    (("train",), "mlpvae.training.train", "train an MLP VAE (NumPy or CuPy) from flags or a TOML config"),
    (("evaluate",), "mlpvae.experiments.evaluate", "test ELBO, importance-sampled log p(x), active units, plots"),
    (
        ("analyze",),
        "mlpvae.experiments.analyze_runs",
        "the paper's claims on a trained run: log p(x) vs ELBO, Eqs. (16), (22), (6)",
    ),
    (("reproduce",), "mlpvae.experiments.reproduce", "run one paper figure's TOML config and record its results"),
    (
        ("bench", "train"),
        "mlpvae.experiments.bench",
        "training-step speed: ms/step, examples/s, fraction of GEMM FLOP rate",
    ),
    (("bench", "logdet"), "vaetheory.bench.logdet", "the Eq. (19) log-det estimator against baselines"),
]


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser() -> argparse.ArgumentParser:
    """The ``vaetheory`` parser: one subcommand per :data:`COMMANDS` entry whose module is installed."""
    parser = argparse.ArgumentParser(
        prog="vaetheory",
        description="The VAE theory paper 'There and Back Again' as verified, runnable code.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for words, module, help_ in COMMANDS:
        if not _exists(module):
            continue
        mod = importlib.import_module(module)
        if len(words) == 1:
            p = sub.add_parser(words[0], help=help_, description=help_)
        else:
            if words[0] not in groups:
                g = sub.add_parser(words[0], help=f"{words[0]} subcommands")
                groups[words[0]] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            p = groups[words[0]].add_parser(words[1], help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; return its exit status (2 without one)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
