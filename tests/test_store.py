"""The study folder: exactly-once, byte-identical frames, and durability against SIGKILL."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from edge.study import archive
from edge.study.archive import HEADER as RECORD
from edge.study.store import Study


def payload(session: int, index: int) -> bytes:
    return random.Random(session * 100_003 + index).randbytes(500 + index % 3000)


def test_frames_are_kept_once_and_read_back_identical(tmp_path: Path):
    study = Study(tmp_path / "study")
    for i in range(20):
        assert study.add(1, i, payload(1, i), codec=1, timestamp_us=i)
    assert not study.add(1, 5, b"again", codec=1, timestamp_us=0)  # pending duplicate
    assert len(study.commit()) == 20
    assert not study.add(1, 5, b"again", codec=1, timestamp_us=0)  # committed duplicate
    assert study.commit() == []
    study.close()
    reopened = Study(tmp_path / "study")
    assert list(reopened.frames()) == [(1, i) for i in range(20)]
    for i in range(20):
        assert reopened.read(1, i).data == payload(1, i)
    archive = sum(p.stat().st_size for p in (tmp_path / "study" / "archive").glob("*.bin"))
    assert archive == sum(RECORD.size + len(payload(1, i)) for i in range(20))
    reopened.close()


WRITER = """
import sys
from pathlib import Path
from edge.study.store import Study
from tests.test_store import payload
study = Study(Path(sys.argv[1]))
start = int(sys.argv[2])
for i in range(start, start + 100_000):
    study.add(1, i, payload(1, i), codec=1, timestamp_us=i)
    if i % 7 == 3:
        study._appender.file.flush()  # bytes in the archive file, not yet committed
        print("W", flush=True)
    if i % 7 == 6:
        done = study.commit()
        print("C " + " ".join(str(idx) for _, idx in done), flush=True)
"""


def test_sigkill_at_any_moment_loses_only_unacknowledged_frames(tmp_path: Path):
    folder = tmp_path / "study"
    rng = random.Random(11)
    acknowledged: set[int] = set()
    start = 0
    cut = 0  # rounds where the kill left uncommitted bytes for recovery to cut
    for round_ in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), str(start)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert proc.stdout is not None
        # Kill after a random number of commits: in odd rounds just after some bytes
        # reached the archive file, in even rounds just after a commit.
        wanted = "W" if round_ % 2 else "C"
        for n in range(rng.randrange(6, 60)):
            line = proc.stdout.readline()
            if line.startswith("C"):
                acknowledged.update(int(x) for x in line.split()[1:])
            if n > 4 and line.startswith(wanted):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = sum(p.stat().st_size for p in (folder / "archive").glob("*.bin"))
        study = Study(folder)  # recovery cuts what no committed row points at
        stored = [idx for _, idx in study.frames()]
        assert len(stored) == len(set(stored))  # exactly once
        assert acknowledged <= set(stored)  # everything acknowledged survived
        for idx in rng.sample(stored, min(50, len(stored))):
            assert study.read(1, idx).data == payload(1, idx)
        archive = sum(p.stat().st_size for p in (folder / "archive").glob("*.bin"))
        assert archive == sum(RECORD.size + len(payload(1, i)) for i in stored)
        cut += archive < before
        start = max(stored) + 1 if stored else 0  # the recorder resends from here
        study.close()
    assert cut  # the case tests recovery, not only clean stops


def _open_segments(archive: Path) -> int:
    """This process's descriptors open on the archive's segments (Linux /proc)."""
    links = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            links.append(os.readlink(fd))
    return sum(link.startswith(str(archive)) for link in links)


def test_a_long_study_keeps_a_few_segments_open_not_one_for_each(tmp_path: Path, monkeypatch):
    """A 12-hour study has a hundred segments: reading them all must not hold a hundred
    descriptors, and a segment closed for others reads back identical when asked again."""
    monkeypatch.setattr(archive, "SEGMENT_BYTES", 1 << 10)  # small segments, many of them
    study = Study(tmp_path / "study")
    for i in range(60):
        study.add(1, i, payload(1, i), codec=1, timestamp_us=i)
    study.commit()
    folder = tmp_path / "study" / "archive"
    assert len(archive.segments(folder)) > 2 * archive.Reader.OPEN_SEGMENTS
    for i in [*range(60), 0, 59, 0]:  # on to the end, then back to the first, evicted
        assert study.read(1, i).data == payload(1, i)
        assert _open_segments(folder) <= archive.Reader.OPEN_SEGMENTS + 1  # + the appender's
    study.close()
    assert _open_segments(folder) == 0
