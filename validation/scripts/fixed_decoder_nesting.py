"""Where the fixed-decoder optima are local: per-image nesting of the families, and the summaries on the
images where they nest (Not in the paper; docs/fixed_decoder.md).

Usage: python validation/scripts/fixed_decoder_nesting.py DIR...  (each DIR holding fixed_decoder_per_image.npz,
written by `vaetheory analyze RUN --fixed-decoder-images N`); prints Markdown and writes DIR/nesting.json.

Each family's optimum is a certified local maximum of its own objective; on a multimodal posterior two
families (or the encoder) can sit in different modes, and then full >= diagonal >= shared Sigma need not
hold per image.  This counts those images and repeats the paired bootstrap summaries on the rest.
"""

import json
import sys
from pathlib import Path

import numpy as np

from mlpvae.experiments.intervals import paired_bootstrap

SLACK = 1e-3  # nats: above the quadrature's resolution change at an optimum (fixed_decoder.json, halved)


def main(dirs) -> int:
    for d in map(Path, dirs):
        p = np.load(d / "fixed_decoder_per_image.npz")
        enc, diag, const, full, lp = (
            p[k] for k in ("elbo_encoder", "elbo_diagonal", "elbo_constant", "elbo_full", "log_px")
        )
        bad = {
            "full_below_diagonal": full < diag - SLACK,
            "diagonal_below_shared": diag < const - SLACK,
            "diagonal_below_encoder": diag < enc - SLACK,
        }
        ok = ~np.any(list(bad.values()), axis=0)
        rng = np.random.default_rng(0)
        pairs = {
            "amortization_gap": (diag, enc),
            "gap_after_diagonal": (lp, diag),
            "gap_after_full": (lp, full),
            "full_over_diagonal": (full, diag),
            "constant_cost": (diag, const),
            "eq18_at_diagonal": (p["eq18_at_diagonal"], np.zeros_like(lp)),
            "gap_after_diagonal_minus_eq18": (lp - diag, p["eq18_at_diagonal"]),
            "eq22": (p["eq22_terms"], np.zeros_like(lp)),
            "constant_cost_minus_eq22": (diag - const, p["eq22_terms"]),
        }
        out = {
            "images": int(len(lp)),
            "slack": SLACK,
            **{k: int(v.sum()) for k, v in bad.items()},
            "nested": int(ok.sum()),
            "on_nested_images": {k: paired_bootstrap(a[ok], b[ok], rng) for k, (a, b) in pairs.items()},
            "medians_all_images": {k: float(np.median(a - b)) for k, (a, b) in pairs.items()},
        }
        (d / "nesting.json").write_text(json.dumps(out, indent=2) + "\n")
        print(f"## {d}\n")
        print(", ".join(f"{k}: {out[k]}" for k in bad) + f"; nested on {out['nested']} of {out['images']} images\n")
        print("| quantity (nats) | mean on nested images [95% paired bootstrap] | median, all images |")
        print("|---|---|---|")
        for k, r in out["on_nested_images"].items():
            print(f"| {k} | {r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] | {out['medians_all_images'][k]:+.3f} |")
        print(f"\nwrote {d / 'nesting.json'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
