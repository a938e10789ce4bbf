"""mlpvae.training.data: strict IDX parsing, checksums, the search path, targets;
mlpvae.training.config; mlpvae.training.checkpoint."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import TOL
from idx_files import idx_bytes, write_set

from mlpvae.training import checkpoint, config, data, idx

SHARED = os.environ.get("VAETHEORY_DATA")
HAVE_MNIST = bool(SHARED) and (Path(SHARED) / "mnist").is_dir()


@pytest.mark.parametrize("code", sorted(idx.IDX_TYPES))
def test_parse_idx_round_trips_every_element_type(code):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(idx.IDX_TYPES[code] if code != 0x08 else np.uint8)
    if code == 0x08:
        a = np.abs(a)
    out = data.parse_idx(idx_bytes(a, code))
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, a)
    assert out.dtype.isnative


@pytest.mark.parametrize(
    "buf, match",
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "element type"),
        (b"\x00\x00\x08\x00", "rank is 0"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 1), "truncated IDX header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00" * 4, "13 bytes.*has 12 bytes"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3, "10 bytes.*has 11 bytes"),
    ],
)
def test_parse_idx_rejects_malformed_files_with_a_clear_error(buf, match):
    with pytest.raises(data.IdxError, match=match):
        data.parse_idx(buf, "f")


@pytest.mark.parametrize("gz", [False, True])
def test_load_reads_own_idx_files_gzipped_or_not(tmp_path, monkeypatch, gz):
    monkeypatch.setattr(data, "SHA256", {"mnist": {}, "fashion-mnist": {}})
    arrays = write_set(tmp_path / "mnist", gz=gz)
    ds = data.load("mnist", tmp_path)
    np.testing.assert_array_equal(ds.train_images, arrays["train-images-idx3-ubyte"].reshape(7, 784))
    np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert {c.status for c in ds.checks.values()} == {"structure checked only"}


def test_checksum_mismatch_is_an_error_naming_the_file(tmp_path, monkeypatch):
    write_set(tmp_path / "mnist")
    with pytest.raises(data.ChecksumError, match="train-images-idx3-ubyte.*expected ba891046"):
        data.load("mnist", tmp_path)
    # and a matching sum is "verified"
    good = data.SHA256["mnist"] | {
        "train-images-idx3-ubyte": __import__("hashlib")
        .sha256((tmp_path / "mnist/train-images-idx3-ubyte").read_bytes())
        .hexdigest()
    }
    monkeypatch.setitem(data.SHA256, "mnist", {"train-images-idx3-ubyte": good["train-images-idx3-ubyte"]})
    _, check = data.read_file("mnist", tmp_path / "mnist/train-images-idx3-ubyte")
    assert check.status == "verified"


def test_inconsistent_files_are_rejected(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SHA256", {"mnist": {}, "fashion-mnist": {}})
    write_set(tmp_path / "mnist")
    rng = np.random.default_rng(1)
    (tmp_path / "mnist/train-labels-idx1-ubyte").write_bytes(idx_bytes(rng.integers(0, 10, 6, dtype=np.uint8)))
    with pytest.raises(data.IdxError, match="7 images but 6 labels"):
        data.load("mnist", tmp_path)


def test_missing_data_gives_one_message_with_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VAETHEORY_SYSTEM_DATA", str(tmp_path / "system"))
    monkeypatch.delenv("VAETHEORY_DATA", raising=False)
    with pytest.raises(data.DataNotFoundError) as info:
        data.load("fashion-mnist")
    msg = str(info.value)
    for d in (tmp_path / "home/.cache/vaetheory/fashion-mnist", tmp_path / "system/fashion-mnist"):
        assert str(d) in msg
    assert "VAETHEORY_DATA" in msg and "t10k-labels-idx1-ubyte" in msg
    assert "apt install dataset-fashion-mnist" in msg
    # the hint names the set looked for: MNIST has no Debian package
    with pytest.raises(data.DataNotFoundError) as info:
        data.load("mnist")
    msg = str(info.value)
    assert "$VAETHEORY_DATA/mnist/" in msg and "fashion" not in msg.lower()
    # a directory the user named is the only place looked in
    monkeypatch.setenv("VAETHEORY_DATA", str(tmp_path / "env"))
    with pytest.raises(data.DataNotFoundError) as info:
        data.load("fashion-mnist", tmp_path / "explicit")
    msg = str(info.value)
    assert str(tmp_path / "explicit") in msg and "data directory given" in msg and str(tmp_path / "env") not in msg


def test_search_order_explicit_else_env_else_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SHA256", {"mnist": {}, "fashion-mnist": {}})
    monkeypatch.delenv("VAETHEORY_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_set(tmp_path / "home/.cache/vaetheory/mnist", seed=2)
    assert data.locate("mnist")["train_images"].parent == tmp_path / "home/.cache/vaetheory/mnist"
    monkeypatch.setenv("VAETHEORY_DATA", str(tmp_path / "env"))
    write_set(tmp_path / "env/mnist", seed=3)
    assert data.locate("mnist")["train_images"].parent == tmp_path / "env/mnist"
    write_set(tmp_path / "explicit/mnist", seed=4)
    assert data.locate("mnist", tmp_path / "explicit")["train_images"].parent == tmp_path / "explicit/mnist"


@pytest.mark.skipif(not HAVE_MNIST, reason="needs MNIST under $VAETHEORY_DATA (CI sets it)")
def test_real_mnist_is_verified_and_has_the_paper_sizes_sec7():
    ds = data.load("mnist")
    assert {c.status for c in ds.checks.values()} == {"verified"}
    assert ds.train_images.shape == (60000, 784) and ds.test_images.shape == (10000, 784)
    assert ds.train_labels[:5].tolist() == [5, 0, 4, 1, 9]  # the well-known first training labels
    assert np.bincount(ds.test_labels).sum() == 10000 and ds.test_labels.max() == 9


def test_targets_grayscale_dynamic_binarization_and_scale_sec7():
    images = np.array([[0, 51, 255], [255, 128, 0]], dtype=np.uint8)
    x = data.targets(images)
    assert x.dtype == np.float32
    np.testing.assert_allclose(x, images / 255.0, rtol=1e-7)
    np.testing.assert_allclose(data.targets(images, scale=3.0), 3.0 * images / 255.0, rtol=1e-6)
    big = np.full((200, 500), 51, dtype=np.uint8)
    b1 = data.targets(big, binarize="dynamic", rng=np.random.default_rng(0))
    b2 = data.targets(big, binarize="dynamic", rng=np.random.default_rng(1))
    assert set(np.unique(b1)) == {0.0, 1.0}
    assert abs(b1.mean() - 0.2) < TOL["mc_sigmas"] * np.sqrt(0.2 * 0.8 / big.size)
    assert not np.array_equal(b1, b2)  # resampled with a different generator
    with pytest.raises(ValueError, match="rng"):
        data.targets(big, binarize="dynamic")
    with pytest.raises(ValueError, match="binarize"):
        data.targets(big, binarize="static")


def test_data_command_lists_and_verifies(tmp_path, monkeypatch, capsys):
    import argparse

    monkeypatch.setattr(data, "SHA256", {"mnist": {}, "fashion-mnist": {}})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VAETHEORY_DATA", raising=False)
    monkeypatch.setenv("VAETHEORY_SYSTEM_DATA", str(tmp_path / "system"))
    write_set(tmp_path / "mnist", gz=True)
    p = argparse.ArgumentParser()
    data.add_arguments(p)
    assert data.run(p.parse_args(["--data", str(tmp_path)])) == 0
    out = capsys.readouterr().out
    assert out.count("structure checked only") == 4 and "fashion-mnist" in out and "NOT FOUND" in out
    assert data.run(p.parse_args(["--data", str(tmp_path), "--name", "fashion-mnist"])) == 1


# --------------------------------------------------------------------- config


def test_toml_config_unknown_key_lists_valid_keys(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('posterior = "bilbo"\nn = 100\nlearning_rate = 0.1\n')
    with pytest.raises(ValueError, match="unknown key.*learning_rate.*valid keys are: .*batch_size"):
        config.load_toml(p)
    p.write_text('posterior = "bilbo"\nn = 100\nepochs = 3\n')
    c = config.make_config(p, epochs=5, lr=None)
    assert (c.posterior, c.n, c.epochs, c.lr, c.batch_size) == ("bilbo", 100, 5, 1e-3, 300)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="posterior"):
        config.TrainConfig(posterior="floating")
    with pytest.raises(ValueError, match="batch_size"):
        config.TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="m must be 784"):
        config.TrainConfig(m=10)


def test_example_configs_parse():
    root = Path(config.__file__).parent.parent / "configs"
    files = sorted(root.glob("*.toml"))
    assert files, "mlpvae/configs/ holds example TOML files"
    for f in files:
        config.make_config(f)


# ----------------------------------------------------------------- checkpoint


def test_checkpoint_round_trips_nested_state_exactly(tmp_path):
    r = np.random.default_rng(5)
    r.random(3)
    state = {
        "params": {"W0": r.standard_normal((3, 2)).astype(np.float32), "b0": np.zeros(2, np.float64)},
        "adam": {"t": 7, "m": {"W0": r.standard_normal((3, 2)).astype(np.float32)}},
        "epoch": 4,
        "rng": r.bit_generator.state,
    }
    checkpoint.save(tmp_path / "ck.npz", state)
    back = checkpoint.load(tmp_path / "ck.npz")
    assert back["params"]["W0"].dtype == np.float32 and back["params"]["b0"].dtype == np.float64
    np.testing.assert_array_equal(back["params"]["W0"], state["params"]["W0"])
    np.testing.assert_array_equal(back["adam"]["m"]["W0"], state["adam"]["m"]["W0"])
    assert back["adam"]["t"] == 7 and back["epoch"] == 4
    r2 = np.random.default_rng()
    r2.bit_generator.state = back["rng"]
    assert r2.random() == r.random()
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]  # no temporary left behind


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.json"
    checkpoint.write_json(target, {"a": 1})

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(target, boom)
    assert target.read_text().strip() == '{\n  "a": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_the_background_writer_writes_what_the_state_was_when_asked(tmp_path):
    W = np.arange(6, dtype=np.float32).reshape(3, 2)
    info = {"epochs_done": 1, "status": "running"}
    w = checkpoint.Writer()
    w.save(tmp_path / "ck.npz", {"params": {"W": W}, "epoch": 1}, tmp_path / "run.json", info)
    W += 100  # training goes on while the file is written
    info["epochs_done"] = 2
    w.save(tmp_path / "ck2.npz", {"params": {"W": W}, "epoch": 2})
    w.close()
    np.testing.assert_array_equal(
        checkpoint.load(tmp_path / "ck.npz")["params"]["W"], np.arange(6, dtype=np.float32).reshape(3, 2)
    )
    np.testing.assert_array_equal(checkpoint.load(tmp_path / "ck2.npz")["params"]["W"], W)
    assert '"epochs_done": 1' in (tmp_path / "run.json").read_text()
    # the same bytes as a direct save
    checkpoint.save(tmp_path / "direct.npz", {"params": {"W": W}, "epoch": 2})
    assert (tmp_path / "direct.npz").read_bytes() == (tmp_path / "ck2.npz").read_bytes()


def test_a_failed_background_write_is_raised(tmp_path):
    w = checkpoint.Writer()
    w.save(tmp_path / "missing-folder" / "ck.npz", {"epoch": 1})
    with pytest.raises(FileNotFoundError):
        w.wait()
    w.close()
