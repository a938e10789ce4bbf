"""Faults of the data files: each becomes one line naming the file and what to do, never a traceback;
a named location without the data is an error; Fashion-MNIST copies without a published checksum say so;
a resume checks that the data is the data the run was trained on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from idx_files import write_set

from mlpvae.training import config, data
from vaetheory import cli


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No data anywhere but where a test puts it; MNIST's checksums off (the test files are not MNIST)."""
    monkeypatch.setattr(data, "SHA256", {"mnist": {}, "fashion-mnist": {}})
    monkeypatch.delenv("VAETHEORY_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VAETHEORY_SYSTEM_DATA", str(tmp_path / "system"))
    return tmp_path


def _truncate(p: Path) -> None:
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2])


def _bad_crc(p: Path) -> None:
    b = bytearray(p.read_bytes())
    b[-8] ^= 0xFF  # the gzip trailer's CRC-32
    p.write_bytes(bytes(b))


def _directory(p: Path) -> None:
    p.unlink()
    p.mkdir()


def _no_permission(p: Path, monkeypatch) -> None:
    original = Path.read_bytes

    def read_bytes(self):  # as chmod 000 does for a user other than root (the tests may run as root)
        if self == p:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


FAULTS = {
    "truncated": (lambda p, mp: _truncate(p), "truncated gzip file.*replace it"),
    "crc": (lambda p, mp: _bad_crc(p), "damaged gzip file.*CRC.*replace it"),
    "directory": (lambda p, mp: _directory(p), "is a directory, not the file.*remove it"),
    "permission": (_no_permission, "permission denied; make it readable"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_damaged_or_unreadable_file_is_one_line_naming_it(nowhere, monkeypatch, capsys, fault):
    write_set(nowhere / "d/mnist", gz=True)
    write_set(nowhere / "d/fashion-mnist", gz=True, seed=1)
    bad = nowhere / "d/mnist/train-images-idx3-ubyte.gz"
    damage, match = FAULTS[fault]
    damage(bad, monkeypatch)
    with pytest.raises(data.DataFileError, match=match) as info:
        data.load("mnist", nowhere / "d")
    assert str(bad) in str(info.value) and "\n" not in str(info.value)
    # a training run stops with that line and exit status 2, no traceback
    assert cli.main(["train", "--out", str(nowhere / "run"), "--data", str(nowhere / "d"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "Traceback" not in err
    # `vaetheory data` lists every file, and the other data set, regardless
    p = argparse.ArgumentParser()
    data.add_arguments(p)
    assert data.run(p.parse_args(["--data", str(nowhere / "d")])) == 2
    out = capsys.readouterr().out
    assert f"BAD: {bad}" in out and out.count("structure checked only") == 3 + 4


def test_an_unreadable_data_directory_does_not_stop_the_listing(nowhere, monkeypatch, capsys):
    write_set(nowhere / "d/fashion-mnist", gz=True)
    (nowhere / "d/mnist").mkdir(parents=True)
    original = Path.is_file

    def is_file(self):
        if self.parent == nowhere / "d/mnist":
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    p = argparse.ArgumentParser()
    data.add_arguments(p)
    assert data.run(p.parse_args(["--data", str(nowhere / "d")])) == 2
    out = capsys.readouterr().out
    assert f"BAD: {nowhere / 'd/mnist'}: permission denied" in out and out.count("structure checked only") == 4


@pytest.mark.parametrize("how", ["--data", "toml", "VAETHEORY_DATA"])
def test_a_named_location_without_the_data_is_an_error_not_a_fallback(nowhere, monkeypatch, capsys, how):
    write_set(nowhere / "home/.cache/vaetheory/mnist")  # the data is in a default location
    missing = nowhere / "nonexistent"
    args = ["train", "--out", str(nowhere / "run"), "--epochs", "1"]
    if how == "--data":
        args += ["--data", str(missing)]
    elif how == "toml":
        (nowhere / "c.toml").write_text(f'data = "{missing}"\n')
        args += ["--config", str(nowhere / "c.toml")]
    else:
        monkeypatch.setenv("VAETHEORY_DATA", str(missing))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err and "(does not exist)" in err
    assert not (nowhere / "run/checkpoint.npz").exists()


def test_a_fallback_to_another_location_is_printed(nowhere, capsys):
    write_set(nowhere / "system/mnist")
    ds = data.load_data(config.TrainConfig(dataset="mnist"))
    assert ds.checks["train_images"].path.parent == nowhere / "system/mnist"
    err = capsys.readouterr().err
    assert f"data: mnist: using {nowhere / 'system/mnist'}" in err
    assert str(nowhere / "home/.cache/vaetheory/mnist") in err


def test_fashion_mnist_copies_without_a_published_checksum_say_structure_checked_only(nowhere, capsys):
    write_set(nowhere / "d/fashion-mnist", gz=True)
    ds = data.load_data(config.TrainConfig(dataset="fashion-mnist", data=str(nowhere / "d")))
    assert {c.status for c in ds.checks.values()} == {data.STRUCTURE_ONLY}
    assert "structure checked only" in capsys.readouterr().err
    assert {f["check"] for f in data.file_record(ds).values()} == {"structure checked only"}
    # the official .gz files are verified by their published SHA-256 (TensorFlow Datasets' values)
    assert data.SHA256_GZ["fashion-mnist"]["train-images-idx3-ubyte"].startswith("08dc20ab1689590a")


def test_a_resume_on_other_data_is_refused_naming_the_file(nowhere):
    write_set(nowhere / "d/mnist")
    cfg = config.TrainConfig(dataset="mnist", data=str(nowhere / "d"))
    before = data.load_data(cfg)
    info = {"data": {"name": "mnist", "train": 7, "test": 3, "files": data.file_record(before)}}
    assert data.verify_same_data(info, data.load_data(cfg)) == "same data: 4 file checksums"
    (nowhere / "run").mkdir()
    (nowhere / "run/run.json").write_text(json.dumps(info))
    assert data.verify_run_data(nowhere / "run", data.load_data(cfg)) == "same data: 4 file checksums"
    arrays = write_set(nowhere / "d/mnist", seed=5)  # the files were replaced since the run started
    assert len(arrays["train-images-idx3-ubyte"]) == 7
    with pytest.raises(data.DataChangedError, match="train-images-idx3-ubyte.*new run"):
        data.verify_same_data(info, data.load_data(cfg))
    with pytest.raises(data.DataChangedError, match="train-images-idx3-ubyte.*new run"):
        data.verify_run_data(nowhere / "run", data.load_data(cfg))
    with pytest.raises(data.DataChangedError, match="3 images, now 2"):
        data.verify_same_data(info, data.load_data(config.TrainConfig(dataset="mnist", data=cfg.data, test_limit=2)))
    old = {"data": {"name": "mnist", "train": 7, "test": 3, "files": {"train_images": {"path": "x", "check": "v"}}}}
    assert "none recorded" in data.verify_same_data(old, data.load_data(cfg))


def test_train_resume_on_changed_data_is_refused(nowhere, capsys):
    """`vaetheory train --resume` on files replaced since the run started: one line, exit 2, nothing trained."""
    write_set(nowhere / "d/mnist", n_train=40, n_test=10)
    out = nowhere / "run"
    args = ["train", "--out", str(out), "--data", str(nowhere / "d"), "--device", "cpu", "--no-progress"]
    args += ["--hidden", "8", "--batch-size", "20"]
    assert cli.main([*args, "--epochs", "1"]) == 0
    rows = (out / "metrics.csv").read_text()
    write_set(nowhere / "d/mnist", n_train=40, n_test=10, seed=9)  # the files were replaced
    capsys.readouterr()
    assert cli.main([*args, "--epochs", "2", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "Traceback" not in err
    assert (out / "metrics.csv").read_text() == rows
