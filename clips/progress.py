"""Progress of long work (preprocessing, evaluation, prediction): count, and the time left.

On a terminal one line is rewritten in place (a bar); in a log (a file, a pipe, a batch job) a plain line is
written at most every ``every_s`` seconds and at the end, so a long job shows it lives without flooding its log.
"""
from __future__ import annotations

import sys
import time


def eta_text(seconds: float) -> str:
    if seconds >= 5400:
        return f"about {seconds / 3600:.1f} h left"
    if seconds >= 90:
        return f"about {seconds / 60:.0f} min left"
    return f"about {seconds:.0f} s left"


class Progress:
    def __init__(self, total: int, label: str, log=print, every_s: float = 5.0, stream=None):
        self.total, self.label, self.log, self.every_s = total, label, log, every_s
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done, self.began, self.shown = 0, time.perf_counter(), float("-inf")

    def line(self) -> str:
        elapsed = time.perf_counter() - self.began
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        tail = eta_text(left) if self.done < self.total else f"done in {elapsed:.0f} s"
        return f"{self.label}: {self.done}/{self.total} ({tail})"

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        last = self.done >= self.total
        if self.tty:
            width = 24
            filled = int(width * self.done / max(self.total, 1))
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.line()}" + ("\n" if last else ""))
            self.stream.flush()
        elif last or now - self.shown >= self.every_s:
            self.log(self.line())
            self.shown = now
