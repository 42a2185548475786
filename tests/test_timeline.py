"""The study timeline on synthetic score sequences whose true segments are known.

Scores are made per frame: the frame's true label (or, for a "wrong" frame, one in five
by default, another label at random) gets 0.8 of the probability and the rest is spread
at random (seeded). Block boundaries and landmark positions must be found within TOL
frames: 2.5 s at the 2 frames/s of most sequences here (``half``: 0.5 s apart)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from edge.eval.metrics import confusion_matrix, summarise
from edge.reading.timeline import (
    TimelineSettings,
    build_timeline,
    monotone_path,
    normalise_label,
    sticky_path,
)

TOL = 5  # frames
BUNDLED = ["bbps-0-1", "bbps-2-3", "cecum", "impacted-stool", "polyps"]
CAPSULE = ["esophagus", "Z_line", "stomach", "pylorus", "small_intestine", "ileocecal valve"]
CAPSULE += ["cecum", "colon", "bleeding", "polyp"]
KVASIR = ["normal-z-line", "normal-pylorus", "normal-cecum", "polyps", "esophagitis"]
KVASIR += ["ulcerative-colitis", "dyed-lifted-polyps"]


def blocks(labels: list[str], spec: list[tuple[str, int]]) -> np.ndarray:
    return np.concatenate([np.full(n, labels.index(name)) for name, n in spec])


def noisy(truth: np.ndarray, k: int, seed: int, accuracy: float = 0.8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(truth)
    wrong = rng.random(n) > accuracy
    top = np.where(wrong, (truth + rng.integers(1, k, n)) % k, truth)
    p = rng.dirichlet(np.ones(k), n) * 0.2
    p[np.arange(n), top] += 0.8
    return p


def half(n: int) -> np.ndarray:
    return np.arange(n) * 0.5


def starts(truth: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.diff(truth)) + 1


def macro_f1(truth: np.ndarray, predicted: np.ndarray, k: int) -> float:
    return float(
        summarise(confusion_matrix(truth, predicted, k), [str(i) for i in range(k)])["macro_f1"]
    )


SPEC = [("bbps-2-3", 80), ("cecum", 60), ("bbps-0-1", 100), ("polyps", 40), ("bbps-2-3", 120)]


def test_segments_match_the_blocks_within_tolerance():
    truth = blocks(BUNDLED, SPEC)
    tl = build_timeline(noisy(truth, 5, seed=1), BUNDLED, half(len(truth)))
    assert [s.label for s in tl.segments] == [name for name, _ in SPEC]
    found = np.array([s.first for s in tl.segments[1:]])
    assert np.abs(found - starts(truth)).max() <= TOL
    assert tl.segments[-1].last == len(truth) - 1
    assert all(a.last + 1 == b.first for a, b in zip(tl.segments, tl.segments[1:], strict=False))


def test_raw_argmax_is_measurably_worse_than_the_smoothed_path():
    truth = blocks(BUNDLED, SPEC)
    scores = noisy(truth, 5, seed=2, accuracy=0.65)
    raw = macro_f1(truth, scores.argmax(axis=1), 5)
    smoothed = macro_f1(truth, build_timeline(scores, BUNDLED).path, 5)
    assert raw < 0.75
    assert smoothed > 0.95
    assert smoothed - raw > 0.2


def test_flicker_frames_make_no_segments():
    truth = blocks(BUNDLED, SPEC)
    scores = noisy(truth, 5, seed=3, accuracy=1.0)
    rng = np.random.default_rng(3)
    for t in range(5, len(truth), 9):  # one confident wrong frame in every nine
        scores[t] = 0.0025
        scores[t, (truth[t] + rng.integers(1, 5)) % 5] = 0.99
    scores[100:102] = 0.0025  # and once two of them in a row, in the cecum block
    scores[100:102, BUNDLED.index("polyps")] = 0.99
    tl = build_timeline(scores, BUNDLED)
    assert len(tl.segments) == len(SPEC)
    assert np.abs(np.array([s.first for s in tl.segments[1:]]) - starts(truth)).max() <= 1


@pytest.mark.parametrize(
    ("times", "min_frames"), [(None, 5), (np.arange(400) * 0.5, 6)], ids=["frames", "seconds"]
)
def test_minimum_duration_is_what_the_switch_penalty_absorbs(times, min_frames):
    """At the odds confident_odds (20:1) a run survives exactly when it is longer than
    the minimum duration: 5 frames by default, 3 s at 0.5 s a frame = 6."""
    p = np.full((400, 5), 0.01)
    p[:, 1] = 0.9
    p[:, 2] = 0.045  # cecum 20 times less likely than bbps-2-3...
    short, long = slice(100, 100 + min_frames - 1), slice(250, 250 + min_frames + 1)
    p[short, 1], p[short, 2] = 0.045, 0.9  # ...except in two runs
    p[long, 1], p[long, 2] = 0.045, 0.9
    tl = build_timeline(p, BUNDLED, times)
    assert tl.smoothing is not None and tl.smoothing["min_segment_frames"] == min_frames
    assert [(s.label, s.first, s.last) for s in tl.segments] == [
        ("bbps-2-3", 0, 249),
        ("cecum", 250, 250 + min_frames),
        ("bbps-2-3", 251 + min_frames, 399),
    ]


CAPSULE_SPEC = [("esophagus", 20), ("Z_line", 20), ("stomach", 150), ("pylorus", 20)]
CAPSULE_SPEC += [("small_intestine", 250), ("bleeding", 30), ("small_intestine", 150)]
CAPSULE_SPEC += [("ileocecal valve", 20), ("cecum", 20), ("colon", 200)]


def test_landmarks_come_in_passage_order_despite_an_early_spurious_cecum():
    truth = blocks(CAPSULE, CAPSULE_SPEC)
    scores = noisy(truth, len(CAPSULE), seed=4, accuracy=0.8)
    scores[100:103] = 0.001
    scores[100:103, CAPSULE.index("cecum")] = 0.99  # in the stomach, three frames sure of it
    tl = build_timeline(scores, CAPSULE)
    assert [m.label for m in tl.landmarks] == ["Z_line", "pylorus", "ileocecal valve", "cecum"]
    true = {name: int(np.flatnonzero(truth == CAPSULE.index(name))[0]) for name, _ in CAPSULE_SPEC}
    for m in tl.landmarks:
        assert abs(m.position - true[m.label]) <= TOL, m
        assert m.score > 0.5
    assert tl.prep is None


def test_a_landmark_without_evidence_is_not_seen_and_the_region_boundary_times_the_passage():
    spec = [(name, n) for name, n in CAPSULE_SPEC if name != "pylorus"]
    truth = blocks(CAPSULE, spec)
    times = half(len(truth))
    scores = noisy(truth, len(CAPSULE), seed=5, accuracy=0.8)
    scores[60:62] = 0.001
    scores[60:62, CAPSULE.index("pylorus")] = 0.99  # two stray frames sure of a pylorus
    tl = build_timeline(scores, CAPSULE, times)
    assert [m.label for m in tl.landmarks] == ["Z_line", "ileocecal valve", "cecum"]
    small_bowel = int(np.flatnonzero(truth == CAPSULE.index("small_intestine"))[0])
    expected = times[small_bowel] - times[tl.landmarks[0].position]
    assert tl.transit_s["gastric"] == pytest.approx(expected, abs=TOL * 0.5)


def test_a_landmark_is_seen_only_when_its_evidence_beats_landmark_min_llr():
    """Constant frames: 100 stomach, 12 pylorus, 100 small bowel, each 0.9 on its label.
    Skipping the pylorus puts its frames in the stomach, whose region also explains the
    labels that name no site (bleeding, polyp): the pylorus run's evidence is
    12 * log(0.9 / (0.045 + 2 * 0.055 / 8)) nats."""
    k = len(CAPSULE)
    truth = blocks(CAPSULE, [("stomach", 100), ("pylorus", 12), ("small_intestine", 100)])
    scores = np.full((len(truth), k), 0.1 / (k - 1))
    scores[np.arange(len(truth)), truth] = 0.9
    pylorus = truth == CAPSULE.index("pylorus")
    scores[pylorus] = 0.055 / (k - 2)
    scores[pylorus, CAPSULE.index("pylorus")] = 0.9
    scores[pylorus, CAPSULE.index("stomach")] = 0.045
    evidence = 12 * np.log(0.9 / (0.045 + 2 * 0.055 / (k - 2)))
    for llr, seen in ((evidence - 1, True), (evidence + 1, False)):
        settings = TimelineSettings(landmark_min_llr=llr)
        tl = build_timeline(scores, CAPSULE, half(len(truth)), settings=settings)
        assert [(m.label, m.position, m.last) for m in tl.landmarks] == (
            [("pylorus", 100, 111)] if seen else []
        )
        assert [s.label for s in tl.segments] == ["stomach", "pylorus", "small_intestine"]
        assert tl.transit_s["gastric"] == (50.0 if seen else 56.0)  # else the small bowel


def test_without_cecum_frames_the_bundled_model_reports_no_cecum():
    spec = [("bbps-2-3", 120), ("polyps", 40), ("bbps-0-1", 100)]
    truth = blocks(BUNDLED, spec)
    scores = noisy(truth, 5, seed=6)
    scores[30:32] = 0.001
    scores[30:32, 2] = 0.99
    tl = build_timeline(scores, BUNDLED, half(len(truth)))
    assert tl.landmarks == []
    assert tl.transit_s == {"gastric": None, "small_bowel": None, "colonic": None}
    assert tl.prep is not None and tl.prep["from"] == "first frame"
    assert tl.prep["frames"]["bbps-2-3"] == pytest.approx(120, abs=TOL)


def test_bundled_labels_give_the_cecum_the_colonic_transit_and_the_prep_after_it():
    spec = [("bbps-2-3", 80), ("cecum", 40), ("bbps-2-3", 100), ("polyps", 30)]
    spec += [("bbps-0-1", 60), ("impacted-stool", 40)]
    truth = blocks(BUNDLED, spec)
    times = half(len(truth))
    tl = build_timeline(noisy(truth, 5, seed=7), BUNDLED, times)
    [cecum] = tl.landmarks
    assert cecum.label == "cecum" and abs(cecum.position - 80) <= TOL
    assert abs(cecum.last - 119) <= TOL
    assert tl.transit_s["gastric"] is None and tl.transit_s["small_bowel"] is None
    assert tl.transit_s["colonic"] == times[-1] - cecum.time_s
    prep = tl.prep
    assert prep is not None and prep["from"] == "cecum" and prep["from_frame"] == cecum.position
    # Counted after the cecum only: not the 80 bbps-2-3 frames before it.
    for label, n in (("bbps-2-3", 100), ("bbps-0-1", 60), ("impacted-stool", 40)):
        assert prep["frames"][label] == pytest.approx(n, abs=2 * TOL)
    assert prep["rated_frames"] == pytest.approx(200, abs=3 * TOL)
    assert prep["adequate_share"] == pytest.approx(0.5, abs=0.03)


def test_irregular_timestamps_give_each_segment_its_frame_times_and_the_transits():
    truth = blocks(CAPSULE, CAPSULE_SPEC)
    rng = np.random.default_rng(8)
    gaps = rng.uniform(0.2, 1.5, len(truth))
    gaps[400] = 60.0  # a minute without frames
    times = 1000.0 + np.cumsum(gaps)
    tl = build_timeline(noisy(truth, len(CAPSULE), seed=8, accuracy=0.8), CAPSULE, times)
    for s in tl.segments:
        assert (s.start_s, s.end_s) == (times[s.first], times[s.last])
    marks = {m.label: m for m in tl.landmarks}
    assert all(m.time_s == times[m.position] for m in tl.landmarks)
    assert tl.transit_s["gastric"] == marks["pylorus"].time_s - marks["Z_line"].time_s
    assert tl.transit_s["small_bowel"] == marks["cecum"].time_s - marks["pylorus"].time_s
    assert tl.transit_s["colonic"] == times[-1] - marks["cecum"].time_s
    true_pylorus = int(np.flatnonzero(truth == CAPSULE.index("pylorus"))[0])
    true_cecum = int(np.flatnonzero(truth == CAPSULE.index("cecum"))[0])
    slack = TOL * 1.5 * 2  # TOL frames of at most 1.5 s at either end
    assert tl.transit_s["small_bowel"] == pytest.approx(
        times[true_cecum] - times[true_pylorus], abs=slack
    )


def test_kvasir_seed_names_are_recognised_as_landmarks():
    spec = [("esophagitis", 40), ("normal-z-line", 30), ("normal-pylorus", 30)]
    spec += [("normal-cecum", 30), ("polyps", 40), ("ulcerative-colitis", 60)]
    truth = blocks(KVASIR, spec)
    tl = build_timeline(noisy(truth, len(KVASIR), seed=9), KVASIR, half(len(truth)))
    assert [m.label for m in tl.landmarks] == ["normal-z-line", "normal-pylorus", "normal-cecum"]
    for m, true in zip(tl.landmarks, (40, 70, 100), strict=True):
        assert abs(m.position - true) <= TOL, m
    assert tl.transit_s["gastric"] == pytest.approx(15.0, abs=TOL)
    assert tl.prep is None


def test_label_names_are_normalised():
    assert normalise_label("Normal_Z line") == "z-line"
    assert normalise_label("small_intestine") == "small-bowel"
    assert normalise_label(" Ileocecal Valve ") == "ileocecal-valve"
    assert normalise_label("bbps_2_3") == "bbps-2-3"


def test_unscored_frames_take_their_neighbours_label():
    truth = blocks(BUNDLED, SPEC)
    scores = noisy(truth, 5, seed=10)
    scores[:15] = np.nan  # before the first scored frame
    scores[150:190] = np.nan  # inside the bbps-0-1 block
    tl = build_timeline(scores, BUNDLED)
    assert [s.label for s in tl.segments] == [name for name, _ in SPEC]
    assert (tl.path[:15] == 1).all() and (tl.path[150:190] == 0).all()


def test_untimed_frames_give_no_transit_unless_their_interval_is_given():
    spec = [("bbps-2-3", 60), ("cecum", 40), ("bbps-0-1", 60)]
    scores = noisy(blocks(BUNDLED, spec), 5, seed=11)
    untimed = build_timeline(scores, BUNDLED)
    assert not untimed.timed and untimed.transit_s["colonic"] is None
    assert untimed.landmarks[0].time_s == untimed.landmarks[0].position
    spaced = build_timeline(scores, BUNDLED, settings=TimelineSettings(frame_interval_s=0.5))
    assert spaced.timed
    assert spaced.transit_s["colonic"] == pytest.approx((159 - spaced.landmarks[0].position) * 0.5)


def test_as_dict_is_json():
    truth = blocks(BUNDLED, SPEC)
    tl = build_timeline(noisy(truth, 5, seed=12), BUNDLED, half(len(truth)))
    d = json.loads(json.dumps(tl.as_dict(), allow_nan=False))
    assert [s["label"] for s in d["segments"]] == [s.label for s in tl.segments]
    assert set(d["segments"][0]) >= {"label", "first", "last", "start_s", "end_s"}
    assert d["landmarks"][0]["position"] == tl.landmarks[0].position
    assert set(d["transit_s"]) == {"gastric", "small_bowel", "colonic"}
    assert d["prep"] == tl.prep


def _reference(logp: np.ndarray, trans: np.ndarray, prior: np.ndarray) -> float:
    """The best path's score by the textbook dense Viterbi."""
    delta = prior + logp[0]
    for t in range(1, len(logp)):
        delta = (delta[:, None] + trans).max(axis=0) + logp[t]
    return float(delta.max())


