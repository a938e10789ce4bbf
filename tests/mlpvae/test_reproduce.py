"""mlpvae.experiments.reproduce (with figure_schema and run_queue): the figure configs
parse, unknown keys are errors, a tiny run writes its files, resume skips.

The end-to-end runs train the paper's configs for one epoch on 600 images with
a 16-unit network: on the MNIST slice when ``$VAETHEORY_DATA`` (or another
searched directory) holds MNIST, else on the synthetic data set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_runs import assert_same_run, rows

from mlpvae.experiments import figure_schema as S
from mlpvae.experiments import reproduce as R
from mlpvae.experiments import run_queue as Q
from mlpvae.training import config as C
from mlpvae.training import data as D
from vaetheory import cli

FIGURES = Path(__file__).resolve().parents[2] / "validation" / "figures"
EXPECTED = {"fig4_2d", "fig4_100d", "fig2_3_5_9", "fig6_10_11_14_15", "fig8", "fig12_13", "fashion_mnist"}


def _have_mnist() -> bool:
    try:
        D.locate("mnist")
        return True
    except D.DataNotFoundError:
        return False


HAVE_MNIST = _have_mnist()
# Tiny network and data: the run must stay a few seconds on one core.
TINY = {"hidden": 16, "batch_size": 100, **({} if HAVE_MNIST else {"dataset": "synthetic", "m": 16})}
QUICK = dict(
    seeds=[0], epochs=1, limit=600, test_limit=200, sets=TINY, device="cpu", progress=False, log=lambda s: None
)
PNG = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------
# the configs
# ---------------------------------------------------------------------------
def test_every_paper_figure_has_a_config():
    assert {p.stem for p in FIGURES.glob("*.toml")} == EXPECTED


@pytest.mark.parametrize("path", sorted(FIGURES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_figure_config_parses_and_builds_every_run(path):
    fig = S.load_figure(path)
    assert fig.methods and fig.plots and fig.title and fig.paper
    files = [p["file"] for p in fig.plots]
    assert len(files) == len(set(files))
    for method in fig.methods.values():
        for seed in S.seeds_of(fig, method):
            cfg = S.run_config(method, seed, {})
            assert isinstance(cfg, C.TrainConfig) and cfg.seed == seed
            # the paper's settings (Sec. 7) unless a figure says otherwise; test numbers on all test images
            assert (cfg.batch_size, cfg.lr, cfg.limit, cfg.test_limit, cfg.dtype) == (300, 1e-3, None, None, "float32")
            assert cfg.epochs == (400 if cfg.n == 100 and cfg.likelihood != "bernoulli" else 200)
            assert cfg.binarize == "none"  # grayscale targets, as the paper


def test_the_paper_settings_of_fig4_2d():
    fig = S.load_figure(FIGURES / "fig4_2d.toml")
    assert list(fig.methods) == ["learned", "constant", "bilbo"] and fig.seeds == [0, 1, 2, 3, 4]
    posts = {m: S.run_config(fig.methods[m], 0, {}) for m in fig.methods}
    assert {m: (c.posterior, c.likelihood, c.n, c.dataset) for m, c in posts.items()} == {
        m: (m, "bernoulli", 2, "mnist") for m in ("learned", "constant", "bilbo")
    }
    assert "-136.5" in fig.methods["learned"].paper and "-134.2" in fig.methods["constant"].paper
    assert "-134.3" in fig.methods["bilbo"].paper


def test_shared_methods_point_at_the_other_figures_runs():
    fig = S.load_figure(FIGURES / "fig12_13.toml")
    learned = fig.methods["learned"]
    assert (learned.folder, learned.run_name, learned.shared) == ("fig4_2d", "learned", "fig4_2d.learned")
    assert learned.settings == S.load_figure(FIGURES / "fig4_2d.toml").methods["learned"].settings
    assert S.run_dir(Path("r"), learned, 3) == Path("r/fig4_2d/learned/seed3")
    # a method shared inside one config is run once
    g = S.load_figure(FIGURES / "fig6_10_11_14_15.toml")
    plan = list(Q.plan_runs(g, None, {}))
    own = [m for m in g.methods.values() if not m.shared]
    assert len(own) == len(g.methods) - 2
    assert len(plan) == len({(m.folder, m.run_name, s) for m, s, _ in plan}) == sum(len(S.seeds_of(g, m)) for m in own)
    # a shared method takes its own seeds (the 100-D tau = 0.2 row: seeds 0-2, as the run it shares)
    assert S.seeds_of(g, g.methods["d100_tau0p2"]) == S.seeds_of(g, g.methods["d100_baggins_lambda1"]) == [0, 1, 2]


BASE = """title = "t"
paper = "p"
seeds = [0]
[methods.a]
posterior = "bilbo"
"""


@pytest.mark.parametrize(
    "text, word",
    [
        (BASE + "colour = 1\n", "colour"),
        (BASE.replace("seeds = [0]", "seeds = [0]\nfigure_size = 3"), "figure_size"),
        (BASE + "hiden = 16\n", "hiden"),
        (BASE.replace("[methods.a]", "[defaults]\nepoch = 3\n[methods.a]"), "epoch"),
        (BASE + '[[plots]]\nkind = "curves"\nfile = "a.png"\ncolor = "red"\n', "color"),
        (BASE + '[[plots]]\nkind = "histogram"\nfile = "a.png"\n', "kind"),
        (BASE + '[[plots]]\nkind = "curves"\nfile = "a.png"\nyscale = "log"\n', "yscale"),
        (BASE + '[[plots]]\nkind = "curves"\nfile = "a.png"\nmethods = ["b"]\n', "'b'"),
        (BASE + '[methods.b]\nshared = "nowhere.a"\n', "nowhere"),
        (BASE + '[methods.b]\nshared = "x.a"\nn = 3\n', "shared method"),
        (BASE + "posterior2 = 1\n", "posterior2"),
        (BASE + 'likelihood = "poisson"\n', "likelihood"),
        (BASE.replace("seeds = [0]", "seeds = [0, 0]"), "seeds"),
        (BASE.replace('title = "t"\n', ""), "title"),
    ],
)
def test_unknown_keys_and_bad_values_are_errors_naming_them(tmp_path, text, word):
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=word.replace("(", r"\(")):
        S.load_figure(path)


def test_a_shared_method_of_an_unknown_method_is_an_error(tmp_path):
    (tmp_path / "other.toml").write_text(BASE)
    (tmp_path / "x.toml").write_text(BASE + '[methods.b]\nshared = "other.zzz"\n')
    with pytest.raises(ValueError, match="zzz"):
        S.load_figure(tmp_path / "x.toml")
    (tmp_path / "y.toml").write_text(BASE + '[methods.b]\nshared = "other.a"\nlabel = "B"\n')
    b = S.load_figure(tmp_path / "y.toml").methods["b"]
    assert (b.folder, b.run_name, b.label, b.settings) == ("other", "a", "B", {"posterior": "bilbo"})


# ---------------------------------------------------------------------------
# a tiny end-to-end run
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_fig4(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    info = R.reproduce(FIGURES / "fig4_2d.toml", root, **QUICK)
    return root, info


def test_tiny_reproduce_writes_pngs_summary_and_run_json(tiny_fig4):
    root, info = tiny_fig4
    out = root / "fig4_2d"
    fig = S.load_figure(FIGURES / "fig4_2d.toml")
    for spec in fig.plots:
        png = out / spec["file"]
        assert png.read_bytes()[:8] == PNG and png.stat().st_size > 5000
    saved = json.loads((out / "run.json").read_text())
    assert saved == json.loads(json.dumps(info))
    assert saved["status"] == "completed" and saved["quick_run"] is True
    assert saved["overrides"] == {"epochs": 1, "limit": 600, "test_limit": 200, **TINY, "seeds": [0]}
    assert "git_sha" in saved and saved["devices"][0].startswith("cpu") and saved["dtypes"] == ["float32"]
    assert saved["config"]["title"] == fig.title and saved["wall_seconds"] > 0
    assert [(r["method"], r["seed"], r["action"], r["status"]) for r in saved["runs"]] == [
        (m, 0, "trained", "completed") for m in ("learned", "constant", "bilbo")
    ]
    summary = json.loads((out / "summary.json").read_text())
    for row in summary["methods"]:
        last = rows(root / "fig4_2d" / row["method"] / "seed0" / "metrics.csv")[-1]
        cols = ["test_elbo"] if row["method"] == "learned" else ["test_elbo_s2_test", "test_elbo_s2_train"]
        assert sorted(row["test_elbo"]) == cols
        for c in cols:
            assert row["test_elbo"][c]["values"] == [float(last[c])] and np.isfinite(float(last[c]))
            assert row["test_elbo"][c]["std"] is None  # one seed: no spread claimed
        assert row["status"] == ["completed"] and row["final_epoch"] == [1]
        assert row["targets"] == [f"{'mnist' if HAVE_MNIST else 'synthetic'}: grayscale, scale 1.0"]
    md = (out / "summary.md").read_text()
    assert "-136.5" in md and "-134.2" in md and "nats per image" in md and "grayscale" in md


def test_reproduce_again_skips_finished_runs_and_resumes_longer_ones(tiny_fig4):
    root, _ = tiny_fig4
    ck = root / "fig4_2d" / "learned" / "seed0" / "checkpoint.npz"
    before = ck.stat().st_mtime_ns
    again = R.reproduce(FIGURES / "fig4_2d.toml", root, **QUICK)
    assert [r["action"] for r in again["runs"]] == ["skipped (finished)"] * 3
    assert ck.stat().st_mtime_ns == before
    # more epochs: each run continues from its checkpoint
    longer = R.reproduce(FIGURES / "fig4_2d.toml", root, **{**QUICK, "epochs": 2})
    assert [r["action"] for r in longer["runs"]] == ["resumed"] * 3
    assert [int(r["epoch"]) for r in rows(ck.parent / "metrics.csv")] == [1, 2]


def test_shared_runs_are_not_retrained(tiny_fig4):
    root, _ = tiny_fig4
    info = R.reproduce(FIGURES / "fig12_13.toml", root, **{**QUICK, "epochs": 2})
    assert [(r["method"], r["action"]) for r in info["runs"]] == [
        ("learned", "skipped (finished)"),
        ("bilbo", "skipped (finished)"),
    ]
    assert all(
        (root / "fig12_13" / f).stat().st_size > 5000
        for f in ("fig12_manifold_learned.png", "fig13_manifold_bilbo.png")
    )
    assert not (root / "fig12_13" / "learned").exists()  # the runs stay in fig4_2d's folder


def test_stack_trains_each_methods_seeds_together_with_the_same_results(tmp_path):
    quick = {**QUICK, "seeds": [0, 1]}
    info = R.reproduce(FIGURES / "fig4_2d.toml", tmp_path / "stack", **quick, stack=True)
    assert [(r["method"], r["seed"], r["action"], r["stacked_with"]) for r in info["runs"]] == [
        (m, s, "trained", 2) for m in ("learned", "constant", "bilbo") for s in (0, 1)
    ]
    R.reproduce(FIGURES / "fig4_2d.toml", tmp_path / "alone", **{**quick, "seeds": [1]})
    for m in ("learned", "constant", "bilbo"):  # seed 1 alone == seed 1 in a stack of two
        assert_same_run(tmp_path / "alone/fig4_2d" / m / "seed1", tmp_path / "stack/fig4_2d" / m / "seed1")
    # new runs and runs stopped at an earlier epoch are stacked separately
    longer = R.reproduce(
        FIGURES / "fig4_2d.toml", tmp_path / "stack", **{**quick, "seeds": [0, 1, 2], "epochs": 2}, stack=True
    )
    assert [r["action"] for r in longer["runs"] if r["method"] == "bilbo"] == ["resumed", "resumed", "trained"]


def test_a_run_with_other_settings_is_refused_and_a_diverged_one_kept(tiny_fig4, tmp_path):
    root, _ = tiny_fig4
    with pytest.raises(ValueError, match="hidden"):
        R.reproduce(FIGURES / "fig4_2d.toml", root, **{**QUICK, "sets": {**TINY, "hidden": 17}})
    d = tmp_path / "run"
    d.mkdir()
    cfg = C.TrainConfig(dataset="synthetic", m=16, epochs=3)
    assert Q.run_state(d, cfg) == "new"
    (d / "run.json").write_text(json.dumps({"config": cfg.to_dict(), "status": "diverged"}))
    assert Q.run_state(d, cfg) == "diverged"
    (d / "run.json").write_text(json.dumps({"config": cfg.to_dict(), "status": "running", "epochs_done": 0}))
    assert Q.run_state(d, cfg) == "new"  # stopped before its first checkpoint: start afresh


def test_a_run_being_trained_elsewhere_is_refused_and_a_stale_lock_taken_over(tmp_path):
    d = tmp_path / "run"
    with Q.run_lock(d):
        assert (d / ".queue.lock").read_text() == str(os.getpid())
        with pytest.raises(RuntimeError, match="being trained by process"):
            with Q.run_lock(d):
                pass
    assert not (d / ".queue.lock").exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (d / ".queue.lock").write_text(gone.stdout.strip())  # a lock file left behind: nobody holds it
    with Q.run_lock(d):
        assert (d / ".queue.lock").read_text() == str(os.getpid())


def test_seeds_alone_are_full_runs_and_other_overrides_go_to_the_quick_root(capsys):
    fig4 = str(FIGURES / "fig4_2d.toml")
    full, quick = FIGURES.parent / "results" / "figures-local", FIGURES.parent / "results" / "figures-quick"
    assert cli.main(["reproduce", fig4, "--seeds", "1", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in listed] == [
        f"{full}/fig4_2d/{m}/seed1" for m in ("learned", "constant", "bilbo")
    ]
    assert all("200 epochs" in ln for ln in listed)
    assert cli.main(["reproduce", fig4, "--seeds", "1", "--epochs", "3", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert all(ln.startswith(f"{quick}/fig4_2d/") and "3 epochs" in ln for ln in listed)


def test_methods_trains_only_those_named_and_unknown_names_are_errors(tmp_path, capsys):
    info = R.reproduce(FIGURES / "fig4_2d.toml", tmp_path, **QUICK, methods=["bilbo", "learned"])
    assert [(r["method"], r["action"]) for r in info["runs"]] == [("learned", "trained"), ("bilbo", "trained")]
    assert info["overrides"]["methods"] == ["bilbo", "learned"]
    assert not (tmp_path / "fig4_2d" / "constant").exists()
    summary = json.loads((tmp_path / "fig4_2d" / "summary.json").read_text())
    assert [r["status"] for r in summary["methods"]] == [["completed"], ["missing"], ["completed"]]
    with pytest.raises(ValueError, match="unknown method.*nonsense"):
        R.reproduce(FIGURES / "fig4_2d.toml", tmp_path, **QUICK, methods=["nonsense"])
    fig4 = str(FIGURES / "fig4_2d.toml")
    assert cli.main(["reproduce", fig4, "--seeds", "1", "--methods", "constant", "--list"]) == 0
    assert [ln.split(":")[0].split("/")[-2] for ln in capsys.readouterr().out.splitlines()] == ["constant"]
    assert cli.main(["reproduce", fig4, "--methods", "nonsense", "--list"]) == 2


def test_the_cli_lists_and_runs_a_figure(tiny_fig4, capsys):
    root, _ = tiny_fig4
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    args = [
        "reproduce",
        str(FIGURES / "fig4_2d.toml"),
        "--out",
        str(root),
        "--seeds",
        "0",
        "--epochs",
        "2",
        "--limit",
        "600",
        "--test-limit",
        "200",
        "--device",
        "cpu",
        "--no-progress",
        *sets,
    ]
    assert cli.main([*args, "--list"]) == 0
    listed = capsys.readouterr().out
    assert listed.count(": finished (2 epochs") == 3
    assert cli.main(args) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli.main(["reproduce", str(FIGURES / "fig4_2d.toml"), "--set", "nonsense=1", "--list"]) == 2
