"""Follow a growing log file like ``tail -F``, returning complete lines.

Each :meth:`FileFollower.poll` reads what was appended since the previous one (no thread,
no busy loop: the caller decides when). A partial last line is kept until its newline
arrives. The file is followed by name:

* **rotation** (the name now points to another inode, e.g. Tetragon's own rotation or
  logrotate's rename + create): the old file is read to its end, then the new one from
  its start;
* **truncation** (size below the read offset, e.g. logrotate's copytruncate): reading
  starts over at 0;
* **absence**: the file may not exist yet; :attr:`problem` says why nothing can be read
  and each poll tries again;
* **read errors**: the file is closed with the error as :attr:`problem`; the next poll
  reopens it and, if it is still the same file, resumes where it stopped.

A file that already exists at the first open is read from its end (``start_at_end``): what
it holds happened before we started. A file that appears later, or replaces the old
one, is read from its start. Memory is bounded: one read chunk, one partial line of at
most ``max_line_bytes`` (longer lines are dropped and counted), and at most
``budget_bytes`` of lines per poll (the rest is read by the next poll).

Limits shared with ``tail -F``: a file truncated and regrown past the old offset between
two polls looks merely appended to; lines the writer appends to the old file after the
new one appeared and was switched to are lost.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from pathlib import Path

DEFAULT_MAX_LINE_BYTES = 1 << 20
DEFAULT_BUDGET_BYTES = 32 << 20
READ_CHUNK_BYTES = 256 << 10

# Why bytes were dropped instead of returned as lines (a fixed set: bounded counters).
LINE_TOO_LONG = "line too long"
CUT_BY_ROTATION = "incomplete last line of a rotated file"
CUT_BY_TRUNCATION = "incomplete line of a truncated file"


class FileFollower:
    def __init__(
        self,
        path: str | Path,
        *,
        start_at_end: bool = True,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
    ):
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes: must be >= 1, got {max_line_bytes!r}")
        if budget_bytes < 1:
            raise ValueError(f"budget_bytes: must be >= 1, got {budget_bytes!r}")
        self.path = Path(path)
        self.start_at_end = start_at_end
        self.max_line_bytes = max_line_bytes
        self.budget_bytes = budget_bytes
        self._fd: int | None = None
        self._id: tuple[int, int] | None = None
        self._offset = 0
        self._partial = bytearray()
        self._skipping = False
        """Discarding bytes up to the next newline (a too-long line, or the tail of one)."""
        self._looked = False
        self._resume: tuple[tuple[int, int] | None, int, bool] | None = None
        """(file id, offset, skipping) to resume at after a read error closed the file."""
        self.problem: str | None = f"{self.path} not opened yet"
        """Why the file cannot be followed right now (None while it is open)."""
        self._budget = budget_bytes
        self.behind = False
        """The last poll stopped at its byte budget: more is waiting."""
        self.dropped: Counter[str] = Counter()
        """Lines dropped, by reason (LINE_TOO_LONG, CUT_BY_ROTATION, CUT_BY_TRUNCATION)."""
        self.rotations = 0
        self.truncations = 0

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def poll(self) -> list[bytes]:
        """Complete lines (without their newline) appended since the previous poll."""
        lines: list[bytes] = []
        self._budget = self.budget_bytes
        self.behind = False
        try:
            self._poll(lines)
        except OSError as err:  # a read error (EIO, a vanished mount): reopen on the next poll
            self._close_after_error(err)
        return lines

    def _poll(self, lines: list[bytes]) -> None:
        if self._fd is None and not self._open():
            return
        if not self._drain(lines):
            return
        try:
            st = os.stat(self.path)
        except OSError:
            return  # renamed away, the new file not created yet: keep reading the old one
        if (st.st_dev, st.st_ino) != self._id:
            self._rotate(lines)
        elif os.fstat(self._fd).st_size < self._offset:
            self._truncated(lines)

    def _close_after_error(self, err: OSError) -> None:
        if self._fd is not None:
            # Resume at the start of the pending line: its bytes are read again, not lost.
            self._resume = (self._id, self._offset - len(self._partial), self._skipping)
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = self._id = None
        self._partial.clear()
        self.problem = f"{self.path}: {err.strerror or err}"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self._id = None
        self.problem = f"{self.path} closed"

    # ---------------------------------------------------------------- internals

    def _open(self) -> bool:
        at_end = self.start_at_end and not self._looked  # only a file there when we first look is old
        self._looked = True
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.problem = f"{self.path} does not exist (yet)"
            return False
        except OSError as err:
            self.problem = f"{self.path}: {err.strerror or err}"
            return False
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self.problem = f"{self.path} is not a regular file"
            return False
        resume, self._resume = self._resume, None
        self._fd, self._id = fd, (st.st_dev, st.st_ino)
        self._partial.clear()
        self._skipping = False
        self._offset = 0
        if resume is not None and resume[0] == self._id and resume[1] <= st.st_size:
            self._offset, self._skipping = resume[1], resume[2]  # the file we lost to an error: no re-reading
        elif at_end and st.st_size > 0:
            # Start at the end, but on a line boundary: skip the rest of a line being written.
            self._offset = st.st_size
            self._skipping = os.pread(fd, 1, st.st_size - 1) != b"\n"
        self.problem = None
        return True

    def _drain(self, lines: list[bytes]) -> bool:
        """Read to the current end of file; False when the budget ran out first."""
        while True:
            if self._budget <= 0:
                self.behind = True
                return False
            chunk = os.pread(self._fd, min(READ_CHUNK_BYTES, self._budget), self._offset)
            if not chunk:
                return True
            self._offset += len(chunk)
            self._budget -= len(chunk)
            self._split(chunk, lines)

    def _split(self, chunk: bytes, lines: list[bytes]) -> None:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not self._skipping:
                    self._partial += chunk[start:]
                    if len(self._partial) > self.max_line_bytes:
                        self._partial.clear()
                        self._skipping = True
                        self.dropped[LINE_TOO_LONG] += 1
                return
            if self._skipping:
                self._skipping = False
            elif self._partial:
                self._partial += chunk[start:nl]
                if len(self._partial) > self.max_line_bytes:
                    self.dropped[LINE_TOO_LONG] += 1
                else:
                    lines.append(bytes(self._partial))
                self._partial.clear()
            elif nl - start > self.max_line_bytes:
                self.dropped[LINE_TOO_LONG] += 1
            else:
                lines.append(chunk[start:nl])
            start = nl + 1

    def _rotate(self, lines: list[bytes]) -> None:
        if not self._drain(lines):  # writes to the old file since the first drain
            return  # finish the old file on the next poll, then switch
        if self._partial:
            self.dropped[CUT_BY_ROTATION] += 1
        os.close(self._fd)
        self._fd = self._id = None
        self.rotations += 1
        if self._open():
            self._drain(lines)

    def _truncated(self, lines: list[bytes]) -> None:
        if self._partial:
            self.dropped[CUT_BY_TRUNCATION] += 1
        self._partial.clear()
        self._skipping = False
        self._offset = 0
        self.truncations += 1
        self._drain(lines)
