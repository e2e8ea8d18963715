"""The worker: torch, Lightning, MLflow and the stages imported once, a forked child for each stage run.

One process per workspace (``python -m pipeline worker start`` runs ``python -m pipeline.worker.server``). It
imports what the stages import (:data:`PRELOAD`), then serves one single-threaded loop on a Unix socket: a run
request forks a child that takes the client's stdin, stdout and stderr, working directory, environment and
arguments and runs the stage module as ``python -m`` would; the loop reports the child's exit code to its client,
and terminates a child whose client has gone (killed or closed). Forking from one thread, before any library
has started a thread pool or initialised CUDA (checked at start), gives each child what a fresh process has.

The worker declines a request, and the client runs the stage itself, when the request's pipeline code, interpreter
or load-time environment (:data:`pipeline.worker.client.LOAD_TIME_ENV`) differ from the worker's. It exits after
``--idle-minutes`` without a run, on ``stop``, or on SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.worker.client import (PACKAGE, code_digest, interpreter, load_time_env, private, receive, send,
                                    socket_path)

# What the stages import, at module level or inside the functions they run; a module missing here is merely
# imported by the child that needs it (slower, never wrong).
PRELOAD = (
    "numpy", "pandas", "pyarrow.parquet", "yaml", "pydantic", "torch", "lightning.pytorch", "safetensors.torch",
    "mlflow", "mlflow.tracking", "mlflow.pyfunc", "mlflow.models", "sqlalchemy", "sklearn.linear_model",
    "sklearn.ensemble", "sklearn.neighbors", "sklearn.metrics", "sklearn.model_selection", "matplotlib.pyplot",
    "pipeline.stages.ingest", "pipeline.stages.split", "pipeline.stages.clean", "pipeline.stages.scale",
    "pipeline.stages.train", "pipeline.stages.evaluate", "pipeline.evaluation.plots", "pipeline.evaluation.baselines",
    "pipeline.tracking",
)
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
TICK_S = 0.1  # how often the loop reaps children and checks the idle time


@dataclass
class Worker:
    """The worker's state: what it serves, its listening socket and the runs in flight (child pid -> client)."""

    root: Path
    digest: str
    environment: dict[str, str]  # the load-time variables the worker was started with (before its imports)
    imported_env: dict[str, str]  # what its imports added to the environment, as they would in a fresh process
    listener: socket.socket
    idle_s: float
    started: float = field(default_factory=time.time)
    served: int = 0
    last_active: float = field(default_factory=time.monotonic)
    running: dict[int, socket.socket] = field(default_factory=dict)
    stopping: bool = False

    def status(self) -> dict[str, Any]:
        """What ``worker status`` prints."""
        return {"pid": os.getpid(), "root": str(self.root), "started": self.started, "served": self.served,
                "running": len(self.running), "idle_minutes": self.idle_s / 60, "package": str(PACKAGE),
                "environment": self.environment}


def preload() -> float:
    """Import :data:`PRELOAD`; the seconds it took. Refuses to serve if that initialised CUDA or started a thread:
    a forked child could not use CUDA, and a thread's locks would be copied held."""
    import threading

    os.environ.setdefault(NVML_CHECK, "1")  # a device count without initialising CUDA
    started = time.perf_counter()
    import matplotlib

    matplotlib.use("Agg")  # as pipeline.reporting chooses; before pyplot loads
    for name in PRELOAD:
        importlib.import_module(name)
    import torch

    if torch.cuda.is_initialized():
        raise SystemExit("pipeline worker: importing the stages initialised CUDA; a forked child could not use it")
    if threading.active_count() > 1:
        names = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
        raise SystemExit(f"pipeline worker: importing the stages started threads {names}; forking would copy them")
    return time.perf_counter() - started


def declined(worker: Worker, message: dict[str, Any]) -> str | None:
    """Why ``worker`` must not run this request (its client then runs the stage itself), or ``None``."""
    if message.get("python") != interpreter():
        return f"the worker runs Python {interpreter()}, this stage {message.get('python')}"
    if message.get("package") != str(PACKAGE) or message.get("digest") != worker.digest:
        return "pipeline/ changed since the worker started; restart it: python -m pipeline worker start"
    wanted = load_time_env(message.get("env", {}))
    if wanted != worker.environment:
        names = sorted(k for k in set(wanted) | set(worker.environment) if wanted.get(k) != worker.environment.get(k))
        return f"the environment differs from the worker's in {', '.join(names)}"
    return None


