"""The code provenance written into every result: ``git_sha`` (mlpvae/training/runs.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from mlpvae.training.runs import git_sha

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git executable")


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    out = tmp_path / "validation" / "results" / "fig"
    out.mkdir(parents=True)
    (out / "plots.json").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    return tmp_path


def test_a_clean_tree_gives_the_commit(repo):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert git_sha(repo) == head


def test_a_changed_code_file_marks_the_commit_dirty(repo):
    (repo / "pkg" / "code.py").write_text("x = 2\n")
    assert git_sha(repo).endswith("-dirty")


def test_a_rewritten_result_file_is_not_code(repo):
    # redrawing one recorded figure rewrites its tracked plots.json; the next figure's redraw
    # runs the same committed code
    (repo / "validation" / "results" / "fig" / "plots.json").write_text('{"redrawn": true}\n')
    sha = git_sha(repo)
    assert sha is not None and not sha.endswith("-dirty")
    (repo / "pkg" / "code.py").write_text("x = 3\n")
    assert git_sha(repo).endswith("-dirty")


def test_outside_a_git_checkout_there_is_no_commit(tmp_path):
    assert git_sha(tmp_path) is None
