"""mlpvae.nn.model.BatchSplit: one model's loss and gradients computed in blocks of rows on Python threads equal
the whole batch's (Eqs. (1), (2), (4), (24); Sec. 7).

The reference is :func:`mlpvae.nn.model.loss_and_grads` on the whole batch, itself tested against PyTorch autograd
and finite differences (tests/mlpvae/test_gradients.py).  What couples the examples, the floating prior's S^2 and
BILBO's M_B, must come from the whole batch: a split that used each block's own S^2 would differ at O(1), which
the float64 comparison would see at once.  The gradients' sums over rows run in another order, so the match is to
rounding (float64: known_answer_f64; float32: split_grad_f32), the loss and aux to float32 rounding of means.
"""

import threading

import numpy as np
import pytest
from tiny_runs import random_problem

from mlpvae.accel import cpu
from mlpvae.experiments.bench_timing import our_stepper, problem
from mlpvae.nn import model
from mlpvae.nn.stacking import stack
from mlpvae.training import step as step_mod

SPLIT_LIKELIHOODS = ("bernoulli", "gaussian", "gaussian-learned")


def _case(posterior, likelihood, n, dtype, B=37, seed=0, latent_scale=1.0):
    return random_problem(n, posterior, B, seed, dtype, likelihood=likelihood, latent_scale=latent_scale)


def _grad_rel(g, ref):
    return max(float(np.max(np.abs(g[k] - ref[k]))) / max(float(np.max(np.abs(ref[k]))), 1e-300) for k in ref)


@pytest.mark.parametrize("posterior", model.POSTERIORS)
@pytest.mark.parametrize("likelihood", SPLIT_LIKELIHOODS)
@pytest.mark.parametrize("parts", [2, 3])
def test_split_equals_the_whole_batch_in_float64(tol, posterior, likelihood, parts):
    mc, params, x, eps = _case(posterior, likelihood, 5, np.float64, latent_scale=2.0)
    loss, grads, aux = model.loss_and_grads(params, x, eps, mc)
    s_loss, s_grads, s_aux = model.BatchSplit(parts)(params, x, eps, mc)
    assert set(s_grads) == set(grads)
    assert all(s_grads[k].shape == grads[k].shape and s_grads[k].dtype == grads[k].dtype for k in grads)
    assert _grad_rel(s_grads, grads) < tol["known_answer_f64"]
    assert abs(float(s_loss - loss)) <= tol["known_answer_f64"] * abs(float(loss))
    for key in aux:
        np.testing.assert_allclose(s_aux[key], aux[key], rtol=tol["known_answer_f64"], atol=0)


@pytest.mark.parametrize("posterior", model.POSTERIORS)
def test_split_equals_the_whole_batch_in_float32_at_the_trainers_batch(tol, posterior):
    mc, params, x, eps = _case(posterior, "bernoulli", 2, np.float32, B=300)
    loss, grads, _ = model.loss_and_grads(params, x, eps, mc)
    s_loss, s_grads, _ = model.BatchSplit(2)(params, x, eps, mc)
    assert _grad_rel(s_grads, grads) < tol["split_grad_f32"]
    assert abs(float(s_loss - loss)) <= tol["peer_loss_f32"] * abs(float(loss))


def test_a_blockwise_floating_prior_would_be_caught():
    # The float64 comparison above is sensitive to the coupling: the blocks' own S^2 moves the loss and mu's
    # gradients by far more than rounding (so the test would fail if BatchSplit used them).
    mc, params, x, eps = _case("constant", "bernoulli", 2, np.float64)
    x[:18] *= 0.2  # blocks that differ, so their S^2 differ from the batch's
    loss, grads, _ = model.loss_and_grads(params, x, eps, mc)
    halves = [model.loss_and_grads(params, x[r], eps[r], mc) for r in (slice(0, 18), slice(18, 37))]
    blockwise = (18 * float(halves[0][0]) + 19 * float(halves[1][0])) / 37
    assert abs(blockwise - float(loss)) > 1e-6 * abs(float(loss))


def test_baggins_stacks_and_short_batches_are_not_split_and_stay_the_reference_bit_for_bit():
    split = model.BatchSplit(2)
    mc, params, x, eps = _case("constant", "baggins", 2, np.float32)
    assert not split.splits(x, mc)
    ref, got = model.loss_and_grads(params, x, eps, mc), split(params, x, eps, mc)
    assert np.array_equal(ref[0], got[0]) and all(np.array_equal(ref[1][k], got[1][k]) for k in ref[1])
    mc2, p2, x2, e2 = _case("constant", "bernoulli", 2, np.float32, seed=1)
    mcb, pb, xb, eb = _case("constant", "bernoulli", 2, np.float32, seed=2)
    two = (stack([p2, pb]), np.stack([x2, xb]), np.stack([e2, eb]))
    assert not split.splits(two[1], mc2)
    ref, got = model.loss_and_grads(*two, mc2), split(*two, mc2)
    assert np.array_equal(ref[0], got[0]) and all(np.array_equal(ref[1][k], got[1][k]) for k in ref[1])
    assert not split.splits(x2[:1], mc2) and model.BatchSplit(1).splits(x2, mc2) is False


