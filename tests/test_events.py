"""Findings as events: synthetic scenes of coloured blobs on a mucosa-pink field, seen
in sparse frames, through the tracker the runtime and the report share."""

import json
import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from edge.reading.appearance import appearance_distance, box_feature
from edge.reading.events import Detection, EventTracker, TrackerSettings

SIZE = (320, 320)  # (w, h)
RED = (40, 60, 220)  # BGR: a red polyp
TEAL = (170, 160, 40)  # a polyp of another colour
YELLOW = (40, 200, 220)


def scene(blobs, rng, size=SIZE, gain=1.0):
    """A frame holding each (centre, radius, colour) blob, and the blobs' boxes."""
    width, height = size
    image = np.empty((height, width, 3), np.float32)
    image[:] = (150, 130, 205)
    image += rng.normal(0, 6, image.shape)
    boxes = []
    for (cx, cy), r, colour in blobs:
        cv2.circle(image, (round(cx), round(cy)), r, colour, -1)
        boxes.append((cx - r, cy - r, cx + r, cy + r))
    frame = np.clip(image * gain, 0, 255).astype(np.uint8)
    return frame, boxes


def detections(frame, boxes, rng, score=0.8, label="polyp"):
    out = []
    for x0, y0, x1, y1 in boxes:
        jx0, jy0, jx1, jy1 = rng.uniform(-3, 3, 4)
        box = (max(x0 + jx0, 0), max(y0 + jy0, 0), min(x1 + jx1, 319), min(y1 + jy1, 319))
        out.append(Detection(box, score, label, box_feature(frame, box)))
    return out


def run(frames, settings=None, fps=2.0, rng=None):
    """Feed [(blobs, ...)] one frame each, 1/fps s apart; blobs: [(centre, r, colour)]."""
    rng = rng or np.random.default_rng(0)
    tracker = EventTracker(settings or TrackerSettings())
    for position, blobs in enumerate(frames, start=1):
        frame, boxes = scene(blobs, rng, gain=float(rng.uniform(0.85, 1.15)))
        tracker.update(position, position / fps, detections(frame, boxes, rng), SIZE)
    return tracker


def moving(start, step, n, r=28, colour=RED):
    return [[((start[0] + k * step[0], start[1] + k * step[1]), r, colour)] for k in range(n)]


def test_a_polyp_drifting_in_large_jumps_is_one_event():
    # 54 px a frame with a 56 px polyp: consecutive boxes barely touch (IoU < 0.05).
    frames = moving((30, 40), (45, 30), 7)
    events = run(frames).finish()
    assert [(e.first, e.last, e.frames) for e in events] == [(1, 7, 7)]
    # Overlap alone cannot follow it: under IoU association no box finds its next one.
    assert run(frames, replace(TrackerSettings(), association="iou")).finish() == []


def test_missed_detections_keep_one_event():
    frames = moving((60, 160), (20, 0), 12)
    for k in (3, 4, 5, 6):  # the detector misses it for 2 s
        frames[k] = []
    events = run(frames).finish()
    assert [(e.first, e.last, e.frames) for e in events] == [(1, 12, 8)]


def test_a_polyp_that_leaves_and_comes_back_elsewhere_is_one_event():
    away = [[] for _ in range(6)]  # 3 s out of view
    frames = moving((60, 60), (10, 5), 4) + away + moving((250, 250), (-10, 0), 4)
    events = run(frames).finish()
    assert [(e.first, e.last, e.frames) for e in events] == [(1, 14, 8)]
    # That link is appearance's: without it, the far re-entry is a new event.
    assert len(run(frames, replace(TrackerSettings(), association="position")).finish()) == 2


def test_a_gap_longer_than_max_gap_is_two_events():
    settings = replace(TrackerSettings(), max_gap_s=2.0)
    frames = moving((60, 60), (10, 5), 4) + [[] for _ in range(6)] + moving((70, 70), (10, 0), 4)
    assert len(run(frames, settings).finish()) == 2  # 3.5 s without a box
    assert len(run(frames, replace(settings, max_gap_s=4.0)).finish()) == 1


