"""A figure's summary: final test ELBO mean +- std over seeds per method, as JSON and as Markdown (Sec. 7).

:func:`summarize` collects each method's runs (status, final epoch, test ELBO
columns, wall time, devices, targets); :func:`summary_markdown` renders it as
``summary.md``, the paper's numbers beside ours.
"""

from __future__ import annotations

from pathlib import Path

from mlpvae.experiments.figure_runs import final_metrics
from mlpvae.experiments.figure_schema import Figure, run_dir, seeds_of
from mlpvae.experiments.report import mean_std
from mlpvae.experiments.run_queue import read_json

COLUMN_LABELS = {
    "test_elbo": "prior N(0, I)",
    "test_elbo_s2_train": "S^2 from train set",
    "test_elbo_s2_test": "S^2 from test set",
}


def summarize(fig: Figure, root: Path, override: list[int] | None = None) -> dict:
    """Final test ELBO mean +- std over seeds per method, with targets, wall time and device (Sec. 7)."""
    rows = []
    for method in fig.methods.values():
        finals, walls, devices, targets, statuses, epochs = [], [], set(), set(), [], []
        seeds = seeds_of(fig, method, override)
        for seed in seeds:
            d = run_dir(root, method, seed)
            info = read_json(d / "run.json") or {}
            statuses.append(info.get("status", "missing"))
            # a stack's wall time is in each of its K run.json files: count it once
            walls.append(float(info.get("wall_seconds", 0.0)) / int(info.get("stacked", {}).get("models", 1)))
            if info.get("device"):
                devices.add(info["device"])
            if info.get("targets"):
                targets.add(f"{info.get('data', {}).get('name', '?')}: {info['targets']}")
            fm = final_metrics(d)
            if fm:
                finals.append(fm)
                epochs.append(fm["epoch"])
        cols = sorted({c for fm in finals for c in fm if c.startswith("test_elbo")})
        rows.append(
            {
                "method": method.name,
                "label": method.label,
                "shared": method.shared,
                "settings": method.settings,
                "seeds": seeds,
                "status": statuses,
                "final_epoch": epochs,
                "test_elbo": {c: mean_std([fm[c] for fm in finals if c in fm]) for c in cols},
                "train_objective": mean_std([fm["train_objective"] for fm in finals]),
                "paper": method.paper,
                "targets": sorted(targets),
                "wall_seconds": sum(walls),
                "devices": sorted(devices),
            }
        )
    return {
        "figure": fig.name,
        "title": fig.title,
        "paper": fig.paper,
        "note": fig.note,
        "units": "nats per image, summed over pixels; test set; final evaluated epoch; mean +- sample std over seeds",
        "methods": rows,
    }


def _fmt(ms: dict) -> str:
    """``mean +- std (n=N)`` of a :func:`~mlpvae.experiments.report.mean_std` result, or "not yet run"."""
    if ms["mean"] is None:
        return "not yet run"
    return f"{ms['mean']:.2f}" + (f" +- {ms['std']:.2f}" if ms["std"] is not None else "") + f" (n={ms['n']})"


def summary_markdown(summary: dict) -> str:
    """``summary.md``: the summary as a Markdown table (Not in the paper)."""
    lines = [f"# {summary['title']}", "", f"Paper: {summary['paper']}.  Units: {summary['units']}.", ""]
    if summary.get("note"):
        lines += [summary["note"], ""]
    total = sum(r["wall_seconds"] for r in summary["methods"] if not r["shared"])
    lines += [
        f"Training wall time of this figure's own runs: {total / 3600:.2f} h "
        f"(shared runs are counted in their own figure).",
        "",
    ]
    lines += [
        "| method | test ELBO (ours) | paper | epochs | status | targets | wall time (all seeds) | device |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in summary["methods"]:
        if r["test_elbo"]:
            elbo = "<br>".join(f"{COLUMN_LABELS.get(c, c)}: {_fmt(ms)}" for c, ms in r["test_elbo"].items())
        elif set(r["status"]) == {"missing"}:
            elbo = "not yet run"
        else:
            elbo = "no evaluated epoch"  # e.g. diverged in its first epoch
        status = ", ".join(f"{s}x{r['status'].count(s)}" for s in sorted(set(r["status"])))
        epochs = ", ".join(str(e) for e in sorted(set(r["final_epoch"]))) or "-"
        lines.append(
            f"| {r['label']}{' (shared: ' + r['shared'] + ')' if r['shared'] else ''} | {elbo} | "
            f"{r['paper'] or '-'} | {epochs} | {status} | {'; '.join(r['targets']) or '-'} | "
            f"{r['wall_seconds'] / 60:.1f} min | {'; '.join(r['devices']) or '-'} |"
        )
    return "\n".join(lines) + "\n"