def test_a_stack_of_one_model_is_split_as_the_lone_model(tol):
    mc, params, x, eps = _case("bilbo", "bernoulli", 2, np.float64)
    lone_loss, lone_grads, lone_aux = model.BatchSplit(2)(params, x, eps, mc)
    loss, grads, aux = model.BatchSplit(2)(stack([params]), x[None], eps[None], mc)
    assert loss.shape == (1,) and float(loss[0]) == float(lone_loss)
    assert all(
        grads[k].shape == (1,) + lone_grads[k].shape and np.array_equal(grads[k][0], lone_grads[k]) for k in grads
    )
    assert aux["s2"].shape == (1, 2) and np.array_equal(aux["s2"][0], lone_aux["s2"])
    ref = model.loss_and_grads(stack([params]), x[None], eps[None], mc)[1]
    assert _grad_rel(grads, ref) < tol["known_answer_f64"]


def test_bad_part_counts_are_refused(monkeypatch):
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="positive integer"):
            model.BatchSplit(bad)
    for bad in ("0", "two", "-2"):
        monkeypatch.setenv("VAETHEORY_BATCH_SPLIT", bad)
        with pytest.raises(ValueError, match="VAETHEORY_BATCH_SPLIT"):
            step_mod.batch_split_parts()
    monkeypatch.delenv("VAETHEORY_BATCH_SPLIT")
    assert step_mod.batch_split_parts() == 1


def test_serial_is_per_thread_and_restored(monkeypatch):
    if not cpu.available():
        pytest.skip("numba is not importable; cpu.threads() needs it (pip install numba)")
    monkeypatch.setenv("VAETHEORY_CPU_THREADS", "2")
    monkeypatch.setenv("NUMBA_NUM_THREADS", "2")
    outside = cpu.threads()
    seen = {}

    def other():
        seen["other"] = cpu.threads()

    with cpu.serial():
        seen["inside"] = cpu.threads()
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen["inside"] == 1 and seen["other"] == outside and cpu.threads() == outside


def test_blas_threads_are_given_back():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    mc, params, x, eps = _case("learned", "bernoulli", 2, np.float32)
    model.BatchSplit(2)(params, x, eps, mc)
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == before


@pytest.mark.parametrize("posterior", model.POSTERIORS)
def test_training_steps_with_the_switch_track_the_reference(monkeypatch, tol, posterior):
    # Five whole steps (loss, gradients, Adam) through the trainer's step, with and without VAETHEORY_BATCH_SPLIT.
    mc, params, x, eps = problem(np, 2, posterior, 300, 5, 0)
    monkeypatch.delenv("VAETHEORY_BATCH_SPLIT", raising=False)
    ref = our_stepper(np, mc, params, x, eps)
    monkeypatch.setenv("VAETHEORY_BATCH_SPLIT", "2")
    got = our_stepper(np, mc, params, x, eps)
    losses = []
    for _ in range(5):
        ref()
        got()
        losses.append((float(ref.total), float(got.total)))
    assert all(abs(g - r) <= tol["peer_loss_f32_later"] * abs(r) for r, g in losses)
    assert losses[-1][0] != 0.0


def test_a_training_run_with_the_switch_records_it_and_tracks_the_reference(tmp_path, monkeypatch, tol):
    # The trainer holds one model as a stack of one: split as the lone model; run.json says so, since such a
    # run is not bit for bit the reference's.
    import json

    from tiny_runs import tiny

    from mlpvae.training import train as T

    monkeypatch.delenv("VAETHEORY_BATCH_SPLIT", raising=False)
    T.train(tiny(epochs=2, posterior="constant"), tmp_path / "ref")
    monkeypatch.setenv("VAETHEORY_BATCH_SPLIT", "2")
    T.train(tiny(epochs=2, posterior="constant"), tmp_path / "split")
    info = {k: json.loads((tmp_path / k / "run.json").read_text()) for k in ("ref", "split")}
    assert info["split"]["batch_split"] == 2 and "batch_split" not in info["ref"]
    ref, got = ((tmp_path / k / "metrics.csv").read_text().splitlines() for k in ("ref", "split"))
    col = ref[0].split(",").index("train_objective")
    for r, g in zip(ref[1:], got[1:]):
        a, b = float(r.split(",")[col]), float(g.split(",")[col])
        assert abs(a - b) <= tol["peer_loss_f32_later"] * abs(a)  # the same steps, float32 sums reordered
