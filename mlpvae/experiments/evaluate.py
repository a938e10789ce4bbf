"""``vaetheory evaluate``: the test ELBO, the IWAE bound on log p(x), active units
and the entropy floor of a run (Sec. 7).

All numbers are in nats per image, summed over pixels, on the targets the model
was trained on (grayscale intensities unless the run used dynamic binarization;
``eval.json`` says which).

* Test ELBO, Eq. (1) / Eq. (2), averaged over ``k`` posterior samples per
  image (:mod:`mlpvae.nn.batched`).  For floating-prior models (posterior
  "constant" or "bilbo") the prior is N(0, S^2) with ``S^2 = E[Sigma] +
  E[diag(mu)^2]`` (Eq. (4), diagonal) and is reported twice, labelled: S^2
  from the training set and from the evaluation set.
* The importance-sampled bound on log p(x), the active units and the
  grayscale entropy floor of :mod:`mlpvae.evidence.iwae` (not in the paper).
* With ``--plots``, the run's figures (:mod:`mlpvae.experiments.plots`).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from mlpvae.evidence.iwae import ACTIVE_THRESHOLD, active_units, entropy_floor, iwae_log_px
from mlpvae.experiments import plots as P
from mlpvae.nn.batched import FLOATING, decode_mean, elbo_mean, encode_all, prior_s2
from mlpvae.training.checkpoint import write_json
from mlpvae.training.runs import load_run
from mlpvae.training.streams import STREAM_EVAL, STREAM_PLOTS, generator
from vaetheory.xp import array_namespace, to_numpy


def evaluate_run(
    run_dir,
    k: int = 10,
    iwae_k: int = 1000,
    test_limit: int | None = None,
    plots: bool = False,
    device: str | None = None,
    progress: bool = True,
    compare=(),
) -> dict:
    """Evaluate the checkpoint of a training run; write ``eval.json`` (and PNGs with ``plots``); Sec. 7.

    Reports, in nats per test image: the test ELBO averaged over ``k``
    samples (labelled S^2 sources for floating-prior models), the IWAE lower
    bound on log p(x) with ``iwae_k`` samples, the number of active units, and
    the grayscale entropy floor.  The evaluation uses the run's own targets
    (grayscale or binarized, times lambda) and, with dynamic binarization,
    the training targets of the last epoch for S^2.
    """
    run = load_run(run_dir, device=device, test_limit=test_limit)
    run_dir, info, cfg, xp, desc = run.run_dir, run.info, run.cfg, run.xp, run.device
    params, epoch, mc = run.params, run.epoch, run.mc
    x_train, x_test = run.x_train, run.x_test
    rng = generator(cfg.seed, STREAM_EVAL, epoch, xp)

    mu_tr, var_tr = encode_all(params, x_train, mc)
    s2_train = prior_s2(mu_tr, var_tr)
    mu, var = encode_all(params, x_test, mc)
    s2_test = prior_s2(mu, var)
    res: dict = {
        "run": str(run_dir),
        "epoch": epoch,
        "device": desc,
        "targets": info.get("targets"),
        "test_images": int(len(x_test)),
        "units": "nats per image, summed over pixels",
    }
    if mc.posterior in FLOATING:
        res["test_elbo_s2_train"] = elbo_mean(params, x_test, mc, rng, k, s2=s2_train)
        res["test_elbo_s2_test"] = elbo_mean(params, x_test, mc, rng, k, s2=s2_test)
        prior = s2_train
        res["iwae_prior"] = "N(0, S^2) with S^2 from the training set (Eq. (4))"
    else:
        res["test_elbo"] = elbo_mean(params, x_test, mc, rng, k)
        prior = None
        res["iwae_prior"] = "N(0, I) (Eq. (1))"
    res["elbo_samples"] = k
    t0 = time.perf_counter()
    lp = iwae_log_px(params, x_test, mc, rng, iwae_k, s2=prior, baggins_s2=s2_train, progress=progress)
    res["iwae_log_px"] = float(lp.mean())
    res["iwae_k"] = iwae_k
    res["iwae_seconds"] = time.perf_counter() - t0
    res["iwae_note"] = f"lower bound on log p(x) (IWAE, k={iwae_k}); tighter than the ELBO, equal as k -> inf"
    count, v = active_units(mu)
    res["active_units"] = count
    res["active_threshold"] = ACTIVE_THRESHOLD
    res["latent_var_of_means"] = v.tolist()
    res["s2_train"] = to_numpy(s2_train).tolist()
    if cfg.binarize == "none" and mc.likelihood == "bernoulli":
        res["entropy_floor"] = entropy_floor(x_test / cfg.scale)
        res["entropy_floor_note"] = (
            "mean over test images of sum_pixels H(x) of the grayscale targets; "
            "-entropy_floor bounds any Bernoulli ELBO / log p(x) from above"
        )
    if plots:
        res["plots"] = [
            str(p)
            for p in write_plots(
                run_dir,
                params,
                mc,
                cfg,
                to_numpy(mu),
                to_numpy(var),
                run.labels_test,
                x_test,
                s2_train,
                generator(cfg.seed, STREAM_PLOTS, epoch),
                compare,
            )
        ]
    write_json(run_dir / "eval.json", res)
    return res


def write_plots(run_dir: Path, params, mc, cfg, mu, var, labels, x_test, s2_train, rng, compare=()) -> list[Path]:
    """The run's figures (Figs. 2-5, 12-16) as PNG files in ``run_dir`` (Sec. 7).

    ``rng`` is a host generator; ``compare`` lists other run directories
    whose training curves are overlaid (Fig. 4 compares methods).
    """
    xp = array_namespace(x_test)
    name = f"{mc.posterior}, {mc.likelihood}, n={mc.n}"
    s2h = to_numpy(s2_train)
    prior_var = np.ones(mc.n) if mc.posterior not in FLOATING else s2h
    classes = "digit" if cfg.dataset == "mnist" else "class"
    out = [P.latent_scatter(mu, labels, run_dir / "latent_means.png", f"posterior means ({name})", name=classes)]
    z = mu + np.sqrt(var) * rng.standard_normal(mu.shape)
    out.append(
        P.latent_scatter(
            z, labels, run_dir / "latent_samples.png", f"one posterior sample z ({name})", latent="z", name=classes
        )
    )
    out.append(
        P.variance_vs_mean(
            mu, var, run_dir / "variance_vs_mean.png", s2=prior_var, title=f"posterior variance vs mean ({name})"
        )
    )
    runs = {d.name: d / "metrics.csv" for d in [run_dir, *map(Path, compare)]}
    out.append(P.training_curves(runs, run_dir / "training_curves.png"))
    if math.isqrt(mc.m) ** 2 != mc.m:
        return out  # image grids need square images
    dt = x_test.dtype
    for label, v in (("standard", np.ones(mc.n)), ("fitted", s2h)):
        zs = np.sqrt(v) * rng.standard_normal((100, mc.n))
        img = decode_mean(params, xp.asarray(zs.astype(dt)), mc, cfg.scale)
        out.append(
            P.image_grid(
                img,
                run_dir / f"samples_{label}_prior.png",
                title=f"samples, {'N(0, I)' if label == 'standard' else 'N(0, S^2) fitted prior'}",
            )
        )
    rec = decode_mean(params, xp.asarray(mu[:50].astype(dt)), mc, cfg.scale)
    out.append(P.reconstruction_grid(to_numpy(x_test[:50]) / cfg.scale, rec, run_dir / "reconstructions.png"))
    if mc.n == 2:
        out.append(
            P.manifold_grid(
                lambda zz: decode_mean(params, xp.asarray(zz.astype(dt)), mc, cfg.scale),
                run_dir / "manifold.png",
                s=np.sqrt(prior_var),
            )
        )
    return out


def figure_config(run_dir: Path) -> str | None:
    """The TOML config of the figure ``run_dir`` belongs to (``config_path`` in a parent's run.json), or None."""
    for parent in list(Path(run_dir).resolve().parents)[:3]:
        try:
            path = json.loads((parent / "run.json").read_text()).get("config_path")
        except (OSError, ValueError, AttributeError):
            continue
        if path:
            return str(path)
    return None


def run_dir_problem(run_dir, checkpoint: bool = True, analysed: bool = False) -> str | None:
    """Why ``run_dir`` cannot be used, in one line, or None when it can.

    It needs a run.json, a checkpoint.npz with ``checkpoint``, and an
    analysis.json (``vaetheory analyze``'s) with ``analysed``.
    """
    d = Path(run_dir)
    if not (d / "run.json").is_file():
        return f"{d} is not a run directory (no run.json): make one with `vaetheory train --out {d}`"
    if checkpoint and not (d / "checkpoint.npz").is_file():
        config = figure_config(d)
        how = (
            f"`vaetheory reproduce {config}` (this figure's config)"
            if config
            else "`vaetheory reproduce CONFIG` or `vaetheory train --out DIR` (the config in run.json)"
        )
        return f"{d} has no checkpoint.npz: checkpoints of recorded results are not committed; retrain with {how}"
    if analysed and not (d / "analysis.json").is_file():
        return f"{d} has no analysis.json: analyze it first with `vaetheory analyze {d}`"
    return None


def write_per_image(run_dir, name: str, summary: dict, per: dict) -> list[str]:
    """Write a report's ``RUN/<name>.json`` (its summary) and ``RUN/<name>_per_image.npz`` (its per-image
    arrays); return the two paths (Not in the paper)."""
    out = Path(run_dir)
    write_json(out / f"{name}.json", summary)
    np.savez(out / f"{name}_per_image.npz", **per)
    return [str(out / f"{name}.json"), str(out / f"{name}_per_image.npz")]


def print_written(paths) -> None:
    """The closing list of a command: every file it wrote, one per line."""
    paths = [str(p) for p in paths]
    print(f"wrote {len(paths)} file{'s' if len(paths) != 1 else ''}:")
    for p in paths:
        print(f"  {p}")


def add_arguments(parser) -> None:
    """The options of ``vaetheory evaluate``: the run directory, sample counts, test images, plots, device."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `vaetheory train`")
    parser.add_argument("--k", type=int, default=10, help="posterior samples per image for the test ELBO (10)")
    parser.add_argument("--iwae-k", type=int, default=1000, help="importance samples per image (1000; up to 5000)")
    parser.add_argument("--test-limit", type=int, default=None, help="evaluate only the first test images")
    parser.add_argument("--plots", action="store_true", help="also write the figures as PNG into RUN_DIR")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default=None, help="default: the run's")
    parser.add_argument(
        "--compare",
        nargs="+",
        default=(),
        metavar="RUN_DIR",
        help="other runs whose training curves are drawn with this one's (Fig. 4)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the IWAE progress bar")


def run(args) -> int:
    """``vaetheory evaluate``: evaluate a run, print the results and write ``eval.json``; the exit status."""
    problem = run_dir_problem(args.run_dir) or next(
        filter(None, (run_dir_problem(c, checkpoint=False) for c in args.compare)), None
    )
    if problem:
        print(f"vaetheory evaluate: {problem}", file=sys.stderr)
        return 2
    try:
        res = evaluate_run(
            args.run_dir,
            args.k,
            args.iwae_k,
            args.test_limit,
            args.plots,
            args.device,
            progress=not args.no_progress,
            compare=args.compare,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory evaluate: {exc}", file=sys.stderr)
        return 2
    for key in ("test_elbo", "test_elbo_s2_train", "test_elbo_s2_test", "iwae_log_px", "entropy_floor"):
        if key in res:
            print(f"{key:20s} {res[key]:10.3f}  nats/image")
    print(
        f"{'active_units':20s} {res['active_units']:10d}  of {len(res['latent_var_of_means'])} "
        f"(Var_x(mu_u) > {ACTIVE_THRESHOLD})"
    )
    print_written([Path(args.run_dir) / "eval.json", *res.get("plots", [])])
    return 0
