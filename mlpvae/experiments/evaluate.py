"""Evaluating a trained model: test ELBO, IWAE log p(x), active units, the entropy floor (Sec. 7).

All numbers are in nats per image, summed over pixels, on the targets the model
was trained on (grayscale intensities unless the run used dynamic binarization;
``eval.json`` says which).

* Test ELBO, Eq. (1) / Eq. (2), averaged over ``k`` posterior samples per
  image.  For floating-prior models (posterior "constant" or "bilbo") the prior
  is N(0, S^2) with ``S^2 = E[Sigma] + E[diag(mu)^2]`` (Eq. (4), diagonal) and is
  reported twice, labelled: S^2 from the training set and from the evaluation set.
* Importance-sampled log p(x) (Burda et al.'s IWAE bound, not in the paper):
  ``log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x)``, ``z_i ~ q(z|x)``.  It is a
  lower bound on log p(x) for every k and increases to it as k grows; the
  samples are processed in chunks so memory stays bounded for k up to 5000.
* Active units (Burda et al.): latent dimension u is active when
  ``Cov_x(E_q[z_u]) = Var_x(mu_u) > 1e-2``.
* The grayscale entropy floor: with grayscale targets ``x in [0, 1]`` the
  Bernoulli log-likelihood ``x log p + (1 - x) log(1 - p)`` is at most
  ``-H(x)``, so ``-sum_pixels H(x_pixel)`` is an upper bound on any Bernoulli
  model's ELBO and log p(x) for that image (~ -45.5 nats per MNIST test image).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from vaetheory.xp import array_namespace, to_numpy

FLOATING = ("constant", "bilbo")
ACTIVE_THRESHOLD = 1e-2
STREAM_EVAL, STREAM_PLOTS = 1000, 1001  # seed streams, beside mlpvae.training.train's
_LOG_2PI = math.log(2.0 * math.pi)


def _model():
    import mlpvae.nn.model

    return mlpvae.nn.model


# Images per chunk of the test-ELBO and encoder passes.  On a GPU the cost of a chunk is its launches
# and the host synchronisation that reads its sum, so chunks there are five times larger.
CHUNK = {"numpy": 2000, "cupy": 10000}


def _chunks(N: int, size: int):
    for a in range(0, N, size):
        yield slice(a, min(N, a + size))


def _chunk(xp, chunk):
    return chunk if chunk is not None else CHUNK["numpy" if xp is np else "cupy"]


def encode_all(params, x, mc, chunk: int | None = None):
    """Posterior means and variances ``mu, var (N, n)`` of every row of ``x (N, m)``, in chunks (Sec. 7).

    ``chunk``: images per encoder pass (default :data:`CHUNK` for the array module).
    """
    xp = array_namespace(x)
    mus, vars_ = [], []
    for sl in _chunks(len(x), _chunk(xp, chunk)):
        mu, var = _model().encode(params, x[sl], mc)
        mus.append(mu)
        vars_.append(xp.broadcast_to(var, mu.shape))
    return xp.concatenate(mus), xp.concatenate(vars_)


def prior_s2(mu, var):
    """The floating prior variance ``S^2 = E[Sigma] + E[diag(mu)^2]`` (n,), Eq. (4) (diagonal) / Sec. 4.3."""
    xp = array_namespace(mu)
    return xp.mean(var, axis=0) + xp.mean(mu * mu, axis=0)


def elbo_mean(params, x, mc, noise_rng, k: int = 1, s2=None, chunk: int | None = None) -> float:
    """Mean over images of the ELBO, Eq. (1) or Eq. (2) with prior N(0, S^2), averaged over ``k`` samples.

    ``s2 (n,)`` is the prior variance for floating-prior models (None: the
    model's own prior, N(0, I) for learned posteriors).  Accumulated in float64.
    """
    xp = array_namespace(x)
    n = mc.n
    total = xp.zeros((), dtype=xp.float64)  # summed where the arrays are: one host read at the end
    for sl in _chunks(len(x), _chunk(xp, chunk)):
        xb = x[sl]
        for _ in range(k):
            eps = noise_rng.standard_normal((len(xb), n), dtype=xb.dtype)
            total += xp.sum(_model().elbo_per_example(params, xb, eps, mc, s2=s2), dtype=xp.float64)
    return float(total) / (k * len(x))


def test_elbos(params, mc, x_train, x_test, noise_rng, k: int = 1) -> dict[str, float]:
    """The labelled test-ELBO columns of ``metrics.csv`` (nats per image), Eqs. (1)-(2) / Sec. 7.

    Learned posteriors: ``{"test_elbo"}``.  Floating-prior models:
    ``{"test_elbo_s2_train", "test_elbo_s2_test"}``, S^2 from Eq. (4) on the
    training set and on the test set.
    """
    if mc.posterior not in FLOATING:
        return {"test_elbo": elbo_mean(params, x_test, mc, noise_rng, k)}
    s2_train = prior_s2(*encode_all(params, x_train, mc))
    s2_test = prior_s2(*encode_all(params, x_test, mc))
    return {
        "test_elbo_s2_train": elbo_mean(params, x_test, mc, noise_rng, k, s2=s2_train),
        "test_elbo_s2_test": elbo_mean(params, x_test, mc, noise_rng, k, s2=s2_test),
    }


def _log_normal_diag(xp, z, mean, var):
    """log N(z; mean, diag(var)) summed over the last axis."""
    d = z - mean
    return -0.5 * xp.sum(d * d / var + xp.log(var) + _LOG_2PI, axis=-1)


def iwae_log_px(params, x, mc, noise_rng, k: int = 5000, s2=None, rows: int = 20000, baggins_s2=None,
                progress: bool = False, proposal=None) -> np.ndarray:
    """Importance-sampled lower bound on log p(x) per image (N,), with k samples (Burda et al.; Not in the paper).

    ``log p(x) >= log (1/k) sum_{i<=k} p(x|z_i) N(z_i; 0, S^2) / q(z_i|x)``,
    ``z_i ~ q(z|x) = N(mu, Sigma)``; ``S^2 = s2`` (None: 1, the N(0, I) prior).
    At most ``rows`` (image, sample) pairs are decoded at once, so the memory
    is ``O(rows * m)`` whatever k is; the running log-sum-exp over sample
    chunks is kept in float64.  For BAGGINS, p(x|z_i) = N(x; nu(z_i), T_i I)
    with T_i from Eq. (29) for that sample, S^2 = ``baggins_s2`` (required).
    ``proposal(sl, eps) -> (z, log_q)`` replaces q(z|x) by another proposal
    for the images ``x[sl]``, from standard normal ``eps (c, b, n)`` (e.g.
    :func:`mlpvae.experiments.analyze.laplace_proposal`); BAGGINS's T still uses the
    encoder's Sigma, as in training.
    """
    xp = array_namespace(x)
    n = mc.n
    s2 = xp.ones(n, dtype=x.dtype) if s2 is None else s2
    out = np.empty(len(x))
    per = max(1, rows // k) if k <= rows else 1
    kc = min(k, rows)
    from tqdm import tqdm

    for sl in tqdm(list(_chunks(len(x), per)), desc=f"IWAE k={k}", disable=not progress, leave=False,
                   file=sys.stderr):
        xb = x[sl]
        b = len(xb)
        mu, var = _model().encode(params, xb, mc)
        var = xp.broadcast_to(var, mu.shape)
        acc = xp.full(b, -xp.inf, dtype=xp.float64)
        done = 0
        while done < k:
            c = min(kc, k - done)
            eps = noise_rng.standard_normal((c, b, n), dtype=x.dtype)
            if proposal is None:
                z = mu[None] + xp.sqrt(var)[None] * eps  # (c, b, n)
                log_q = _log_normal_diag(xp, z, mu[None], var[None])
            else:
                z, log_q = proposal(sl, eps)
            zf = z.reshape(c * b, n)
            xr = xp.broadcast_to(xb[None], (c, b, xb.shape[1])).reshape(c * b, -1)
            dec = _model().decode(params, zf, mc)
            T = None
            if mc.likelihood == "baggins":
                from vaetheory.objectives import baggins_T

                mur = xp.broadcast_to(mu[None], (c, b, n)).reshape(c * b, n)
                varr = xp.broadcast_to(var[None], (c, b, n)).reshape(c * b, n)
                T = baggins_T(xr, dec["mean"], mur, varr, mc.tau, baggins_s2)
            ll = _model().log_likelihood(dec, xr, mc, T=T).reshape(c, b)
            lw = ll + _log_normal_diag(xp, z, 0.0, s2) - log_q
            lw = lw.astype(xp.float64)
            m = xp.maximum(acc, lw.max(axis=0))
            acc = m + xp.log(xp.exp(acc - m) + xp.exp(lw - m[None]).sum(axis=0))
            done += c
        out[sl] = to_numpy(acc) - math.log(k)
    return out


def active_units(mu, threshold: float = ACTIVE_THRESHOLD) -> tuple[int, np.ndarray]:
    """Number of active latent units and ``Var_x(mu_u) (n,)`` (Burda et al.'s criterion; Not in the paper)."""
    v = to_numpy(mu).astype(np.float64).var(axis=0)
    return int((v > threshold).sum()), v


def entropy_floor(x) -> float:
    """Mean over images of ``sum_pixels H(x)``, the Bernoulli entropy of grayscale targets (Sec. 7; DESIGN).

    ``x (N, m)`` in [0, 1], with ``0 log 0 = 0``.  Minus this is an upper bound
    on the Bernoulli ELBO and log p(x) of every image, averaged.
    """
    p = to_numpy(x).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log(p), 0.0) + np.where(p < 1, (1 - p) * np.log1p(-p), 0.0))
    return float(h.sum(axis=1).mean())


