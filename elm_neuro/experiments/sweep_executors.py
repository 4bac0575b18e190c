"""Where a sweep's cells train: in this process, in a local process pool, or on Ray.

``local`` (:func:`run_local`) runs cells one after another in this process (threads:
``base.threads``, else one per physical core), or in ``workers`` spawned processes (one torch
thread each unless ``base.threads`` is set, as ``elm-neuro compare``;
:mod:`elm_neuro.training.runtime`).

``ray`` (:func:`run_ray`) runs each cell as a Ray task (:func:`ray_task_resources`:
``num_gpus=1`` when the cluster has GPUs and the device is not ``cpu``, else ``num_cpus=1`` with
one torch thread unless ``base.threads``) on the cluster at ``address``, or on a local Ray
instance with ``workers`` CPUs (:func:`connect_ray`; the caller shuts it down at the end). A
cluster must answer within ``timeout`` seconds (:data:`RAY_TIMEOUT_S` by default), else the
sweep stops with one line naming ``--address``. On a cluster the package must be installed on
every node and SWEEP_DIR and the data must be on a shared file system. Ray is optional (the
``distributed`` extra) and imported on demand (:func:`import_ray`).

Both train or resume each cell with :func:`elm_neuro.experiments.compare.run_cell` into its
run directory (:func:`~elm_neuro.experiments.sweep_plan.cell_path`) and report every cell to
``on_done(cell, summary, exc)`` as it ends: a cell that raises is reported (``summary`` None) and
left unfinished; the others go on.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from concurrent.futures import as_completed
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from elm_neuro.experiments.compare import run_cell
from elm_neuro.experiments.sweep_plan import cell_path
from elm_neuro.training.config import TrainConfig
from elm_neuro.training.runtime import check_not_terminated, init_worker, process_pool

RAY_HINT = "the ray executor needs Ray: pip install elm_neuro[distributed]"
#: Seconds a Ray cluster given by ``address`` has to answer before the sweep gives up.
RAY_TIMEOUT_S = 60.0


def _cell_job(run_dir: str, cfg_dict: dict) -> dict:
    check_not_terminated()  # a cell queued before the parent was terminated does not start
    return run_cell(Path(run_dir), TrainConfig.from_dict(cfg_dict), progress=False)


def _ray_cell_job(run_dir: str, cfg_dict: dict, single_thread: bool) -> dict:
    """Body of a Ray task: on CPU a worker's threads (the cell's ``threads``, else one), then
    train / resume the cell."""
    if single_thread or not torch.cuda.is_available():
        init_worker(cfg_dict.get("threads"))
    return run_cell(Path(run_dir), TrainConfig.from_dict(cfg_dict), progress=False)


def import_ray():
    """``ray``, imported on demand; ``ImportError`` with the install hint when it is missing."""
    try:
        import ray  # optional dependency (the "distributed" extra)
    except ImportError as exc:
        raise ImportError(RAY_HINT) from exc
    return ray


# --------------------------------------------------------------------------- local
def run_local(out, jobs, workers, progress, on_done) -> None:
    """Train ``jobs`` (sweep cells) here (``workers`` 1) or in ``workers`` spawned processes."""
    bar = tqdm(total=len(jobs), desc="sweep", unit="cell", disable=not progress)
    try:
        if workers <= 1:
            for cell in jobs:
                bar.set_postfix_str(cell.name)
                try:
                    s = run_cell(cell_path(out, cell.name), cell.config, progress)
                    on_done(cell, s, None)
                except Exception as exc:  # one failing cell must not stop the others
                    on_done(cell, None, exc)
                bar.update()
            return
        threads = jobs[0].config.threads if jobs else None
        with process_pool(workers, threads) as ex:
            futures = {ex.submit(_cell_job, str(cell_path(out, c.name)), c.config.to_dict()): c for c in jobs}
            for fut in as_completed(futures):
                try:
                    on_done(futures[fut], fut.result(), None)
                except Exception as exc:
                    on_done(futures[fut], None, exc)
                bar.update()
    finally:
        bar.close()


# --------------------------------------------------------------------------- Ray
def ray_task_resources(cluster_resources: dict, device: str) -> dict:
    """Resources of one cell's Ray task: one GPU when the cluster has GPUs and the training
    device is not ``cpu``, else one CPU."""
    if cluster_resources.get("GPU", 0) >= 1 and not str(device).startswith("cpu"):
        return {"num_gpus": 1}
    return {"num_cpus": 1}


def _ray_endpoint(address: str) -> Optional[tuple[str, int]]:
    """``(host, port)`` of a Ray address (``ray://HOST:PORT`` or ``HOST:PORT``); None for ``auto``."""
    text = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        return None if text in ("auto", "local") else (text, 10001 if "://" in address else 6379)
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ValueError(f"--address {address!r}: expected ray://HOST:PORT or HOST:PORT") from None


def _timeout_message(address: str, timeout: float) -> str:
    return (f"--address {address}: the Ray cluster did not answer within {timeout:g} s; check the address "
            f"(ray://HOST:10001 for a Ray Client server, HOST:6379 for the head node) and that the cluster is up")


def connect_ray(address: Optional[str], workers: int, timeout: float = RAY_TIMEOUT_S):
    """Start Ray (local instance with ``workers`` CPUs) or connect to the cluster at ``address``;
    returns ``(ray, started)``. A cluster that refuses or does not answer within ``timeout`` seconds
    raises ``TimeoutError`` / ``ConnectionError`` naming ``--address`` (Ray's own connect would
    wait much longer)."""
    import socket
    import threading

    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    if not address:
        ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        return ray, True
    endpoint = _ray_endpoint(address)
    if endpoint is not None:
        try:
            socket.create_connection(endpoint, timeout=timeout).close()
        except socket.timeout:
            raise TimeoutError(_timeout_message(address, timeout)) from None
        except OSError as exc:
            raise ConnectionError(f"--address {address}: cannot reach {endpoint[0]}:{endpoint[1]} "
                                  f"({exc.strerror or exc}); check the address and that the Ray cluster is up") from None
    outcome: dict = {}

    def init() -> None:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc

    import logging

    # Ray logs its connection attempt and warns that a non-main thread cannot set its SIGTERM handler:
    # quiet while connecting, so that a failure ends in one line.
    ray_logs = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                if name == "ray" or name.startswith("ray.")]
    levels = [log.level for log in ray_logs]
    for log in ray_logs:
        log.setLevel(logging.ERROR)

    thread = threading.Thread(target=init, name="ray-connect", daemon=True)
    refused = None
    with _stderr_to_file() as captured:  # Ray's core logs each failed attempt there: read, not shown
        thread.start()
        deadline = time.monotonic() + timeout
        while thread.is_alive() and time.monotonic() < deadline and refused is None:
            thread.join(AUTH_POLL_S)
            refused = _auth_refusal(captured.read_text(errors="replace"))
    for log, lvl in zip(ray_logs, levels):
        log.setLevel(lvl)
    if refused is not None and not ray.is_initialized():
        raise ConnectionError(_auth_message(address, ray.__version__))
    if thread.is_alive():
        raise TimeoutError(_timeout_message(address, timeout))
    if "error" in outcome:
        exc = outcome["error"]
        raise ConnectionError(f"--address {address}: Ray could not connect ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return ray, True


#: Seconds between looks at Ray's log for a refused authentication token while connecting.
AUTH_POLL_S = 0.25
_AUTH_MARKERS = ("InvalidAuthToken", "Unauthenticated")


@contextlib.contextmanager
def _stderr_to_file():
    """File descriptor 2 (where Ray's C++ core logs) redirected into a temporary file for the block;
    yields its path. Python's ``sys.stderr`` is flushed before and after."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryDirectory(prefix="elm-neuro-ray-") as tmp:
        path = Path(tmp) / "stderr.log"
        with open(path, "wb") as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield path
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)


def _auth_refusal(log: str) -> Optional[str]:
    """The line of Ray's log saying the cluster refused this process's authentication token, if any."""
    return next((line for line in log.splitlines() if any(m in line for m in _AUTH_MARKERS)), None)


def _auth_message(address: str, version: str) -> str:
    has_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    if has_mode:
        return (f"--address {address}: the Ray cluster refused this process's authentication token "
                f"(RAY_AUTH_MODE=token is set): give it the head node's token, in RAY_AUTH_TOKEN or the file "
                f"RAY_AUTH_TOKEN_PATH (default ~/.ray/auth_token, written by `ray start` on the head node), and run "
                f"the same command again")
    return (f"--address {address}: the Ray cluster requires token authentication (`ray start` of Ray "
            f"{version} turns it on by default) and this process sent no token: set RAY_AUTH_MODE=token in this "
            f"shell (the token comes from RAY_AUTH_TOKEN, or the file ~/.ray/auth_token that `ray start` wrote on "
            f"the head node: copy it to this machine) and run the same command again")


#: Seconds between looks at the cluster while no cell finishes, and how long its head node may stay
#: unreachable before the sweep stops (Ray's own core ends the process after 60 s without it).
RAY_POLL_S = 2.0
RAY_LOST_S = 10.0


class ClusterLost(ConnectionError):
    """The Ray cluster went away during a sweep; finished cells are kept, the rest resume later.
    ``hard_exit``: a command line ends the process at once after saying so, since Ray's core,
    whose cluster is gone, crashes the interpreter's normal exit (seen: SIGSEGV with Ray 2.60)."""

    hard_exit = True


def _reachable(endpoint: tuple[str, int]) -> bool:
    import socket

    try:
        socket.create_connection(endpoint, timeout=RAY_POLL_S).close()
        return True
    except OSError:
        return False


def _lost(ray, address: str, endpoint, unfinished: int, total: int) -> ClusterLost:
    import atexit

    atexit.unregister(ray.shutdown)  # Ray's exit hook would wait for the lost cluster
    return ClusterLost(f"--address {address}: the Ray cluster stopped answering ({endpoint[0]}:{endpoint[1]} "
                       f"unreachable for {RAY_LOST_S:g} s) with {unfinished} of {total} cells unfinished; finished "
                       f"cells are kept and unfinished ones resume from their checkpoints: run the same command "
                       f"again once the cluster is back (or with --executor local)")


def run_ray(out, jobs, ray, progress, on_done, address: Optional[str] = None) -> None:
    """Train ``jobs`` (sweep cells) as Ray tasks on the connected ``ray`` (:func:`connect_ray`). On a
    cluster given by ``address``, a head node unreachable for :data:`RAY_LOST_S` seconds ends the
    sweep with :class:`ClusterLost` (the cells already reported stay done; the others keep their
    run directories and checkpoints, so the same command resumes them)."""
    res = ray_task_resources(ray.cluster_resources(), jobs[0].config.device)
    gpus = "num_gpus" in res
    task = ray.remote(**res)(_ray_cell_job)
    refs = {task.remote(str(cell_path(out, c.name)), c.config.to_dict(), not gpus): c for c in jobs}
    endpoint = _ray_endpoint(address) if address else None
    bar = tqdm(total=len(jobs), desc="sweep (ray)", unit="cell", disable=not progress)
    since = None  # when the head node was first found unreachable
    try:
        while refs:
            try:
                done, _ = ray.wait(list(refs), num_returns=1, timeout=RAY_POLL_S if endpoint else None)
            except Exception:  # noqa: BLE001 - Ray's own errors when its cluster fails
                if endpoint is None or _reachable(endpoint):
                    raise
                done = []
            if not done and endpoint is not None:
                if _reachable(endpoint):
                    since = None
                elif since is None:
                    since = time.monotonic()
                elif time.monotonic() - since >= RAY_LOST_S:
                    refs.clear()  # nothing to cancel on a cluster that is gone
                    raise _lost(ray, address, endpoint, bar.total - bar.n, bar.total)
            for ref in done:
                cell = refs.pop(ref)
                try:
                    on_done(cell, ray.get(ref), None)
                except Exception as exc:
                    on_done(cell, None, exc)
                bar.update()
    finally:
        bar.close()
        for ref in refs:
            ray.cancel(ref)
