"""validation/scripts/check_site.py: the link and anchor check finds what is broken and nothing else."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_site", ROOT / "validation/scripts/check_site.py")
check_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_site)


def _page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>")


def test_broken_links_names_missing_files_and_anchors_only(tmp_path):
    _page(tmp_path / "index.html", '<h1 id="top">t</h1><a href="api/mod.html#mod.f">f</a><a href="#top">up</a>')
    _page(
        tmp_path / "api" / "mod.html",
        '<h2 id="mod.f">f</h2><a href="../index.html">home</a><a href="../index.html#gone">x</a>'
        '<a href="missing.html">m</a><a href="https://example.org/a.html">out</a><a href="../../outside.html">o</a>',
    )
    _page(tmp_path / "404.html", '<a href="/api/mod.html">absolute, served only</a>')
    broken = check_site.broken_links(tmp_path)
    assert sorted(broken) == sorted(
        [
            "api/mod.html: link '../index.html#gone': no anchor #gone in the target",
            "api/mod.html: link 'missing.html' names no file of the site",
            "api/mod.html: link '../../outside.html' names no file of the site",
        ]
    )


def test_percent_encoded_links_and_anchors_resolve(tmp_path):
    _page(tmp_path / "a b.html", '<p id="x y">p</p>')
    _page(tmp_path / "index.html", '<a href="a%20b.html#x%20y">p</a>')
    assert check_site.broken_links(tmp_path) == []


def test_unreachable_names_pages_no_link_leads_to(tmp_path):
    _page(tmp_path / "index.html", '<a href="a/one.html">1</a>')
    _page(tmp_path / "a" / "one.html", '<a href="../b/two.html#x">2</a>')
    _page(tmp_path / "b" / "two.html", '<p id="x">x</p>')
    _page(tmp_path / "b" / "lost.html", "<p>nobody links here</p>")
    assert check_site.unreachable(tmp_path) == ["b/lost.html: no link leads to it"]
