"""The tables of ``fastadapt text fit``: per shot count and method, the mean and Student-t interval over seeds,
the chosen settings, the out-of-scope scores and the paired comparison with the logistic head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..evaluation import mean_ci95_t, paired_comparison


def summarise(runs: dict[int, dict[int, dict[str, dict[str, Any]]]], methods: Sequence[str]) -> dict[str, Any]:
    """Per shot count and method: accuracy and macro-F1 (mean, Student-t ci95 over seeds, per seed), the chosen
    settings per seed, the out-of-scope scores, and the paired comparison with the logistic head over seeds."""
    table: dict[str, Any] = {}
    for shots, by_seed in runs.items():
        seeds = sorted(by_seed)
        rows: dict[str, Any] = {}
        for method in [*methods, "selected"]:
            present = [by_seed[s][method] for s in seeds if method in by_seed[s]]
            if not present:
                continue
            row: dict[str, Any] = {}
            for metric in ("accuracy", "macro_f1"):
                values = [r[metric] for r in present]
                mean, ci = mean_ci95_t(values)
                row[metric] = {"mean": mean, "ci95": ci, "per_seed": values}
            row["seconds"] = float(np.mean([r["seconds"] for r in present]))
            if method == "selected":
                row["method_per_seed"] = [r["method"] for r in present]
            if all("validation_accuracy" in r for r in present):
                row["validation_accuracy_per_seed"] = [r["validation_accuracy"] for r in present]
            if method != "selected" and "selection" in present[0] and present[0]["selection"]["chosen"]:
                row["chosen_per_seed"] = [r["selection"]["chosen"] for r in present]
            if method != "selected" and "effective_inner_lr" in present[0]:
                row["effective_inner_lr_per_seed"] = [r["effective_inner_lr"] for r in present]
            if "oos" in present[0]:
                row["oos"] = {k: float(np.mean([r["oos"][k] for r in present])) for k in present[0]["oos"]}
            if method != "logistic" and "logistic" in by_seed[seeds[0]] and len(present) == len(seeds):
                row["vs_logistic"] = versus([by_seed[s]["logistic"] for s in seeds], present)
            rows[method] = row
        table[str(shots)] = rows
    return table


def versus(base: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The paired difference from the logistic head: over the seeds' draws (sign-flip test, exact; its smallest
    p-value is 2 / 2**seeds) and, when the rows hold per-utterance outcomes, over the test utterances (each
    utterance's accuracy averaged over the seeds; sign-flip test on 10,000 random patterns)."""
    out: dict[str, Any] = {}
    if len(rows) >= 2:
        comparison = paired_comparison([r["accuracy"] for r in rows], [b["accuracy"] for b in base])
        out |= {"difference": comparison.difference, "p_value": comparison.p_value}
        out["min_p_value"] = min(1.0, 2.0 / 2 ** len(rows))
    if all("correct" in r for r in [*rows, *base]):
        mine = np.mean([r["correct"] for r in rows], axis=0)
        theirs = np.mean([b["correct"] for b in base], axis=0)
        comparison = paired_comparison(mine, theirs)
        out |= {"utterances": len(mine), "utterance_p_value": comparison.p_value}
        out.setdefault("difference", comparison.difference)
    return out


def markdown(table: dict[str, Any]) -> str:
    lines = []
    for shots, rows in table.items():
        lines += [
            f"{shots}-shot",
            "",
            "| method | accuracy % | macro-F1 % | vs logistic | chosen | s / seed |",
            "|---|---|---|---|---|---|",
        ]
        for method, row in rows.items():
            acc, f1 = row["accuracy"], row["macro_f1"]
            vs = row.get("vs_logistic")
            versus = f"{100 * vs['difference']:+.2f}" if vs else ""
            if vs and "p_value" in vs:
                versus += f", p={vs['p_value']:.3f}"
            if vs and "utterance_p_value" in vs:
                versus += f" (utterances p={vs['utterance_p_value']:.3f})"
            chosen = ", ".join(row.get("method_per_seed", [])) or "; ".join(
                " ".join(f"{k}={v}" for k, v in c.items()) for c in row.get("chosen_per_seed", [])
            )
            lines.append(
                f"| {method} | {100 * acc['mean']:.2f} ± {100 * acc['ci95']:.2f} | {100 * f1['mean']:.2f} ± "
                f"{100 * f1['ci95']:.2f} | {versus} | {chosen} | {row['seconds']:.1f} |"
            )
            if "oos" in row:
                o = {k: f"{100 * v:.2f}" for k, v in row["oos"].items() if k != "threshold"}
                cells = [f"in-scope {o['in_scope_accuracy']}", f"recall {o['oos_recall']}"]
                cells += [f"precision {o['oos_precision']}", f"F1 {o['oos_f1']}"]
                lines.append("|   out-of-scope | " + " | ".join(cells) + " | |")
        lines.append("")
    return "\n".join(lines)
