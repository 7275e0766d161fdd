"""Out-of-scope detection by a confidence threshold (Larson et al. 2019, arXiv:1909.02027): an utterance whose
largest class probability is below the threshold is out of scope. The threshold is chosen on validation
utterances, in scope and out of scope, and scored on the test ones."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Probabilities = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


def _balanced(
    confidence_in: npt.NDArray[np.float64],
    correct: npt.NDArray[np.bool_],
    confidence_oos: npt.NDArray[np.float64],
    threshold: float,
) -> float:
    in_scope = float((correct & (confidence_in >= threshold)).mean())
    recall = float((confidence_oos < threshold).mean())
    return (in_scope + recall) / 2


def choose_threshold(p_in: Probabilities, y_in: Labels, p_oos: Probabilities) -> float:
    """The threshold that maximises the mean of in-scope accuracy (an in-scope utterance counts only when it is
    kept and classified right) and out-of-scope recall on validation probabilities (``p_in`` of in-scope
    utterances with labels ``y_in``; ``p_oos`` of out-of-scope ones). The mean weighs both sides equally
    whatever their counts; ties go to the lowest threshold (fewest rejections).

    Raises:
        ValueError: no in-scope or no out-of-scope validation utterance.
    """
    if len(p_in) == 0 or len(p_oos) == 0:
        raise ValueError(
            f"choosing an out-of-scope threshold needs in-scope and out-of-scope validation utterances; got "
            f"{len(p_in)} and {len(p_oos)}"
        )
    confidence_in, confidence_oos = p_in.max(1), p_oos.max(1)
    correct = p_in.argmax(1) == y_in
    candidates = np.unique(np.concatenate([[0.0], confidence_in, confidence_oos, [np.nextafter(1.0, 2.0)]]))
    scores = [_balanced(confidence_in, correct, confidence_oos, t) for t in candidates.tolist()]
    return float(candidates[int(np.argmax(scores))])


def out_of_scope_report(p_in: Probabilities, y_in: Labels, p_oos: Probabilities, threshold: float) -> dict[str, float]:
    """Larson et al.'s scores at ``threshold``: in-scope accuracy (rejected in-scope utterances are errors),
    out-of-scope recall, and the out-of-scope class's precision and F1."""
    keep_in = p_in.max(1) >= threshold
    rejected_oos = p_oos.max(1) < threshold
    true_positive = int(rejected_oos.sum())
    flagged = true_positive + int((~keep_in).sum())
    recall = true_positive / len(p_oos) if len(p_oos) else 0.0
    precision = true_positive / flagged if flagged else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": threshold,
        "in_scope_accuracy": float(((p_in.argmax(1) == y_in) & keep_in).mean()),
        "oos_recall": recall,
        "oos_precision": precision,
        "oos_f1": f1,
    }
