"""Do the latent actions mean anything? LAM codes against the speedrun bot's buttons.

Trains train_lam.py at CPU size on the speedrun runs with one run held out, once per
quantizer (NSVQ and FSQ, 8 codes each), and compares the held-out codes with the logged
buttons (used for this report only, never in training): purity and mutual information
against chance, and whether a "no-action" code takes the identical pairs.

    uv run python bench/lam_purity.py                 # ~10 minutes on 2 busy CPU cores

Writes bench/results/lam_purity.md; each run's lam.pkl and full report stay in --out-dir.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

import train_lam
from training.io import atomic_write


@dataclass
class Args:
    data: Path = Path("data/speedruns/frames")
    """Frames directory: <data>/<run>/*.png with metadata.json (data/make_speedruns.py)."""
    quantizers: tuple[Literal["nsvq", "fsq", "vq"], ...] = ("nsvq", "fsq")
    """Quantizers to compare (each with 8 codes: NSVQ/VQ codebook 8, FSQ levels 2 2 2)."""
    steps: int = 800
    """Training steps per quantizer."""
    batch_size: int = 16
    """Pairs per step."""
    pool: int = 4
    """Average-pool frames by this factor (4: the model sees 36x40, affordable on CPU)."""
    channels: tuple[int, ...] = (32, 64)
    """Conv widths of the IDM and forward model."""
    holdout_run: str = "-1"
    """Held-out run (name or index; -1 = last)."""
    seed: int = 0
    """Seed of every run."""
    out_dir: Path = Path("checkpoints/bench_lam")
    """Each quantizer's run goes to <out-dir>/<quantizer>."""
    table: Path = Path("bench/results/lam_purity.md")
    """Markdown summary to write."""


def main(args: Args) -> dict:
    if not args.quantizers:
        raise train_lam.fail("--quantizers: name at least one of nsvq, fsq, vq")
    reports = {}
    for kind in args.quantizers:
        lam_args = train_lam.Args(
            data=args.data,
            out_dir=args.out_dir / kind,
            steps=args.steps,
            batch_size=args.batch_size,
            quantizer=kind,
            pool=args.pool,
            channels=args.channels,
            holdout_run=args.holdout_run,
            seed=args.seed,
            log_every=max(args.steps // 4, 1),
        )
        (lam_args.out_dir / "metrics.jsonl").unlink(missing_ok=True)
        reports[kind] = train_lam.main(lam_args)
        settings = dataclasses.asdict(lam_args)

    first = next(iter(reports.values()))
    lines = [
        "# Latent actions versus the speedrun bot's buttons",
        "",
        f"`uv run python bench/lam_purity.py --steps {args.steps}`: train_lam.py with {args.steps} steps x "
        f"{args.batch_size} pairs, "
        f"frames pooled {args.pool}x to {144 // args.pool}x{160 // args.pool}, channels {args.channels}, "
        f"change weight {settings['change_weight']}, "
        f"identical training pairs kept {settings['keep_identical_fraction']:.0%}. "
        f"Evaluated on the {first['pairs']} pairs of the {first['eval_on']} (never trained on). "
        "Buttons are read only for this report. Chance = the same codes shuffled over the pairs "
        "(it keeps both histograms); the majority button is what one code for everything would score.",
        "",
        '"Logged button" is the press the bot logged between the two frames; "button in effect" carries a '
        f"press over the next {settings['effect_window'] - 1} saved frames "
        "(a walking press lasts 2 saved frames, the walk 4).",
        "",
        "| quantizer | codes used | label | purity | chance purity | majority | MI (bits) | chance MI "
        "| MI / H(button) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, report in reports.items():
        for key, label in (("logged_button", "logged button"), ("button_in_effect", "button in effect")):
            part = report[key]
            lines.append(
                f"| {kind} | {report['codes_used']}/{report['vocab_size']} | {label} | "
                f"{part['purity']:.3f} | {part['purity_chance']:.3f} | "
                f"{part['majority_button_fraction']:.3f} | "
                f"{part['mutual_information_bits']:.3f} | {part['mutual_information_chance_bits']:.3f} | "
                f"{part['normalized_mutual_information']:.3f} |"
            )
    lines += [
        "",
        "Held-out changed-pixel MSE of the predicted x_{t+1}: with the pair's own code, with its action as "
        "training sees it (NSVQ: the code plus noise of the quantization error's size, which keeps part of "
        "the continuous IDM output), with another pair's code, and of copying x_t.",
        "",
        "| quantizer | no-action code | identical pairs on it | changing pairs on it | own code "
        "| action as in training | another pair's code | copy x_t |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, report in reports.items():
        no_action = (
            (
                f"{report['no_action_code']} | {report['identical_to_no_action']:.1%} of "
                f"{report['identical_pairs']} | "
                f"{report['changing_to_no_action']:.1%}"
            )
            if "no_action_code" in report
            else "- | - | -"
        )
        lines.append(
            f"| {kind} | {no_action} | {report['eval_changed_mse']:.5f} | "
            f"{report['eval_training_action_changed_mse']:.5f} | "
            f"{report['eval_shuffled_action_changed_mse']:.5f} | {report['eval_copy_changed_mse']:.5f} |"
        )
    lines += ["", f"Full reports (per-code button tables): `{args.out_dir}/<quantizer>/lam_report.md`.", ""]
    for kind in reports:
        lines += [
            f"## {kind}: codes per button",
            "",
            *(args.out_dir / kind / "lam_report.md").read_text().split("\n")[1:],
        ]
    atomic_write(args.table, "\n".join(lines))
    print(f"wrote {args.table}")
    return reports


if __name__ == "__main__":
    main(tyro.cli(Args))