def _score(logp, trans, prior, path) -> float:
    steps = trans[path[:-1], path[1:]].sum()
    return float(prior[path[0]] + logp[np.arange(len(path)), path].sum() + steps)


@pytest.mark.parametrize("seed", range(6))
def test_the_vectorised_viterbi_finds_the_best_path(seed):
    rng = np.random.default_rng(seed)
    for penalty in (0.0, 0.3, 2.0, 12.0):
        n, k = int(rng.integers(1, 900)), int(rng.integers(1, 7))
        logp = np.log(rng.dirichlet(np.full(k, 0.5), n) + 1e-3)
        trans = np.where(np.eye(k, dtype=bool), 0.0, -penalty)
        prior = np.zeros(k)
        path = sticky_path(logp, penalty)
        assert _score(logp, trans, prior, path) == pytest.approx(_reference(logp, trans, prior))
        cost = rng.uniform(0, 6, k)
        trans = np.where(np.triu(np.ones((k, k), dtype=bool)), -cost[None, :], -np.inf)
        np.fill_diagonal(trans, 0.0)
        path = monotone_path(logp, cost)
        assert (np.diff(path) >= 0).all()
        assert _score(logp, trans, -cost, path) == pytest.approx(_reference(logp, trans, -cost))


def test_a_long_study_is_smoothed_whole():
    rng = np.random.default_rng(13)
    truth = np.repeat(rng.permutation(np.arange(200) % 10), 500)  # 100,000 frames, 10 labels
    tl = build_timeline(noisy(truth, 10, seed=13), [f"c{i}" for i in range(10)])
    assert (tl.path == truth).mean() > 0.995