def test_without_times_the_gap_is_counted_in_frames():
    rng = np.random.default_rng(1)

    def events(missing, max_gap_frames):
        tracker = EventTracker(replace(TrackerSettings(), max_gap_frames=max_gap_frames))
        blobs = moving((60, 60), (8, 0), 4) + [[]] * missing + moving((100, 60), (8, 0), 4)
        for position, b in enumerate(blobs, start=1):
            frame, boxes = scene(b, rng)
            tracker.update(position * 10, None, detections(frame, boxes, rng), SIZE)
        return tracker.finish()

    assert len(events(missing=5, max_gap_frames=5)) == 1
    assert len(events(missing=6, max_gap_frames=5)) == 2


def test_two_polyps_in_one_frame_are_two_events():
    frames = [
        a + b
        for a, b in zip(
            moving((60, 80), (15, 10), 6), moving((200, 90), (15, 10), 6, colour=RED), strict=True
        )
    ]
    events = run(frames).finish()
    assert len(events) == 2
    assert all(e.frames == 6 for e in events)
    assert {round(e.boxes[1][0] / 10) for e in events} == {3, 17}  # one starts left, one right


def test_two_polyps_crossing_paths_stay_apart():
    # Along one row, towards each other, in jumps: from 100 and 220 to 190 and 130, each
    # lands nearer where the other was than where it was itself.
    xs_red, xs_teal = (40, 100, 190, 250, 290), (280, 220, 130, 70, 30)
    frames = [
        [((a, 160), 25, RED), ((b, 160), 25, TEAL)] for a, b in zip(xs_red, xs_teal, strict=True)
    ]

    def directions(settings):
        out = set()
        for event in run(frames, settings).finish():
            xs = [(b[0] + b[2]) / 2 for _, b in sorted(event.boxes.items())]
            steps = set(np.sign(np.diff(xs)))
            out.add((event.frames, steps.pop() if len(steps) == 1 else 0))
        return out

    assert directions(TrackerSettings()) == {(5, 1), (5, -1)}  # each keeps its own way
    # By position alone, they swap at the crossing.
    assert directions(replace(TrackerSettings(), association="position")) == {(5, 0)}


