"""Where a learned Gaussian likelihood variance T goes to zero (Sec. 5, Sec. 7.2; docs/findings.md, Fig. 6).

Prints `mlpvae.experiments.diagnostics.learned_t_pixels` for trained `gaussian-learned` runs (their checkpoints):

    python validation/scripts/learned_T_pixels.py validation/results/figures/fig6_10_11_14_15/d100_learned_T/seed0
"""

from __future__ import annotations

import argparse
import sys

from mlpvae.experiments.diagnostics import learned_t_pixels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="+")
    p.add_argument("--images", type=int, default=2000, help="first test images (2000)")
    p.add_argument("--tiny", type=float, default=1e-5, help="a pixel has collapsed below this median T (1e-5)")
    args = p.parse_args(argv)
    for d in args.run_dir:
        r = learned_t_pixels(d, args.images, args.tiny)
        q = r["T_quantiles"]
        print(
            f"{d}: {r['collapsed_pixels']} of {r['pixels']} pixels with median T < {r['tiny']:g} "
            f"({r['images']} test images); T quantiles 5% {q['0.05']:.3g}, 50% {q['0.5']:.3g}, 95% {q['0.95']:.3g}"
        )
        if r["collapsed_pixels"]:
            print(
                f"  collapsed pixels are inked in at most {r['collapsed_inked_fraction_max']:.4f} of these images "
                f"(mean {r['collapsed_inked_fraction_mean']:.5f}); where blank they add "
                f"{r['collapsed_log_lik_where_blank']:.1f} nats per image; the other pixels' median T "
                f"{r['other_pixels_median_T']:.3g}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
