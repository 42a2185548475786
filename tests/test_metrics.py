import numpy as np
import pytest

from edge.eval.metrics import confusion_matrix, summarise

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_matches_scikit_learn():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 300)
    pred = np.where(rng.random(300) < 0.7, truth, rng.integers(0, 4, 300))
    m = summarise(confusion_matrix(truth, pred, 4), ["a", "b", "c", "d"])
    assert m["n"] == 300
    assert m["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(truth, pred), abs=1e-4)
    assert m["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(truth, pred, average="macro"), abs=1e-4
    )
    recall = sklearn_metrics.recall_score(truth, pred, average=None)
    assert [m["per_class"][k]["recall"] for k in "abcd"] == pytest.approx(recall, abs=1e-4)
    assert m["confusion_matrix"] == sklearn_metrics.confusion_matrix(truth, pred).tolist()


def test_macro_f1_ignores_classes_absent_from_the_truth():
    m = summarise(confusion_matrix([0, 0, 1], [0, 0, 1], 3), ["a", "b", "c"])
    assert m["macro_f1"] == 1.0