def decode_mean(params, z, mc, scale: float = 1.0):
    """Decoder means nu(z) as host images in [0, 1] (Sec. 7).

    Bernoulli probabilities, or Gaussian means divided by the data scale lambda.
    """
    from mlpvae.nn.layers import sigmoid

    dec = _model().decode(params, z, mc)
    img = sigmoid(dec["logits"]) if "logits" in dec else dec["mean"] / scale
    return to_numpy(img)


def evaluate_run(run_dir, k: int = 10, iwae_k: int = 1000, test_limit: int | None = None, plots: bool = False,
                 device: str | None = None, progress: bool = True, compare=()) -> dict:
    """Evaluate the checkpoint of a training run; write ``eval.json`` (and PNGs with ``plots``); Sec. 7.

    Reports, in nats per test image: the test ELBO averaged over ``k``
    samples (labelled S^2 sources for floating-prior models), the IWAE lower
    bound on log p(x) with ``iwae_k`` samples, the number of active units, and
    the grayscale entropy floor.  The evaluation uses the run's own targets
    (grayscale or binarized, times lambda) and, with dynamic binarization,
    the training targets of the last epoch for S^2.
    """
    from mlpvae.training import checkpoint
    from mlpvae.training import config as C
    from mlpvae.training import data as D
    from mlpvae.accel import device as dev
    from mlpvae.training import train as T

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    cfg_d = dict(info["config"])
    if device is not None:
        cfg_d["device"] = device
    if test_limit is not None:
        cfg_d["test_limit"] = test_limit
    cfg = C.TrainConfig(**cfg_d)
    xp, desc = dev.select(cfg.device)
    ck = checkpoint.load(run_dir / "checkpoint.npz", xp)
    params, epoch, mc = ck["params"], int(ck["epoch"]), cfg.model_config()
    dtype = np.dtype(cfg.dtype)
    ds = T.load_data(cfg)
    x_train = D.targets(xp.asarray(ds.train_images), scale=cfg.scale, binarize=cfg.binarize, dtype=dtype,
                        rng=T.generator(cfg.seed, T.STREAM_NOISE, max(epoch - 1, 0), xp))
    x_test = D.targets(xp.asarray(ds.test_images), scale=cfg.scale, binarize=cfg.binarize, dtype=dtype,
                       rng=T.generator(cfg.seed, T.STREAM_TEST, 0, xp))
    rng = T.generator(cfg.seed, STREAM_EVAL, epoch, xp)

    mu_tr, var_tr = encode_all(params, x_train, mc)
    s2_train = prior_s2(mu_tr, var_tr)
    mu, var = encode_all(params, x_test, mc)
    s2_test = prior_s2(mu, var)
    res: dict = {"run": str(run_dir), "epoch": epoch, "device": desc, "targets": info.get("targets"),
                 "test_images": int(len(x_test)), "units": "nats per image, summed over pixels"}
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
    t0 = __import__("time").perf_counter()
    lp = iwae_log_px(params, x_test, mc, rng, iwae_k, s2=prior, baggins_s2=s2_train, progress=progress)
    res["iwae_log_px"] = float(lp.mean())
    res["iwae_k"] = iwae_k
    res["iwae_seconds"] = __import__("time").perf_counter() - t0
    res["iwae_note"] = f"lower bound on log p(x) (IWAE, k={iwae_k}); tighter than the ELBO, equal as k -> inf"
    count, v = active_units(mu)
    res["active_units"] = count
    res["active_threshold"] = ACTIVE_THRESHOLD
    res["latent_var_of_means"] = v.tolist()
    res["s2_train"] = to_numpy(s2_train).tolist()
    if cfg.binarize == "none" and mc.likelihood == "bernoulli":
        res["entropy_floor"] = entropy_floor(x_test / cfg.scale)
        res["entropy_floor_note"] = ("mean over test images of sum_pixels H(x) of the grayscale targets; "
                                     "-entropy_floor bounds any Bernoulli ELBO / log p(x) from above")
    if plots:
        res["plots"] = [str(p) for p in write_plots(run_dir, params, mc, cfg, to_numpy(mu), to_numpy(var),
                                                     ds.test_labels, x_test, s2_train,
                                                     T.generator(cfg.seed, STREAM_PLOTS, epoch), compare)]
    from mlpvae.training.checkpoint import write_json

    write_json(run_dir / "eval.json", res)
    return res


