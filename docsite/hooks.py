"""mkdocs hooks of the documentation site (mkdocs.yml): what the site holds beyond docs/.

The site is built from files that live where the project keeps them, not copied into docs/:

- the home page is README.md;
- the five validation notebooks (validation/notebooks/*.py) are pages, executed by mkdocs-jupyter
  on their small settings (VAETHEORY_NB_SMALL=1, set here for the kernel it starts);
- every recorded markdown file and PNG under validation/results/ is a page or an image at its own
  path in the site, and each recorded page ends with the figures of its folder and links to the
  records below it, so that every committed figure is shown on some page;
- validation/README.md is a page;
- the API reference is one page per module of vaetheory and mlpvae (mkdocstrings), listed in the
  navigation in place of the entry named API_NAV;
- in docs/equations.md each function name links to its entry in the API reference, so that a
  function of the table missing from the reference fails ``mkdocs build --strict``.

Links from docs/*.md to ``../validation/...`` (right when reading the files in the repository) are
rewritten to the same path in the site.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vaetheory", "mlpvae")
RESULTS = "validation/results"
NOTEBOOKS = "validation/notebooks"
API_NAV = "API reference"
RECORDS_NAV = "Recorded results"
# Record pages named in the navigation, in this order; every other record page is linked from the
# page of the folder above it.
RECORD_PAGES = (
    "verify/report.md",
    "logdet/bench_n1024.md",
    "logdet/bench_n4096.md",
    "figures/fig4_2d/summary.md",
    "figures/fig4_100d/summary.md",
    "figures/fig2_3_5_9/summary.md",
    "figures/fig6_10_11_14_15/summary.md",
    "figures/fig8/summary.md",
    "figures/fig12_13/summary.md",
    "figures/fashion_mnist/summary.md",
    "figures-h200/fig4_2d/summary.md",
    "figures-h200/fig8/summary.md",
    "figures-h200/fig6_10_11_14_15_cut/README.md",
    "analysis/README.md",
)
RECORD_PATH = re.compile(r"`(?:\.\./)?(validation/results/[^`\s]*)`")
DOC_PATH = re.compile(r"`(?:\.\./)?docs/([\w-]+\.md)`")
FOLDER_PAGES = ("summary.md", "report.md", "README.md", "analysis.md")
FUNCTION_IN_TABLE = re.compile(r"^\| ([^|]+) \| `((?:vaetheory|mlpvae)\.[\w.]+)` \|", re.MULTILINE)


def modules() -> list[str]:
    """Every module of the two packages, as dotted names, packages before their modules."""
    names = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names, key=lambda name: name.split("."))


def api_page(module: str) -> str:
    return "api/" + module.replace(".", "/") + ".md"


def on_config(config):
    # the kernel that mkdocs-jupyter starts inherits this process's environment
    os.environ["VAETHEORY_NB_SMALL"] = "1"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # CI sets MPLBACKEND=Agg, which would keep the notebooks' figures out of their outputs
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    nav = [expand_nav(entry) for entry in config["nav"]]
    # a page added to docs/ later is listed too, before the API reference, under its own title
    listed = set(nav_files(nav))
    extra = [{first_heading(p): p.name} for p in sorted((ROOT / "docs").glob("*.md")) if p.name not in listed]
    at = next((i for i, e in enumerate(nav) if isinstance(e, dict) and API_NAV in e), len(nav))
    config["nav"] = nav[:at] + extra + nav[at:]
    return config


def nav_files(entry):
    if isinstance(entry, str):
        yield entry
    elif isinstance(entry, dict):
        for value in entry.values():
            yield from nav_files(value)
    elif isinstance(entry, list):
        for value in entry:
            yield from nav_files(value)


def first_heading(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].replace("`", "").strip()
    return path.stem


def expand_nav(entry):
    if isinstance(entry, dict) and API_NAV in entry:
        groups: dict[str, list] = {}
        for module in modules():
            top = ".".join(module.split(".")[:2])
            groups.setdefault(top, []).append({module: api_page(module)})
        return {API_NAV: [{top: pages} if len(pages) > 1 else pages[0] for top, pages in groups.items()]}
    if isinstance(entry, dict) and RECORDS_NAV in entry:
        named = [ROOT / RESULTS / page for page in RECORD_PAGES]
        orphans = [p for p in record_files() if p.suffix == ".md" and p not in named and nearest_record(p) is None]
        return {RECORDS_NAV: [p.relative_to(ROOT).as_posix() for p in named + orphans]}
    if isinstance(entry, dict):
        return {key: expand_nav(value) for key, value in entry.items()}
    if isinstance(entry, list):
        return [expand_nav(value) for value in entry]
    return entry


def record_files() -> list[Path]:
    return sorted(p for p in (ROOT / RESULTS).rglob("*") if p.suffix in (".md", ".png") and p.is_file())


@event_priority(50)  # before mkdocs-jupyter, which turns the notebook files into pages
def on_files(files: Files, config) -> Files:
    def add(path: Path):
        # at its path in the repository (a File of its own, not File.generated: mkdocs-jupyter
        # reads a notebook from the source folder and path it wraps)
        files.append(
            File(path.relative_to(ROOT).as_posix(), str(ROOT), config["site_dir"], config["use_directory_urls"])
        )

    files.append(File.generated(config, "index.md", abs_src_path=str(ROOT / "README.md")))
    add(ROOT / "validation" / "README.md")
    for path in sorted((ROOT / NOTEBOOKS).glob("[0-9][0-9]_*.py")):
        add(path)
    for path in record_files():
        add(path)
    for module in modules():
        files.append(File.generated(config, api_page(module), content=f"::: {module}\n"))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    src = page.file.src_uri
    if src.startswith(RESULTS + "/") and src.endswith(".md"):
        return markdown + record_index(ROOT / src, markdown)
    if src == "equations.md":
        # `vaetheory.optimal.optimal_prior` -> a link to its entry in the API reference
        return FUNCTION_IN_TABLE.sub(lambda m: f"| {m[1]} | [`{m[2]}`][{m[2]}] |", markdown)
    if src == "index.md":
        # README's title would take the anchor "vaetheory", which is the package's entry in the API
        # reference; README's own links are relative to the repository root, the site's pages to docs/
        title, _, rest = markdown.partition("\n")
        markdown = f"{title} {{ #home }}\n{rest}".replace("](docs/", "](")
    return link_records(markdown.replace("](../validation/", "](validation/"), Path(src).parent)


def link_records(markdown: str, folder: Path) -> str:
    """A recorded file or folder (`validation/results/...`) or a doc (`docs/...md`) named in code links to its page.

    Outside fenced code blocks; ``folder`` is the page's own, in the site.
    """
    out, fenced = [], False
    for line in markdown.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced:
            line = RECORD_PATH.sub(lambda m: link_record(m, folder), line)
            line = DOC_PATH.sub(lambda m: link_doc(m, folder), line)
        out.append(line)
    return "\n".join(out)


def link_doc(m: re.Match, folder: Path) -> str:
    if not (ROOT / "docs" / m[1]).is_file():
        return m[0]
    return f"[{m[0]}]({Path(os.path.relpath(ROOT / m[1], ROOT / folder)).as_posix()})"


def link_record(m: re.Match, folder: Path) -> str:
    path = ROOT / m[1]
    if path.is_dir():
        pages = [path / name for name in FOLDER_PAGES if (path / name).is_file()]
        target = pages[0] if pages else None
    else:
        target = path if path.suffix in (".md", ".png") and path.is_file() else None
    if target is None:
        return m[0]
    return f"[{m[0]}]({Path(os.path.relpath(target, ROOT / folder)).as_posix()})"


def record_index(page: Path, markdown: str) -> str:
    """The figures of a recorded page's folder not already shown on it, and links to the records below it."""
    folder = page.parent
    lines = []
    pngs = [p for p in sorted(folder.glob("*.png")) if f"]({p.name})" not in markdown]
    if pngs:
        lines += ["", "## Figures in this folder", ""]
        for p in pngs:
            lines += [f"**`{p.name}`**", "", f"![{p.stem}]({p.name})", ""]
    below = [
        p
        for p in record_files()
        if p.suffix == ".md" and p.parent != folder and folder in p.parents and nearest_record(p) == page
    ]
    if below:
        lines += ["", "## Records in the folders below", ""]
        lines += [f"- [`{p.relative_to(folder).as_posix()}`]({p.relative_to(folder).as_posix()})" for p in below]
    return "\n".join(lines) + "\n" if lines else ""


def nearest_record(page: Path) -> Path | None:
    """The recorded page that links to a recorded page: the first .md found in the folders above its own."""
    for parent in page.parent.parents:
        if parent == ROOT / "validation":
            return None
        found = sorted(parent.glob("*.md"))
        if found:
            return found[0]
    return None
