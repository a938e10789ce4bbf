"""mlpvae.training.train: runs of every (posterior, likelihood), files written, exact resume, divergence, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import TOL
from tiny_runs import HAVE_MNIST, TINY, assert_same_run, rows, tiny

from mlpvae.nn import model
from mlpvae.training import checkpoint
from mlpvae.training import config as C
from mlpvae.training import train as T
from mlpvae.training.metrics import metric_columns


@pytest.mark.parametrize("posterior", C.POSTERIORS)
@pytest.mark.parametrize("likelihood", C.LIKELIHOODS)
def test_every_posterior_and_likelihood_trains_and_writes_its_files(tmp_path, posterior, likelihood):
    cfg = tiny(posterior=posterior, likelihood=likelihood, epochs=2, scale=0.5 if likelihood != "bernoulli" else 1.0)
    info = T.train(cfg, tmp_path)
    assert info["status"] == "completed" and info["epochs_done"] == 2 and info["steps_per_epoch"] == 3
    saved = json.loads((tmp_path / "run.json").read_text())
    assert saved["config"] == cfg.to_dict() and saved["dtype"] == "float32" and saved["device"].startswith("cpu")
    assert saved["wall_seconds"] > 0 and "git_sha" in saved
    # what bit-for-bit reproduction on the CPU depends on: the CPU and NumPy's BLAS with its kernel and threads
    from threadpoolctl import threadpool_info

    blas = [p for p in threadpool_info() if p["user_api"] == "blas" and "numpy.libs" in p["filepath"]]
    blas = blas or [p for p in threadpool_info() if p["user_api"] == "blas"]
    assert saved["cpu"]["model"] and saved["cpu"]["cores"] >= 1
    assert [b["internal_api"] for b in saved["cpu"]["blas"]] == [b["internal_api"] for b in blas]
    assert [b["architecture"] for b in saved["cpu"]["blas"]] == [b.get("architecture") for b in blas]
    r = rows(tmp_path / "metrics.csv")
    assert [int(x["epoch"]) for x in r] == [1, 2] and all(x["status"] == "ok" for x in r)
    assert list(r[0]) == metric_columns(posterior)
    tests = [c for c in r[0] if c.startswith("test_elbo")]
    assert tests == (["test_elbo_s2_train", "test_elbo_s2_test"] if posterior != "learned" else ["test_elbo"])
    assert all(np.isfinite(float(x[c])) for x in r for c in ["train_objective", *tests, "seconds"])
    ck = checkpoint.load(tmp_path / "checkpoint.npz")
    assert ck["epoch"] == 2 and ck["adam"]["step"] == 6 and ck["config"] == cfg.to_dict()
    assert set(ck["params"]) == set(model.param_shapes(cfg.model_config()))
    assert all(p.dtype == np.float32 for p in ck["params"].values())


def test_training_improves_the_test_elbo_on_synthetic_data(tmp_path):
    # Deterministic (seeded); ten near-binary class templates are learnable, so the bound must rise
    # (measured: -11.11 after epoch 1, -10.12 after epoch 20).
    T.train(tiny(epochs=20, limit=200, hidden=32, lr=1e-2), tmp_path)
    r = rows(tmp_path / "metrics.csv")
    assert float(r[-1]["test_elbo"]) > float(r[0]["test_elbo"]) + 0.5


def test_eval_every_leaves_test_columns_empty_between_evaluations(tmp_path):
    T.train(tiny(epochs=5, eval_every=2, posterior="constant"), tmp_path)
    r = rows(tmp_path / "metrics.csv")
    evaluated = [x["epoch"] for x in r if x["test_elbo_s2_train"] != ""]
    assert evaluated == ["2", "4", "5"] and all(x["train_objective"] != "" for x in r)


@pytest.mark.parametrize(
    "kw", [dict(posterior="bilbo", binarize="dynamic"), dict(posterior="learned", likelihood="baggins", scale=0.5)]
)
def test_resume_reproduces_the_uninterrupted_run_bitwise(tmp_path, monkeypatch, kw):
    T.train(tiny(epochs=2, **kw), tmp_path / "straight")
    T.train(tiny(epochs=1, **kw), tmp_path / "resumed")
    real, calls = model.loss_and_grads, []
    monkeypatch.setattr(model, "loss_and_grads", lambda *a, **k: calls.append(1) or real(*a, **k))
    T.train(tiny(epochs=2, **kw), tmp_path / "resumed", resume=True)
    assert len(calls) == 3  # only the second epoch's steps were run
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed/run.json").read_text())["epochs_done"] == 2


@pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST under $VAETHEORY_DATA (CI sets it)")
def test_mnist_slice_trains_and_resumes_exactly_sec7(tmp_path):
    kw = dict(
        dataset="mnist",
        limit=600,
        test_limit=300,
        batch_size=100,
        hidden=32,
        posterior="constant",
        device="cpu",
        progress=False,
    )
    T.train(C.TrainConfig(epochs=3, **kw), tmp_path / "straight")
    T.train(C.TrainConfig(epochs=2, **kw), tmp_path / "resumed")
    T.train(C.TrainConfig(epochs=3, **kw), tmp_path / "resumed", resume=True)
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    r = rows(tmp_path / "straight/metrics.csv")
    # grayscale MNIST, nats per image: far below 0 and rising over the first epochs
    e1, e3 = float(r[0]["test_elbo_s2_train"]), float(r[-1]["test_elbo_s2_train"])
    assert -800 < e1 < e3 < -45
    info = json.loads((tmp_path / "straight/run.json").read_text())
    assert {f["check"] for f in info["data"]["files"].values()} == {"verified"}


def test_resume_refuses_changed_settings_and_fresh_run_refuses_existing_dir(tmp_path):
    T.train(tiny(epochs=1), tmp_path)
    with pytest.raises(ValueError, match="settings differ.*lr"):
        T.train(tiny(epochs=2, lr=1e-2), tmp_path, resume=True)
    with pytest.raises(FileExistsError, match="--resume"):
        T.train(tiny(epochs=2), tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        T.train(tiny(epochs=2), tmp_path / "empty", resume=True)


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real = model.loss_and_grads
    calls = {"n": 0}

    def diverging(params, x, eps, config, grads=None):
        calls["n"] += 1
        loss, g, aux = real(params, x, eps, config, grads=grads)
        if calls["n"] == 5:  # epoch 2 (3 steps per epoch), second step
            loss = loss * np.float32("nan")
        return loss, g, aux

    T.train(tiny(epochs=1, likelihood="gaussian-learned"), tmp_path / "good")
    monkeypatch.setattr(model, "loss_and_grads", diverging)
    info = T.train(tiny(epochs=4, likelihood="gaussian-learned"), tmp_path / "run")
    assert info["status"] == "diverged" and info["diverged"] == {"epoch": 2, "step": 2}
    assert "non-finite loss at epoch 2, step 2" in capsys.readouterr().err
    saved = json.loads((tmp_path / "run/run.json").read_text())
    assert saved["status"] == "diverged" and "last good checkpoint (epoch 1)" in saved["message"]
    r = rows(tmp_path / "run/metrics.csv")
    assert [x["status"] for x in r] == ["ok", "diverged at step 2"]
    ck = checkpoint.load(tmp_path / "run/checkpoint.npz")
    assert ck["epoch"] == 1
    good = checkpoint.load(tmp_path / "good/checkpoint.npz")
    for k in good["params"]:
        np.testing.assert_array_equal(ck["params"][k], good["params"][k])


def cli(*args, env_extra=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "vaetheory", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_train_from_toml_with_flag_override_then_resume(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text(
        "\n".join(
            f"{k} = {json.dumps(v) if isinstance(v, str) else str(v).lower()}"
            for k, v in TINY.items()
            if k != "progress"
        )
        + '\nposterior = "bilbo"\nepochs = 1\n'
    )
    out = tmp_path / "run"
    p = cli("train", "--config", str(toml), "--out", str(out), "--seed", "3")
    assert p.returncode == 0, p.stderr
    info = json.loads((out / "run.json").read_text())
    assert info["config"]["posterior"] == "bilbo" and info["config"]["seed"] == 3 and info["status"] == "completed"
    p = cli("train", "--config", str(toml), "--out", str(out), "--seed", "3", "--epochs", "2", "--resume")
    assert p.returncode == 0, p.stderr
    assert [x["epoch"] for x in rows(out / "metrics.csv")] == ["1", "2"]
    bad = tmp_path / "bad.toml"
    bad.write_text("batchsize = 3\n")
    p = cli("train", "--config", str(bad), "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and "unknown key(s) batchsize" in p.stderr and "batch_size" in p.stderr


def test_cli_missing_data_is_one_clear_message(tmp_path):
    p = cli(
        "train",
        "--out",
        str(tmp_path / "r"),
        "--dataset",
        "fashion-mnist",
        "--device",
        "cpu",
        env_extra={
            "VAETHEORY_DATA": str(tmp_path),
            "HOME": str(tmp_path),
            "VAETHEORY_SYSTEM_DATA": str(tmp_path / "system"),
        },
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "not found; looked in" in p.stderr and str(tmp_path / "fashion-mnist") in p.stderr


def test_cli_diverged_run_exits_with_status_3(tmp_path):
    # lr = 1e6 on the learned-variance Gaussian likelihood overflows within a few steps.
    p = cli(
        "train",
        "--out",
        str(tmp_path / "r"),
        "--dataset",
        "synthetic",
        "--m",
        "16",
        "--hidden",
        "8",
        "--limit",
        "60",
        "--test-limit",
        "20",
        "--batch-size",
        "20",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--likelihood",
        "gaussian-learned",
        "--lr",
        "1e6",
        "--no-progress",
    )
    assert p.returncode == T.EXIT_DIVERGED, p.stderr
    assert "non-finite loss" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------------- bench


def test_bench_counts_the_steps_matmul_flops_analytically():
    from mlpvae.experiments import bench

    B, m, h = 300, 784, 200
    for n, posterior in bench.CONFIGS:
        params = model.init_params(model.ModelConfig(n=n, posterior=posterior), np.random.default_rng(0))
        heads = 2 if posterior == "learned" else 1  # mean head (+ std head)
        enc = m * h + 2 * h * h + heads * h * n
        dec = n * h + 2 * h * h + h * m
        # forward + weight gradients + input gradients, except the data input's
        want = 2 * B * (3 * (enc + dec) - m * h)
        assert bench.step_flops(params, B, m) == want


def test_bench_cli_reports_every_configuration(tmp_path):
    p = cli(
        "bench",
        "train",
        "--device",
        "cpu",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--gemm-size",
        "256",
        "--peers",
        "none",  # the side-by-side peers are tested in tests/mlpvae/test_peers.py
        "--json",
        str(tmp_path / "b.json"),
    )
    assert p.returncode == 0, p.stderr
    rep = json.loads((tmp_path / "b.json").read_text())
    assert "peers" not in rep
    assert [(r["n"], r["posterior"]) for r in rep["results"]] == [
        (2, "learned"),
        (2, "constant"),
        (2, "bilbo"),
        (100, "learned"),
        (100, "constant"),
        (100, "bilbo"),
    ]
    for r in rep["results"]:
        assert r["ms_per_step"] > 0 and r["examples_per_s"] == pytest.approx(300 / (r["ms_per_step"] / 1e3))
        assert 0 < r["fraction_of_gemm_rate"] == pytest.approx(r["achieved_gflop_s"] / rep["gemm_large"]["gflop_s"])
    assert rep["gemm_large"]["gflop_s"] > 0 and "ms/step" in p.stdout


# ------------------------------------------------------------------------ GPU

from mlpvae.accel import device as _dev  # noqa: E402


@pytest.mark.skipif(_dev.gpu_count() == 0, reason="needs CuPy and a CUDA GPU (the CPU path is tested above)")
@pytest.mark.parametrize("posterior", C.POSTERIORS)
def test_gpu_run_trains_resumes_and_evaluates(tmp_path, posterior):
    from mlpvae.experiments import evaluate as E

    kw = dict(posterior=posterior, device="gpu", m=784, binarize="dynamic")
    info = T.train(tiny(epochs=2, **kw), tmp_path / "straight")
    assert info["status"] == "completed" and info["device"].startswith("gpu")
    T.train(tiny(epochs=1, **kw), tmp_path / "resumed")
    T.train(tiny(epochs=2, **kw), tmp_path / "resumed", resume=True)
    a, b = checkpoint.load(tmp_path / "straight/checkpoint.npz"), checkpoint.load(tmp_path / "resumed/checkpoint.npz")
    for k in a["params"]:
        np.testing.assert_allclose(a["params"][k], b["params"][k], rtol=TOL["f32_vs_f64"], atol=TOL["f32_vs_f64"])
    res = E.evaluate_run(tmp_path / "straight", k=2, iwae_k=20, plots=True)
    assert np.isfinite(res["iwae_log_px"]) and len(res["plots"]) == 8


def test_train_says_what_it_wrote_and_every_option_is_described(tmp_path, capsys):
    """`vaetheory train` ends with its status, device and files; `--help` describes every setting, with its default."""
    from mlpvae.training.config import HELP, valid_keys
    from vaetheory import cli

    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--dataset", "synthetic", "--m", "16", "--hidden", "8"]
    assert cli.main([*args, "--epochs", "1", "--device", "cpu", "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "completed: 1 epochs on cpu" in said and "metrics.csv, checkpoint.npz, run.json" in said
    assert set(HELP) == set(valid_keys()) - {"out"}
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    for key, line in HELP.items():
        assert " ".join(line.split()) in text, key
