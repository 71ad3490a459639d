"""Following Tetragon's export file like ``tail -F``: lines appended in pieces, rotation,
truncation, a file that does not exist yet, garbage - read without loss, duplicates or crash."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from doubles import FakeClock

from agent.tetragon.file_source import ExportFileSource
from agent.tetragon.follow import CUT_BY_ROTATION, CUT_BY_TRUNCATION, LINE_TOO_LONG, FileFollower
from agent.tetragon.parse import BAD_FIELD, NOT_JSON, NOT_UTF8

REPO = Path(__file__).resolve().parent.parent
SHARED_EVENTS = REPO.parent / "shared" / "fixtures" / "tetragon" / "events.json"
FIXTURES = Path(__file__).parent / "fixtures" / "tetragon"


def event(i: int, kind: str = "process_exec", pod: str | None = "web") -> bytes:
    process = {"exec_id": f"e{i}", "pid": 1000 + i, "binary": "/bin/true"}
    if pod:
        process["pod"] = {"namespace": "shop", "name": pod}
    return json.dumps({kind: {"process": process}, "node_name": "n1", "time": "2024-05-01T10:00:00Z"}).encode() + b"\n"


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# ------------------------------------------------------------------ FileFollower


def test_partial_lines_wait_for_their_newline(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    f = FileFollower(log)
    assert f.poll() == [] and f.is_open and f.problem is None
    append(log, b'{"a":')
    assert f.poll() == []
    append(log, b'1}\n{"b":2}\n{"c"')
    assert f.poll() == [b'{"a":1}', b'{"b":2}']
    assert f.poll() == []
    append(log, b":3}\n")
    assert f.poll() == [b'{"c":3}']


def test_existing_file_is_read_from_its_end_on_a_line_boundary(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"old 1\nold 2\nhalf of a li")  # the writer is mid-line as we start
    f = FileFollower(log)
    assert f.poll() == []
    append(log, b"ne\nnew 1\n")
    assert f.poll() == [b"new 1"]
    assert sum(f.dropped.values()) == 0  # the tail we skipped is not a rejected line


def test_missing_file_then_created_is_read_from_its_start(tmp_path):
    log = tmp_path / "sub" / "tetragon.log"
    f = FileFollower(log)
    assert f.poll() == [] and not f.is_open
    assert f.problem == f"{log} does not exist (yet)"
    log.parent.mkdir()
    log.write_bytes(b"first\nsecond\n")
    assert f.poll() == [b"first", b"second"]


def test_not_a_regular_file(tmp_path):
    f = FileFollower(tmp_path)
    assert f.poll() == [] and f.problem == f"{tmp_path} is not a regular file"


def test_rotation_finishes_the_old_file_then_reads_the_new_one(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    f = FileFollower(log)
    f.poll()
    append(log, b"a1\na2\n")
    os.rename(log, tmp_path / "tetragon.log.1")
    append(tmp_path / "tetragon.log.1", b"a3\n")  # the writer still finishes the old file
    assert f.poll() == [b"a1", b"a2", b"a3"]  # no new file yet: keep reading the old one
    append(tmp_path / "tetragon.log.1", b"a4\n")
    log.write_bytes(b"b1\nb2")
    assert f.poll() == [b"a4", b"b1"]
    assert f.rotations == 1
    append(log, b"\nb3\n")
    assert f.poll() == [b"b2", b"b3"]


def test_rotation_drops_and_counts_an_incomplete_last_line(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    f = FileFollower(log)
    f.poll()
    append(log, b"a1\ncut sho")
    assert f.poll() == [b"a1"]
    os.rename(log, tmp_path / "tetragon.log.1")
    log.write_bytes(b"b1\n")
    assert f.poll() == [b"b1"]
    assert f.dropped == {CUT_BY_ROTATION: 1}


def test_truncation_starts_over(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    f = FileFollower(log)
    f.poll()
    append(log, b"a1\na2\npartial")
    assert f.poll() == [b"a1", b"a2"]
    with open(log, "r+b") as fh:  # copytruncate
        fh.truncate(0)
    append(log, b"b1\n")
    assert f.poll() == [b"b1"]
    assert f.truncations == 1 and f.dropped == {CUT_BY_TRUNCATION: 1}
    append(log, b"b2\n")
    assert f.poll() == [b"b2"]


def test_too_long_lines_are_dropped_and_counted_also_across_polls(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    f = FileFollower(log, max_line_bytes=10)
    f.poll()
    append(log, b"short\n" + b"x" * 25 + b"\nok\n")
    assert f.poll() == [b"short", b"ok"]
    append(log, b"y" * 8)
    assert f.poll() == []
    append(log, b"y" * 8)  # now over the limit while still incomplete
    assert f.poll() == []
    append(log, b"yyy\nfine\n" + b"z" * 10 + b"\n")
    assert f.poll() == [b"fine", b"z" * 10]
    assert f.dropped == {LINE_TOO_LONG: 2}


def test_a_read_error_reopens_and_resumes_without_repeating(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    f = FileFollower(log)
    f.poll()
    append(log, b"a1\na2\nhal")
    assert f.poll() == [b"a1", b"a2"]
    os.close(f._fd)  # the descriptor goes bad under the follower: the next read fails (EBADF)
    append(log, b"f\na3\n")
    assert f.poll() == [] and not f.is_open and f.problem == f"{log}: Bad file descriptor"
    assert f.poll() == [b"half", b"a3"]  # reopened at the pending line, nothing read twice


def test_budget_bounds_one_poll_and_the_rest_follows(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    f = FileFollower(log, budget_bytes=100)
    f.poll()
    lines = [f"line {i:04d}".encode() for i in range(50)]  # 10 bytes with the newline
    append(log, b"".join(line + b"\n" for line in lines) + b"line 0050")
    got = f.poll()
    assert f.behind and len(got) == 10
    while f.behind:
        got += f.poll()
    assert got == lines
    append(log, b"\n")
    assert f.poll() == [b"line 0050"]


def test_random_pieces_and_rotations_lose_and_repeat_nothing(tmp_path):
    """A writer appends in random pieces and rotates at random; polls in between see every line once."""
    rng = random.Random(20240501)
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    f = FileFollower(log)
    f.poll()
    written, read, rotations, pending = [], [], 0, b""
    for i in range(600):
        line = f"line {i} {'x' * rng.randrange(0, 300)}".encode()
        written.append(line)
        pending += line + b"\n"
        while pending and rng.random() < 0.7:  # a write of a random piece
            n = rng.randrange(1, len(pending) + 1)
            append(log, pending[:n])
            pending = pending[n:]
        if rng.random() < 0.02:  # rotate on a line boundary, as Tetragon does
            append(log, pending)
            pending = b""
            os.rename(log, tmp_path / f"tetragon.log.{rotations}")
            log.write_bytes(b"")
            rotations += 1
            read += f.poll()  # at most one rotation between two polls
        elif rng.random() < 0.3:
            read += f.poll()
    append(log, pending)
    read += f.poll()
    assert rotations >= 5 and f.rotations == rotations
    assert read == written


# ------------------------------------------------------------------ ExportFileSource


def test_source_counts_events_exactly_among_garbage(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    clock = FakeClock(1000.0)
    src = ExportFileSource(log, clock=clock)
    src.poll()
    garbage = (FIXTURES / "garbage.log").read_bytes()
    append(log, SHARED_EVENTS.read_bytes())  # 3 execs in pods
    append(log, garbage[: len(garbage) // 2])
    src.poll()
    append(log, garbage[len(garbage) // 2 :])
    append(log, event(1, "process_exit") + event(2, pod=None) + event(3, "process_kprobe"))
    src.poll()
    tally = src.take()
    assert (tally.execs, tally.exits, tally.host) == (4, 1, 1)
    assert sum(tally.pods.values()) == 4 and tally.dropped == 0
    counts = src.counts()
    assert counts.parsed == {"exec": 4, "exit": 1}
    assert counts.ignored == {"process_kprobe": 3, "process_tracepoint": 1}
    assert counts.rejected == {NOT_JSON: 3, NOT_UTF8: 1, BAD_FIELD: 2, "empty line": 1}
    assert src.take().events == 0  # taken: the next interval starts at zero


def test_source_status_names_the_file_and_follows_it_into_existence(tmp_path):
    log = tmp_path / "tetragon.log"
    clock = FakeClock(1000.0)
    src = ExportFileSource(log, clock=clock)
    src.poll()
    st = src.status()
    assert not st.live and st.reason == f"Tetragon export file {log} does not exist (yet)"
    clock.advance(1)
    shutil.copy(SHARED_EVENTS, log)
    src.poll()
    assert src.status().live and src.status().live_since == clock.t
    assert src.take().execs == 3  # a file that appears is new: read from its start


def test_source_goes_stale_when_nothing_is_appended(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(event(0))
    clock = FakeClock(1000.0)
    src = ExportFileSource(log, clock=clock, stale_after_s=60)
    src.poll()
    opened = clock.t
    clock.advance(59)
    src.poll()
    assert src.status().live and src.status().live_since == opened
    clock.advance(2)
    src.poll()
    st = src.status()
    assert not st.live and "nothing appended for 61 s" in st.reason and str(log) in st.reason
    append(log, event(1))
    clock.advance(1)
    src.poll()
    assert src.status().live and src.status().live_since == clock.t  # a fresh live period
    assert src.take().execs == 1


def test_source_marks_an_interval_read_behind(tmp_path):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    src = ExportFileSource(log, clock=FakeClock(1000.0), budget_bytes=1000)
    src.poll()
    append(log, b"".join(event(i) for i in range(40)))
    src.poll()
    first = src.take()
    assert first.incomplete and "reading behind" in first.incomplete
    while src.follower.behind:
        src.poll()
    assert first.execs + src.take().execs == 40


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_shared_sample_written_in_pieces(tmp_path, chunk):
    log = tmp_path / "tetragon.log"
    log.write_bytes(b"")
    src = ExportFileSource(log, clock=FakeClock(1000.0))
    src.poll()
    data = SHARED_EVENTS.read_bytes()
    for i in range(0, len(data), chunk):
        append(log, data[i : i + chunk])
        src.poll()
    assert src.take().execs == 3 and src.counts().rejected == {}