def write_plots(run_dir: Path, params, mc, cfg, mu, var, labels, x_test, s2_train, rng, compare=()) -> list[Path]:
    """The run's figures (Figs. 2-5, 12-16) as PNG files in ``run_dir`` (Sec. 7).

    ``rng`` is a host generator; ``compare`` lists other run directories
    whose training curves are overlaid (Fig. 4 compares methods).
    """
    from mlpvae.experiments import plots as P

    xp = array_namespace(x_test)
    name = f"{mc.posterior}, {mc.likelihood}, n={mc.n}"
    s2h = to_numpy(s2_train)
    prior_var = np.ones(mc.n) if mc.posterior not in FLOATING else s2h
    out = [P.latent_scatter(mu, labels, run_dir / "latent_means.png", f"posterior means ({name})")]
    z = mu + np.sqrt(var) * rng.standard_normal(mu.shape)
    out.append(P.latent_scatter(z, labels, run_dir / "latent_samples.png", f"one posterior sample z ({name})"))
    out.append(P.variance_vs_mean(mu, var, run_dir / "variance_vs_mean.png", s2=prior_var,
                                  title=f"posterior variance vs mean ({name})"))
    runs = {d.name: d / "metrics.csv" for d in [run_dir, *map(Path, compare)]}
    out.append(P.training_curves(runs, run_dir / "training_curves.png"))
    if math.isqrt(mc.m) ** 2 != mc.m:
        return out  # image grids need square images
    dt = x_test.dtype
    for label, v in (("standard", np.ones(mc.n)), ("fitted", s2h)):
        zs = np.sqrt(v) * rng.standard_normal((100, mc.n))
        img = decode_mean(params, xp.asarray(zs.astype(dt)), mc, cfg.scale)
        out.append(P.image_grid(img, run_dir / f"samples_{label}_prior.png",
                                title=f"samples, {'N(0, I)' if label == 'standard' else 'N(0, S^2) fitted prior'}"))
    rec = decode_mean(params, xp.asarray(mu[:50].astype(dt)), mc, cfg.scale)
    out.append(P.reconstruction_grid(to_numpy(x_test[:50]) / cfg.scale, rec, run_dir / "reconstructions.png"))
    if mc.n == 2:
        out.append(P.manifold_grid(lambda zz: decode_mean(params, xp.asarray(zz.astype(dt)), mc, cfg.scale),
                                   run_dir / "manifold.png", s=np.sqrt(prior_var)))
    return out


