"""Resident memory and CPU time of a process, read from Linux ``/proc``.

``fanout.py`` uses these to report a server's memory per connection (``VmRSS`` before and
after the clients connect) and the CPU use of the server and of the load generator over the
measured window (``utime + stime`` from ``/proc/<pid>/stat``, as a percentage of one core).
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from dataclasses import dataclass, field

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """The process's resident set size (``VmRSS``), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_times(pid: int) -> tuple[float, float]:
    """``(user, system)`` CPU time the process (all its threads) has used so far, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    # The command name (field 2) may hold spaces; the fields after its closing ")" do not.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return utime / CLOCK_TICKS_PER_SECOND, stime / CLOCK_TICKS_PER_SECOND


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process (all its threads) has used so far, in seconds."""
    return sum(cpu_times(pid))


def core_seconds(cpu: int) -> tuple[float, float]:
    """Time core ``cpu`` has spent since boot, in seconds, whoever ran on it, as
    ``(tasks, interrupts)``: ``tasks`` is user, nice, system and hypervisor steal time;
    ``interrupts`` is hard and soft IRQ time (on loopback the TCP stack runs there: a fifth of
    a core or more when small frames flow). Set against :func:`cpu_seconds` of the process
    pinned to the core, ``tasks`` shows what else took it."""
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if line.startswith(f"cpu{cpu} "):
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
                tasks = user + nice + system + steal
                return tasks / CLOCK_TICKS_PER_SECOND, (irq + softirq) / CLOCK_TICKS_PER_SECOND
    raise RuntimeError(f"no cpu{cpu} in /proc/stat")


@dataclass
class CpuSampler:
    """Samples the CPU time of some processes at a fixed interval, so the CPU used over any
    window inside the sampled span can be read afterwards (by linear interpolation).

    Sampling in the background, rather than reading ``/proc`` at the window's edges, lets the
    window be defined after the fact by timestamps the load generator reports.
    """

    pids: dict[str, int]
    """Name -> pid of each process to sample; recorded as ``<name>`` (user + system),
    ``<name>_user`` and ``<name>_system``."""
    cores: dict[str, int] = field(default_factory=dict)
    """Name -> number of each core to sample; recorded as ``<name>`` (task time) and
    ``<name>_irq`` (interrupt time), see :func:`core_seconds`."""
    interval: float = 0.05
    """Seconds between samples."""
    times: list[float] = field(default_factory=list)
    """Wall-clock time of each sample (``time.time()``)."""
    samples: dict[str, list[float]] = field(default_factory=dict)
    """Name -> CPU seconds at each sample."""

    async def run(self) -> None:
        """Sample until cancelled (or until a process is gone)."""
        try:
            while True:
                self.sample()
                await asyncio.sleep(self.interval)
        except (FileNotFoundError, ProcessLookupError):
            return

    def sample(self) -> None:
        """Take one sample of every process now."""
        values: dict[str, float] = {}
        for name, pid in self.pids.items():
            user, system = cpu_times(pid)
            values[name], values[f"{name}_user"], values[f"{name}_system"] = user + system, user, system
        for name, cpu in self.cores.items():
            values[name], values[f"{name}_irq"] = core_seconds(cpu)
        self.times.append(time.time())
        for name, value in values.items():
            self.samples.setdefault(name, []).append(value)

    def seconds(self, name: str, start: float, end: float) -> float | None:
        """CPU seconds used by process or core ``name`` between wall-clock ``start`` and
        ``end``; ``None`` when the samples do not cover the window."""
        if end <= start or not self.times or start < self.times[0] or end > self.times[-1]:
            return None
        return self._at(name, end) - self._at(name, start)

    def percent_of_core(self, name: str, start: float, end: float) -> float | None:
        """CPU used by process or core ``name`` between wall-clock ``start`` and ``end``, as %
        of one core; ``None`` when the samples do not cover the window."""
        used = self.seconds(name, start, end)
        return None if used is None else 100.0 * used / (end - start)

    def _at(self, name: str, when: float) -> float:
        values = self.samples[name]
        i = bisect.bisect_left(self.times, when)
        if self.times[i] == when or i == 0:
            return values[i]
        t0, t1 = self.times[i - 1], self.times[i]
        return values[i - 1] + (values[i] - values[i - 1]) * (when - t0) / (t1 - t0)
