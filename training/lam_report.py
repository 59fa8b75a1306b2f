"""How much a latent-action model's codes say about the buttons the speedrun bot pressed: purity and
mutual information against chance, the "no-action" code, and the report as markdown. The buttons
are read for this report only, never for training."""

from __future__ import annotations

import numpy as np

from data.pairs import NO_BUTTON, FrameGroups
from envs.actions import ACTION_NAMES


def contingency(codes: np.ndarray, labels: np.ndarray, num_codes: int, num_labels: int) -> np.ndarray:
    """(num_codes, num_labels) counts of each (code, label)."""
    table = np.zeros((num_codes, num_labels), np.int64)
    np.add.at(table, (codes, labels), 1)
    return table


def purity(table: np.ndarray) -> float:
    """Fraction of pairs whose label is their code's most common label."""
    return float(table.max(axis=1).sum() / max(table.sum(), 1))


def mutual_information(table: np.ndarray) -> float:
    """I(code; label) in bits from a contingency table."""
    joint = table / max(table.sum(), 1)
    code_p, label_p = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log2(joint[nonzero] / (code_p @ label_p)[nonzero])))


def entropy_bits(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log2(p)))


def code_button_report(
    codes: np.ndarray,
    buttons: np.ndarray,
    num_codes: int,
    button_names: tuple[str, ...],
    seed: int = 0,
    shuffles: int = 200,
) -> dict:
    """How much the latent codes (N,) say about the buttons (N,; NO_BUTTON where unknown), against chance.

    Chance is the same codes shuffled over the pairs (`shuffles` times): it keeps the code
    and button histograms, so it is the purity / MI that code use alone would give.
    """
    known = buttons != NO_BUTTON
    table = contingency(codes[known], buttons[known], num_codes, len(button_names))
    rng = np.random.default_rng(seed)
    shuffled = [
        contingency(rng.permutation(codes[known]), buttons[known], num_codes, len(button_names))
        for _ in range(shuffles)
    ]
    button_counts = table.sum(axis=0)
    report = {
        "pairs_with_buttons": int(known.sum()),
        "purity": purity(table),
        "purity_chance": float(np.mean([purity(t) for t in shuffled])),
        "majority_button_fraction": float(button_counts.max() / max(button_counts.sum(), 1)),
        "mutual_information_bits": mutual_information(table),
        "mutual_information_chance_bits": float(np.mean([mutual_information(t) for t in shuffled])),
        "button_entropy_bits": entropy_bits(button_counts),
        "button_names": list(button_names),
        "table": table.tolist(),
    }
    report["normalized_mutual_information"] = report["mutual_information_bits"] / max(
        report["button_entropy_bits"], 1e-12
    )
    return report


def no_action_report(codes: np.ndarray, identical: np.ndarray, num_codes: int) -> dict:
    """Does one code take the identical pairs? The "no-action" code is the one most of them get."""
    if not identical.any():
        return {"identical_pairs": 0}
    no_action = int(np.bincount(codes[identical], minlength=num_codes).argmax())
    return {
        "identical_pairs": int(identical.sum()),
        "no_action_code": no_action,
        # Share of identical pairs that get the no-action code...
        "identical_to_no_action": float(np.mean(codes[identical] == no_action)),
        # ...and share of changing pairs that get it too (low when the code means "nothing happened").
        "changing_to_no_action": float(np.mean(codes[~identical] == no_action))
        if (~identical).any()
        else 0.0,
    }


def buttons_in_effect(buttons: np.ndarray, groups: FrameGroups, window: int) -> np.ndarray:
    """(G,) for each pair: the last button (not noop) logged in this step or the window - 1 steps
    before it in the same run, else noop. A walking press lasts 2 saved frames but the walk
    takes 4, so the logged button says noop while the player still moves; this label does not.
    buttons (G,) are the pairs' logged buttons, in the order of groups.indices."""
    noop = ACTION_NAMES.index("noop")
    data = groups.dataset
    first = groups.indices[:, 0]
    # Dataset index of a frame -> its pair's button (pairs start at every frame that has a successor).
    button_at = np.full(len(data), NO_BUTTON, np.int64)
    button_at[first] = buttons
    effect = buttons.copy()
    for lag in range(1, window):
        earlier = first - lag
        valid = (
            (earlier >= 0)
            & (data.run_id[np.maximum(earlier, 0)] == data.run_id[first])
            & (data.frame_index[np.maximum(earlier, 0)] == data.frame_index[first] - lag)
        )
        candidate = np.where(valid, button_at[np.maximum(earlier, 0)], NO_BUTTON)
        fill = (effect == noop) & (candidate != NO_BUTTON) & (candidate != noop)
        effect[fill] = candidate[fill]
    return effect


def report_markdown(report: dict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"{report['pairs']} held-out pairs, {report['codes_used']} of {report['vocab_size']} codes used "
        f"(pairs per code: {report['code_counts']}).",
        "",
        "| held-out prediction of x_{t+1} (MSE, [0, 1] pixels) | all pixels | changed pixels |",
        "|---|---|---|",
        f"| LAM with its own action (the hard code) | {report['eval_mse']:.5f} | "
        f"{report['eval_changed_mse']:.5f} |",
        f"| LAM with its action as in training (NSVQ: code plus noise) | "
        f"{report['eval_training_action_mse']:.5f} | "
        f"{report['eval_training_action_changed_mse']:.5f} |",
        f"| LAM with another pair's action | {report['eval_shuffled_action_mse']:.5f} | "
        f"{report['eval_shuffled_action_changed_mse']:.5f} |",
        f"| copy x_t | {report['eval_copy_mse']:.5f} | {report['eval_copy_changed_mse']:.5f} |",
    ]
    if "no_action_code" in report:
        lines += [
            "",
            f"No-action code: code {report['no_action_code']} takes "
            f"{report['identical_to_no_action']:.1%} of the "
            f"{report['identical_pairs']} identical pairs and {report['changing_to_no_action']:.1%} "
            "of the changing ones.",
        ]
    for key, label in (
        ("logged_button", "the button logged between the two frames"),
        ("button_in_effect", f"the button in effect (last press within {report['effect_window']} steps)"),
    ):
        part = report[key]
        names = part["button_names"]
        lines += [
            "",
            f"## Codes versus {label}",
            "",
            f"{part['pairs_with_buttons']} pairs with a known button. "
            "Chance = the same codes shuffled over the pairs.",
            "",
            "| metric | latent codes | chance |",
            "|---|---|---|",
            f"| purity | {part['purity']:.3f} | {part['purity_chance']:.3f} "
            f"(majority button {part['majority_button_fraction']:.3f}) |",
            f"| mutual information (bits) | {part['mutual_information_bits']:.3f} | "
            f"{part['mutual_information_chance_bits']:.3f} |",
            f"| MI / H(button) | {part['normalized_mutual_information']:.3f} | "
            f"{part['mutual_information_chance_bits'] / max(part['button_entropy_bits'], 1e-12):.3f} |",
            "",
            "| code | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        lines += [
            f"| {code} | " + " | ".join(str(n) for n in row) + " |"
            for code, row in enumerate(part["table"])
            if sum(row)
        ]
    return "\n".join(lines) + "\n"