def add_arguments(parser) -> None:
    """The command-line interface (Not in the paper)."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `vaetheory train`")
    parser.add_argument("--k", type=int, default=10, help="posterior samples per image for the test ELBO (10)")
    parser.add_argument("--iwae-k", type=int, default=1000, help="importance samples per image (1000; up to 5000)")
    parser.add_argument("--test-limit", type=int, default=None, help="evaluate only the first test images")
    parser.add_argument("--plots", action="store_true", help="also write the figures as PNG into RUN_DIR")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), default=None, help="default: the run's")
    parser.add_argument("--compare", nargs="+", default=(), metavar="RUN_DIR",
                        help="other runs whose training curves are drawn with this one's (Fig. 4)")


def run(args) -> int:
    """The command-line interface (Not in the paper)."""
    try:
        res = evaluate_run(args.run_dir, args.k, args.iwae_k, args.test_limit, args.plots, args.device,
                           compare=args.compare)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"vaetheory evaluate: {exc}", file=sys.stderr)
        return 2
    for key in ("test_elbo", "test_elbo_s2_train", "test_elbo_s2_test", "iwae_log_px", "entropy_floor"):
        if key in res:
            print(f"{key:20s} {res[key]:10.3f}  nats/image")
    print(f"{'active_units':20s} {res['active_units']:10d}  of {len(res['latent_var_of_means'])} "
          f"(Var_x(mu_u) > {ACTIVE_THRESHOLD})")
    print(f"wrote {Path(args.run_dir) / 'eval.json'}")
    return 0
