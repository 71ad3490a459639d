"""The calibration's progress bar: tqdm when it is installed and wanted, else a silent counter."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class NoBar:
    """What the calibration asks of a progress bar, counting and showing nothing."""

    total = n = 0

    def __init__(self, total):
        self.total = total

    def update(self, k):
        self.n += k

    def set_description(self, _):
        pass

    def close(self):
        pass


def progress_bar(total: int, enabled: bool, initial: int = 0):
    """A bar over ``total`` runs: tqdm's when ``enabled`` and tqdm is installed, else :class:`NoBar`."""
    if not enabled:
        return NoBar(total)
    try:
        from tqdm import tqdm
    except ImportError:  # the train extra brings tqdm; without it, measure without a bar
        log.warning("no progress bar: tqdm is not installed (pip install -e '.[train]')")
        return NoBar(total)

    return tqdm(total=total, initial=initial, unit="run", dynamic_ncols=True)
