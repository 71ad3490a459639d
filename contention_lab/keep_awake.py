"""Keeping idle vCPUs awake while a victim runs, so its alone baseline is not the hypervisor's.

On a VM, a vCPU with nothing to run halts and goes back to the host; waking it for the
next request takes as long as the host takes to run it again. A lightly loaded victim
alone is therefore *slower* than beside a busy neighbour that keeps the vCPUs awake, and a
slowdown "beside a neighbour / alone" then measures idle exits rather than interference.
``python -m contention_lab.idle_exits`` records how much (``scorer/data/idle-exits/``): on
this project's 2-vCPU VM the open-loop Redis victim's p99 alone is 5.0 ms, beside two CPU
hogs that keep both vCPUs busy 0.37–0.49 ms.

Nodes that serve latency-critical pods are tuned against exactly this: tuned's
latency-performance profile holds a PM QoS request of 0 µs on ``/dev/cpu_dma_latency``
(the cpuidle governor then picks polling instead of halting), or the kernel is booted with
``idle=poll``. Calibration does both things a user process can do, during every victim
run, alone and beside neighbours alike:

* :class:`PmQosRequest` holds ``/dev/cpu_dma_latency`` = 0 (where the file is writable),
  and says whether the kernel can honour it — without a cpuidle driver (``none`` in
  ``/sys/devices/system/cpu/cpuidle/current_driver``, as on this VM) nothing reads it;
* :class:`IdlePollers` runs one ``SCHED_IDLE`` spinner per CPU: the user-space
  ``idle=poll``. The scheduler runs a ``SCHED_IDLE`` task only when nothing else wants the
  CPU and preempts it when anything else wakes, so it takes (almost) no CPU from the victim
  or the neighbour; it keeps the vCPU from halting. Measured here it removes about a third
  of the latency-critical victim's alone p99 (5.0 → 3.2–3.7 ms), not all of it, and it
  slowed fio's completions and CPU-bound victims, so calibration uses it for the
  latency-critical victim only (the plan's ``idle_pollers``).

Neither runs while the node state is measured: the spinners would show as a busy CPU and as
run-queue waits, and the vector must be what an agent sees on the node.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

PM_QOS_DEVICE = Path("/dev/cpu_dma_latency")
CPUIDLE_DRIVER = Path("/sys/devices/system/cpu/cpuidle/current_driver")
#: The spinner: a bare loop (no syscalls, a few cache lines), at SCHED_IDLE.
SPIN = "while True: pass"
#: After starting the spinners, before the victim: their interpreters' start-up is done by then.
SETTLE_S = 0.5


def cpuidle_driver(path: Path = CPUIDLE_DRIVER) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class PmQosRequest:
    """Hold a CPU-latency PM QoS request of ``usec`` (0: never halt) for as long as the object lives."""

    def __init__(self, usec: int = 0, device: Path = PM_QOS_DEVICE, driver_file: Path = CPUIDLE_DRIVER):
        self.fd: int | None = None
        self.driver = cpuidle_driver(driver_file)
        try:
            self.fd = os.open(device, os.O_WRONLY)
            os.write(self.fd, struct.pack("i", usec))
            self.problem = None
        except OSError as err:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            self.problem = f"cannot hold a PM QoS request on {device}: {err.strerror or err}"
            log.warning("%s; idle vCPUs may halt between requests", self.problem)

    @property
    def held(self) -> bool:
        return self.fd is not None

    def describe(self) -> dict:
        """For the plan and the rows: whether the request is held and whether this kernel honours it."""
        honoured = self.held and self.driver not in (None, "none")
        note = (
            self.problem
            if not self.held
            else "held; honoured by the cpuidle driver " + repr(self.driver)
            if honoured
            else f"held, but the kernel has no cpuidle driver ({self.driver or 'none'}), so it changes nothing here"
        )
        return {"held": self.held, "cpuidle_driver": self.driver, "honoured": honoured, "note": note}

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> PmQosRequest:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _idle_policy() -> None:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class IdlePollers:
    """One SCHED_IDLE spinner per CPU while the context is open (``cpus`` = 0: none)."""

    def __init__(self, cpus: int | None = None):
        self.cpus = (os.cpu_count() or 1) if cpus is None else cpus
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        try:
            for _ in range(self.cpus):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-I", "-c", SPIN],
                        preexec_fn=_idle_policy,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        except BaseException:
            self.stop()
            raise
        if self.procs:
            time.sleep(SETTLE_S)

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()

    def __enter__(self) -> IdlePollers:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