def test_isolated_false_positives_are_counted_not_events():
    rng = np.random.default_rng(2)
    frames = []
    colours = [RED, TEAL, YELLOW, (200, 60, 200), (60, 200, 60)]
    for k in range(30):
        if k % 3 == 0:  # a box now and then, anywhere, never twice the same
            centre = tuple(rng.uniform(40, 280, 2))
            frames.append([(centre, 20, colours[(k // 3) % len(colours)])])
        else:
            frames.append([])
    tracker = run(frames, replace(TrackerSettings(), max_gap_s=1.0), rng=rng)
    assert tracker.finish() == []
    assert tracker.unconfirmed == 10


def test_confirmation_comes_on_the_nth_frame():
    rng = np.random.default_rng(3)
    for n in (1, 3, 5):
        tracker = EventTracker(replace(TrackerSettings(), confirm_frames=n))
        blobs = moving((60, 60), (20, 10), 7)
        blobs[1] = []  # a missed frame does not count
        got = []
        for position, b in enumerate(blobs, start=1):
            frame, boxes = scene(b, rng)
            got.append(
                tracker.update(position, position * 0.5, detections(frame, boxes, rng), SIZE)
            )
        boxed = [p for p, b in enumerate(blobs, start=1) if b]
        assert [p for p, events in enumerate(got, start=1) if events] == [boxed[n - 1]]
        alert = got[boxed[n - 1] - 1][0]
        assert (alert.id, alert.frames, alert.first) == (1, n, 1)


def test_a_different_polyp_after_the_first_left_is_a_new_event():
    frames = [*moving((100, 100), (10, 0), 5), [], [], *moving((130, 100), (10, 0), 5, colour=TEAL)]
    events = run(frames).finish()
    assert [(e.first, e.last) for e in events] == [(1, 5), (8, 12)]
    # At the same place, position alone takes it for the first polyp come back.
    assert len(run(frames, replace(TrackerSettings(), association="position")).finish()) == 1


def test_kinds_are_never_merged():
    rng = np.random.default_rng(4)
    tracker = EventTracker()
    for position in range(1, 5):
        frame, boxes = scene([((100, 100), 30, RED)], rng)
        polyp = detections(frame, boxes, rng)
        bleeding = detections(frame, boxes, rng, label="bleeding")
        tracker.update(position, position * 0.5, polyp + bleeding, SIZE)
    assert sorted(e.kind for e in tracker.finish()) == ["bleeding", "polyp"]


def test_a_nested_duplicate_box_starts_no_second_event():
    rng = np.random.default_rng(5)
    tracker = EventTracker()
    for position, b in enumerate(moving((100, 100), (15, 5), 6), start=1):
        frame, boxes = scene(b, rng)
        x0, y0, x1, y1 = boxes[0]
        part = (x0 + 5, y0 + 5, x1 - 20, y1 - 20)  # a part box inside the whole
        dets = [
            *detections(frame, boxes, rng),
            Detection(part, 0.5, "polyp", box_feature(frame, part)),
        ]
        tracker.update(position, position * 0.5, dets, SIZE)
    assert len(tracker.finish()) == 1


def test_fields_of_a_hand_made_event():
    tracker = EventTracker()
    frames = {  # position: (box, score); a 200 x 100 frame, no appearance descriptors
        10: ((20, 20, 40, 40), 0.5),
        12: ((25, 22, 55, 52), 0.9),
        15: ((30, 25, 70, 55), 0.7),  # the largest: 40 x 30
        16: ((32, 26, 62, 56), 0.6),
        17: ((150, 80, 151, 81), 0.1),  # below min_score: ignored
    }
    for position, (box, score) in frames.items():
        tracker.update(position, None, [Detection(box, score)], (200, 100))
    (event,) = tracker.finish()
    assert event.as_dict() == {
        "kind": "polyp",
        "id": 1,
        "first": 10,
        "last": 16,
        "best": 12,
        "frames": 4,
        "peak_score": 0.9,
        "max_box_px": [40, 30],
        "max_box_share": 0.06,  # 1200 / 20000
    }
    assert event.boxes == {p: tuple(map(float, b)) for p, (b, _) in frames.items() if p != 17}
    json.dumps(event.as_dict())

    round_view = EventTracker()
    for position, (box, score) in frames.items():
        round_view.update(position, None, [Detection(box, score)], (200, 100), fov_area=15000.0)
    assert round_view.finish()[0].max_box_share == pytest.approx(0.08)


def test_finish_numbers_events_by_first_frame():
    rng = np.random.default_rng(6)
    tracker = EventTracker()
    slow = moving((60, 60), (10, 0), 8)  # first at 1, but missed at 2-4: confirmed at 7
    for k in (1, 2, 3, 4):
        slow[k] = []
    fast = [[], *moving((220, 220), (-10, 0), 7, colour=TEAL)]  # first at 2, confirmed at 4
    alerts = []
    for position, (a, b) in enumerate(zip(slow, fast, strict=True), start=1):
        frame, boxes = scene(a + b, rng)
        alerts += tracker.update(position, position * 0.5, detections(frame, boxes, rng), SIZE)
    assert [(e.first, e.id) for e in alerts] == [(2, 1), (1, 2)]
    events = tracker.finish()
    assert [(e.first, e.id) for e in events] == [(1, 1), (2, 2)]
    assert {e.track for e in events} == {e.track for e in alerts}


@pytest.mark.parametrize(
    ("position", "time_s", "det", "size", "message"),
    [
        (2, 1.0, Detection((50, 10, 40, 20), 0.9), SIZE, "x1 < x0"),
        (2, 1.0, Detection((10, 10, float("nan"), 20), 0.9), SIZE, "not finite"),
        (2, 1.0, Detection((10, 10, 20, 20), float("nan")), SIZE, "score"),
        (1, 1.0, Detection((10, 10, 20, 20), 0.9), SIZE, "does not follow"),
        (0, 1.0, Detection((10, 10, 20, 20), 0.9), SIZE, "does not follow"),
        (2, 0.2, Detection((10, 10, 20, 20), 0.9), SIZE, "before"),
        (2, 1.0, Detection((10, 10, 20, 20), 0.9), (0, 320), "frame_size"),
    ],
)
def test_bad_input_is_a_one_line_value_error(position, time_s, det, size, message):
    tracker = EventTracker()
    tracker.update(1, 0.5, [Detection((10, 10, 20, 20), 0.9)], SIZE)
    with pytest.raises(ValueError, match=message) as caught:
        tracker.update(position, time_s, [det], size)
    assert "\n" not in str(caught.value)
    tracker.update(3, 1.5, [Detection((11, 10, 21, 20), 0.9)], SIZE)  # still usable
    tracker.update(4, 2.0, [Detection((12, 10, 22, 20), 0.9)], SIZE)
    assert [e.frames for e in tracker.finish()] == [3]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="confirm_frames"):
        TrackerSettings(confirm_frames=0)
    with pytest.raises(ValueError, match="association"):
        TrackerSettings(association="magic")


def test_box_feature_tells_colours_apart_not_brightness():
    rng = np.random.default_rng(7)
    red, boxes = scene([((120, 120), 40, RED)], rng)
    darker, _ = scene([((120, 120), 40, RED)], rng, gain=0.8)
    teal, _ = scene([((120, 120), 40, TEAL)], rng)
    a, b, c = (box_feature(image, boxes[0]) for image in (red, darker, teal))
    assert a.shape == (256,) and a.dtype == np.float32
    # The ring (the same pink field in all three) holds half of the distance.
    assert appearance_distance(a, b) < 0.15
    assert appearance_distance(a, c) > 0.4
    rgb = box_feature(np.ascontiguousarray(red[..., ::-1]), boxes[0], rgb=True)
    assert np.allclose(rgb, a)
    with pytest.raises(ValueError, match="outside"):
        box_feature(red, (400, 400, 450, 450))
    # A box clipped flat against the frame's edge still has a descriptor.
    assert box_feature(red, (320, 100, 320, 140)).sum() == pytest.approx(2.0)


def _counted_by_hand(
    image_bgr: np.ndarray, inside: tuple[int, int, int, int], window
) -> np.ndarray:
    """The descriptor's definition, pixel by pixel: hue (OpenCV's 0-180, turned by 30) in
    12 bins of 5 over the reds and 4 of 30 over the rest, saturation in 8 bins of 32, pixels
    darker than MIN_V left out; the box's pixels, then the ring's, each normalised."""
    import cv2

    from edge.reading.appearance import MIN_V

    bx0, by0, bx1, by1 = inside
    rx0, ry0, rx1, ry1 = window
    hsv = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV)
    box, ring = np.zeros(128), np.zeros(128)
    for y in range(ry0, ry1):
        for x in range(rx0, rx1):
            h, s, v = (int(c) for c in hsv[y, x])
            if v < MIN_V:
                continue
            turned = (h + 30) % 180
            hue_bin = turned // 5 if turned < 60 else 12 + (turned - 60) // 30
            target = box if bx0 <= x < bx1 and by0 <= y < by1 else ring
            target[hue_bin * 8 + s // 32] += 1
    return np.concatenate([box / box.sum(), ring / ring.sum()])


def test_box_feature_counts_what_its_definition_says():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    image[:10] = 0  # a dark band, left out of both histograms
    # box (20, 15)-(40, 35): the ring reaches half its size beyond each side
    got = box_feature(image, (20, 15, 40, 35))
    expected = _counted_by_hand(image, (20, 15, 40, 35), (10, 5, 50, 45))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def _long_study(tracker, start, frames):
    """A box that stays in view throughout, drifting, and a new finding every 40 frames
    (8 s) seen for 6: what live alerts meet over hours (every frame with a box, a track
    without end)."""
    rng = np.random.default_rng(1)  # the same frames for every tracker
    feature = box_feature(*scene([((60, 60), 20, RED)], rng)[:1], (40, 40, 80, 80))
    alerts = []
    for p in range(start, start + frames):
        x = 40 + 30 * math.sin(p / 50)
        dets = [Detection((x, 40.0, x + 40, 80.0), 0.9, "polyp", feature)]
        if p % 40 < 6:
            x = 150 + (p // 40 % 2) * 100 + 4 * (p % 40)  # left, right, left: each new
            dets.append(Detection((x, 200.0, x + 40.0, 240.0), 0.7, "polyp", None))
        alerts += [e.as_dict() | {"last": e.last} for e in tracker.update(p, p / 5, dets, SIZE)]
    return alerts


def _grown(tracker) -> int:
    """Bytes the tracker holds on to over 3,000 more frames of the long study."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _long_study(tracker, 3001, 3000)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_live_alerts_keep_no_history_and_stay_flat_over_a_long_study():
    report, live = EventTracker(), EventTracker(history=False)
    alerts = _long_study(report, 1, 3000)
    assert len(alerts) == 1 + 3000 // 40  # the box in view, and each finding
    assert _long_study(live, 1, 3000) == alerts  # the same alerts, field by field
    # 3,000 more frames, 75 more findings, and a track 6,000 frames long: live keeps
    # nothing of them; the report's tracker (what live used) keeps every box.
    kept = _grown(live)
    assert kept < 20_000, kept
    assert _grown(report) > 20 * 20_000
    with pytest.raises(ValueError, match="no finish"):
        live.finish()
