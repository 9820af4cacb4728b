"""The KITTI devkit's road evaluation (evaluateRoad.py: evalExp, pxEval_maximizeFMeasure,
calcEvalMeasures), step by step in plain NumPy: the independent reference the tests hold
tfseg's scores to."""

import numpy as np

from tfseg.data.labels import VOID


def devkit_table(pairs) -> dict:
    """evaluateRoad's evalExp, pxEval_maximizeFMeasure and calcEvalMeasures over (label,
    probability uint8) pairs: counts summed, MaxF, 11-point AP, PRE/REC/FPR/FNR at MaxF."""
    thresholds = np.array(range(256)) / 255.0
    edges = np.concatenate(([-np.inf], thresholds, [np.inf]))
    total_fn, total_fp, positives, negatives = np.zeros(256), np.zeros(256), 0, 0
    for label, probability_u8 in pairs:
        probability = probability_u8.astype("f4") / 255
        road, valid = label == 1, label != VOID
        total_fn += np.cumsum(np.histogram(probability[road & valid], bins=edges)[0])[:256]
        total_fp += np.flipud(np.cumsum(np.flipud(np.histogram(probability[~road & valid], bins=edges)[0])))[1:257]
        positives += np.sum(road & valid)
        negatives += np.sum(~road & valid)
    tp = positives - total_fn
    recall = tp / float(positives)
    precision = tp / (tp + total_fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    ap = np.mean([max(precision[keep][np.where(recall[keep] >= i)]) for i in np.arange(0, 1.1, 0.1)])
    f = 2 * precision * recall / (precision + recall + 1e-10)
    best = int(np.argmax(np.where(keep, f, -1)))
    return {"max_f": f[best], "max_f_threshold": thresholds[best], "average_precision": ap,
            "precision": tp[best] / (tp[best] + total_fp[best]), "recall": tp[best] / positives, "fpr": total_fp[best] / negatives, "fnr": total_fn[best] / positives}
