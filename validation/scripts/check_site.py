"""Does the built documentation site render?  Every page of site/ in headless Chromium, from file://.

    mkdocs build --strict && python validation/scripts/check_site.py site --screenshots /tmp/shots

For every HTML page of the built folder (opened as a user opens it, from the file system):
every ``<img>`` has loaded (``naturalWidth > 0`` in the browser), every internal link names a file
of the site and, where it has one, an anchor of that file, every page is reached by links from
index.html, and no local resource failed to load.
Across the site, every PNG under validation/results/ is shown on some page.  Exit status 0 when all
of that holds; otherwise each failure is listed.

Needs the ``playwright`` package (``pip install playwright``) and a Chromium on the machine
(Debian: ``apt-get install chromium``); ``playwright install`` is not needed: the script drives the
system's browser (``--chromium``, default /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# pages worth a look by eye, when --screenshots is given: (file name, element scrolled to or None)
SCREENSHOTS = {
    "index.html": ("home.png", None),
    "findings.html": ("findings_figure.png", "img"),
    "validation/notebooks/02_elbo_equals_log_evidence.html": ("notebook_02_plot.png", ".jp-OutputArea-output img"),
    "validation/results/figures/fig4_2d/summary.html": ("fig4_2d_figure.png", "img"),
    "api/vaetheory/optimal.html": ("api_optimal.png", "[id='vaetheory.optimal.optimal_decoder']"),
    "equations.html": ("equations.png", None),
}


class Anchors(HTMLParser):
    """The ids and names of a page (link targets) and the hrefs of its links."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])


def parse(path: Path) -> Anchors:
    parser = Anchors()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return parser


def site_pages(site: Path) -> list[Path]:
    """The pages a reader opens: all but 404.html, which only a web server shows, with links from the server's root."""
    return sorted(p for p in site.rglob("*.html") if p.relative_to(site).as_posix() != "404.html")


def broken_links(site: Path) -> list[str]:
    """Every internal link of every page that names no file of the site, or no anchor of it."""
    pages = site_pages(site)
    parsed = {p: parse(p) for p in pages}
    broken = []
    for page, anchors in parsed.items():
        for href in anchors.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
                continue  # outside the site: not this check's business
            target_url, fragment = urldefrag(href)
            target = page if not target_url else (page.parent / unquote(target_url)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if site.resolve() not in [target.resolve(), *target.resolve().parents] or not target.is_file():
                broken.append(f"{page.relative_to(site)}: link {href!r} names no file of the site")
                continue
            if fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else parse(target).ids
                if unquote(fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: link {href!r}: no anchor #{fragment} in the target")
    return broken


def unreachable(site: Path) -> list[str]:
    """The pages that no chain of links from index.html reaches (a page only a search would find)."""
    pages = {p.resolve(): p for p in site_pages(site)}
    seen, todo = set(), [(site / "index.html").resolve()]
    while todo:
        page = todo.pop()
        if page in seen or page not in pages:
            continue
        seen.add(page)
        for href in parse(page).hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or not parts.path.endswith(".html"):
                continue
            todo.append((page.parent / unquote(parts.path)).resolve())
    return [f"{pages[p].relative_to(site)}: no link leads to it" for p in sorted(pages) if p not in seen]


def render(site: Path, chromium: str, shots: Path | None) -> tuple[list[str], set[str], int]:
    """Load every page; return the failures, the site paths of the images shown, and the image count."""
    from playwright.sync_api import sync_playwright

    failures: list[str] = []
    shown: set[str] = set()
    images = 0
    pages = site_pages(site)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        failed: list[str] = []
        tab.on("requestfailed", lambda req: failed.append((req.url, req.failure or "")))
        for n, page in enumerate(pages, 1):
            failed.clear()
            rel = page.relative_to(site).as_posix()
            tab.goto(page.resolve().as_uri(), wait_until="load")
            imgs = tab.eval_on_selector_all(
                "img", "els => els.map(e => [e.currentSrc || e.src, e.complete, e.naturalWidth])"
            )
            for src, complete, width in imgs:
                images += 1
                if not (complete and width > 0):
                    failures.append(f"{rel}: image did not load: {src[:120]}")
                elif src.startswith("file://"):
                    shown.add(Path(unquote(urlsplit(src).path)).resolve().relative_to(site.resolve()).as_posix())
            for url, error in failed:
                # a request still pending when the next page is opened is aborted (the favicon, often):
                # a failure only when the file is missing or the error is another
                missing = not Path(unquote(urlsplit(url).path)).is_file()
                if url.startswith("file://") and (missing or "ERR_ABORTED" not in error):
                    failures.append(f"{rel}: failed to load {url} ({error or 'no such file'})")
            if shots is not None and rel in SCREENSHOTS:
                name, selector = SCREENSHOTS[rel]
                if selector is not None:
                    tab.locator(selector).first.scroll_into_view_if_needed(timeout=10_000)
                tab.screenshot(path=str(shots / name), full_page=False)
            if n % 50 == 0:
                print(f"  {n}/{len(pages)} pages loaded", flush=True)
        browser.close()
    return failures, shown, images


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("site", nargs="?", default=str(ROOT / "site"), help="the built folder (site/)")
    p.add_argument("--chromium", default="/usr/bin/chromium", help="the browser to drive (/usr/bin/chromium)")
    p.add_argument("--screenshots", help="folder for screenshots of a few pages (not written without it)")
    args = p.parse_args(argv)
    site = Path(args.site)
    if not (site / "index.html").is_file():
        raise SystemExit(f"{site} has no index.html: build the site first (mkdocs build --strict)")
    if not Path(args.chromium).is_file():
        raise SystemExit(f"no browser at {args.chromium} (Debian: apt-get install chromium)")
    shots = Path(args.screenshots) if args.screenshots else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    pages = site_pages(site)
    failures = broken_links(site) + unreachable(site)
    render_failures, shown, images = render(site, args.chromium, shots)
    failures += render_failures
    recorded = {q.relative_to(ROOT).as_posix() for q in (ROOT / "validation" / "results").rglob("*.png")}
    failures += [f"{png}: shown on no page" for png in sorted(recorded - shown)]
    print(
        f"{len(pages)} pages, {images} images ({len(recorded & shown)} of the {len(recorded)} recorded PNGs "
        f"among them), links and anchors checked in {time.perf_counter() - start:.0f} s: "
        + ("all load" if not failures else f"{len(failures)} failures")
    )
    for failure in failures:
        print("  " + failure)
    if shots is not None:
        print("wrote " + ", ".join(str(shots / name) for name, _ in SCREENSHOTS.values()))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