GOOD = np.full((4, 5), 0.2)
BAD_INPUTS = [
    (np.zeros((0, 5)), BUNDLED, None, "frames x labels with a frame or more, not (0, 5)"),
    (np.full(5, 0.2), BUNDLED, None, "frames x labels with a frame or more, not (5,)"),
    (GOOD, BUNDLED[:4], None, "4 labels for 5 score columns"),
    (GOOD, [*BUNDLED[:4], "Cecum"], None, "distinct, got cecum"),
    (np.where(np.eye(4, 5, dtype=bool), np.nan, GOOD), BUNDLED, None, "frame 0: scores [nan, 0.2"),
    (np.full((4, 5), np.nan), BUNDLED, None, "all 4 frames have NaN scores"),
    (np.where(np.eye(4, 5, dtype=bool), np.inf, GOOD), BUNDLED, None, "frame 0: scores [inf,"),
    (GOOD - np.eye(4, 5) * 0.5, BUNDLED, None, "frame 0: scores [-0.3, 0.2, 0.2, 0.2, 0.2] are"),
    (GOOD, BUNDLED, np.arange(3.0), "times_s has shape (3,), scores have 4 frames"),
    (GOOD, BUNDLED, np.array([0.0, 2.0, 1.0, 3.0]), "frame 2 at 1.0 is not finite or goes back"),
    (GOOD, BUNDLED, np.array([0.0, np.nan, 1.0, 3.0]), "frame 1 at nan"),
]


@pytest.mark.parametrize(("scores", "labels", "times", "message"), BAD_INPUTS)
def test_bad_input_is_a_one_line_value_error(scores, labels, times, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        build_timeline(scores, labels, times)
    assert "\n" not in str(info.value)


def test_bad_settings_are_a_value_error():
    with pytest.raises(ValueError, match=re.escape("TimelineSettings.floor = 0")):
        TimelineSettings(floor=0)
    with pytest.raises(ValueError, match=re.escape("TimelineSettings.switch_penalty = -1")):
        TimelineSettings(switch_penalty=-1)