def run_child(message: dict[str, Any], fds: list[int], imported_env: dict[str, str]) -> None:
    """In the forked child: become the stage process the client would have been, run the module, exit."""
    for fd, target in zip(fds, (0, 1, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(message["cwd"])
    os.environ.clear()
    os.environ.update(message["env"])
    for key, value in imported_env.items():  # what torch and the stages set while loading, in a fresh process too
        os.environ.setdefault(key, value)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    # the same stream objects (logging handlers made at import hold them), now on the client's descriptors and
    # buffered as Python buffers a new process's: stdout by line on a terminal, else in blocks
    sys.stdout.reconfigure(line_buffering=os.isatty(1), write_through=bool(os.environ.get("PYTHONUNBUFFERED")))
    module, *args = message["command"]
    sys.modules.pop(module, None)  # run as __main__, as `python -m` does, not as the module imported here
    code: int | str | None = 0
    try:
        sys.argv = [module, *args]  # runpy puts the module's file first, as `python -m` does
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to a fresh process
        traceback.print_exc()
        code = 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    finish(0 if code is None else int(code))


def finish(code: int) -> None:
    """End the child as Python ends a process: wait for its non-daemon threads, run the exit handlers (MLflow's,
    logging's), flush the streams; then leave without unwinding into the worker's loop it was forked in."""
    import atexit
    import threading

    try:
        threading._shutdown()  # what interpreter shutdown does first
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BaseException:  # noqa: BLE001 - a broken pipe or an exit handler's failure: the code stands
        pass
    os._exit(code)


def start_run(worker: Worker, selector: selectors.BaseSelector, conn: socket.socket, message: dict[str, Any],
              fds: list[int]) -> None:
    """Fork a child for a run request and tell the client its pid (or why it is declined)."""
    reason = declined(worker, message)
    if reason is not None or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        send(conn, {"declined": reason or "expected the client's stdin, stdout and stderr"})
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        try:
            worker.listener.close()
            for other in worker.running.values():
                other.close()
            conn.close()
            run_child(message, fds, worker.imported_env)
        except BaseException:  # noqa: BLE001 - e.g. the client's folder was removed: never back into the loop
            traceback.print_exc()
        finally:
            os._exit(1)
    for fd in fds:
        os.close(fd)
    worker.running[pid] = conn
    worker.served += 1
    selector.register(conn, selectors.EVENT_READ, pid)
    send(conn, {"pid": pid})


def accept(worker: Worker, selector: selectors.BaseSelector) -> None:
    """One connection on the listening socket: a run, a status request or a stop."""
    conn, _ = worker.listener.accept()
    worker.last_active = time.monotonic()
    _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if uid != os.getuid():  # the folder is this user's only; a second check costs nothing
        conn.close()
        return
    conn.settimeout(10)  # a client that connects and says nothing must not stall every other run
    try:
        message, fds = receive(conn, with_fds=True)
    except OSError:
        conn.close()
        return
    conn.settimeout(None)
    op = (message or {}).get("op")
    if op == "run":
        start_run(worker, selector, conn, message, fds)
        return
    for fd in fds:
        os.close(fd)
    if op == "stop":
        worker.stopping = True
    send(conn, worker.status())
    conn.close()


def client_gone(worker: Worker, selector: selectors.BaseSelector, conn: socket.socket, pid: int) -> None:
    """A running child's client closed its side (it was killed): terminate the child, as its parent's death would
    have ended a stage run in-process."""
    selector.unregister(conn)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def reap(worker: Worker, selector: selectors.BaseSelector) -> None:
    """Report each child that has exited to its client (128 + the signal for one that a signal ended)."""
    while worker.running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        conn = worker.running.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        try:
            selector.unregister(conn)
        except KeyError:  # already unregistered when its client went away
            pass
        try:
            send(conn, {"exit": 128 - code if code < 0 else code})
        except OSError:
            pass
        conn.close()
        worker.last_active = time.monotonic()


def _still_there(conn: socket.socket) -> bool:
    """Whether a running child's client still holds its end (it sends nothing: readable means closed)."""
    try:
        return bool(conn.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def serve(worker: Worker) -> None:
    """The loop: accept requests, watch running clients, reap children; return on stop, SIGTERM or idleness."""
    selector = selectors.DefaultSelector()
    selector.register(worker.listener, selectors.EVENT_READ, None)
    while not worker.stopping:
        for key, _ in selector.select(TICK_S):
            if key.data is None:
                accept(worker, selector)
            elif not _still_there(key.fileobj):
                client_gone(worker, selector, key.fileobj, key.data)
        reap(worker, selector)
        if not worker.running and time.monotonic() - worker.last_active > worker.idle_s:
            print(f"pipeline worker: idle for {worker.idle_s / 60:g} minutes; exiting", flush=True)
            break
    for pid in list(worker.running):  # stopped with runs in flight: they end as a SIGTERM would end them
        os.kill(pid, signal.SIGTERM)
    while worker.running:
        reap(worker, selector)
        time.sleep(TICK_S)


def listen(path: Path) -> socket.socket:
    """The listening socket at ``path``, in a folder only this user can enter."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not private(path.parent):
        raise SystemExit(f"pipeline worker: {path.parent} belongs to another user or others may enter it; "
                         "expected a folder of this user's only")
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    return listener


def main() -> None:
    parser = argparse.ArgumentParser(description="serve stage runs for one workspace (see pipeline worker start)")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--idle-minutes", type=float, required=True)
    args = parser.parse_args()
    root = args.root.resolve()
    os.chdir(root)
    before = dict(os.environ)
    seconds = preload()
    # what the imports set (KMP_*, CUBLAS_WORKSPACE_CONFIG ...), less the worker's own CUDA-check switch
    added = {k: v for k, v in os.environ.items() if k not in before and k != NVML_CHECK}
    path = socket_path(root)
    worker = Worker(root, code_digest(), load_time_env(before), added, listen(path), args.idle_minutes * 60)
    signal.signal(signal.SIGTERM, lambda *_: setattr(worker, "stopping", True))
    print(f"pipeline worker: pid {os.getpid()} serving {root} on {path} (imports took {seconds:.1f} s)", flush=True)
    try:
        serve(worker)
    finally:
        path.unlink(missing_ok=True)
    # a clean stop leaves nothing behind; a failed start or a crash leaves the log for `worker start` to quote
    path.with_suffix(".log").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
