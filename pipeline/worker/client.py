"""A stage's side of the worker: hand this run to a preloaded worker when one serves the workspace.

``python -m pipeline.stages.<name>`` spends 0.4-5 s importing torch, Lightning, MLflow, scikit-learn and
matplotlib before it does any work; an experiment that changes one knob pays that in train and again in evaluate.
``python -m pipeline worker start`` imports them once, in a process that forks a child for each stage run. The
stage process then stays a thin client: it passes its stdin, stdout and stderr (the descriptors themselves, over a
Unix socket), its working directory, environment and arguments, forwards Ctrl-C, SIGTERM and SIGHUP to the child,
and exits with the child's exit code. DVC sees the same command, output and exit code either way.

The stage runs in this process instead, as it always did, when no worker serves this directory, when
``PIPELINE_WORKER=off``, or when the worker would not run it exactly as a fresh process would: its code
(``pipeline/``) differs from this checkout's, or its interpreter, or an environment variable read when libraries
load (threads, CUDA, hash seed: :data:`LOAD_TIME_ENV`). This module imports nothing beyond the standard library:
it runs before the stage's own imports.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[1]  # the pipeline package this process imported
# Environment variables read when torch, OpenMP, BLAS, CUDA, matplotlib or Python itself load: a worker whose values
# differ has libraries set up differently from a fresh process, so it does not serve that client.
LOAD_TIME_ENV = ("OMP_", "KMP_", "MKL_", "OPENBLAS_", "GOTO", "NUMEXPR_", "CUDA_", "CUBLAS_", "NVIDIA_", "TORCH",
                 "PYTORCH_", "PYTHON", "MPL", "LD_", "VIRTUAL_ENV")
HEADER = struct.Struct("!I")  # each message: its length, then that many bytes of JSON
SWITCH = "PIPELINE_WORKER"  # off: never hand a stage to a worker
# set in the extra processes of a data-parallel training (Lightning's launcher, torchrun, SLURM): they run in place
DDP_PROCESS = frozenset({"LOCAL_RANK", "RANK", "SLURM_PROCID"})


def socket_path(root: Path) -> Path:
    """Where the worker serving ``root`` listens: one per workspace and user, under the temp folder (a socket
    path is limited to about 100 characters, too few for a workspace path)."""
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"pipeline-worker-{os.getuid()}" / f"{digest}.sock"


def private(folder: Path) -> bool:
    """Whether ``folder`` is this user's and closed to everyone else: a socket in a folder another user controls
    could be theirs, and a client hands it its output streams and environment."""
    try:
        info = folder.stat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and info.st_mode & 0o077 == 0


def code_digest(package: Path = PACKAGE) -> str:
    """A digest of every Python file of the pipeline package (names and contents): what a worker must share with
    a client to serve it."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(f"{path.relative_to(package)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def load_time_env(environ: dict[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that libraries read as they load (see :data:`LOAD_TIME_ENV`)."""
    return {k: v for k, v in environ.items() if k.startswith(LOAD_TIME_ENV)}


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """One length-prefixed JSON message, with ``fds`` passed alongside its first bytes."""
    data = json.dumps(message).encode()
    data = HEADER.pack(len(data)) + data
    sent = socket.send_fds(sock, [data], fds) if fds else 0
    if sent < len(data):  # sendall(b"") still makes a send call: EPIPE once a quick worker has replied and closed
        sock.sendall(data[sent:])


def receive(sock: socket.socket, with_fds: bool = False) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and the descriptors that came with it; ``None`` when the other side has closed."""
    fds: list[int] = []
    if with_fds:
        data, fds, _, _ = socket.recv_fds(sock, 65536, 3)
    else:
        data = sock.recv(65536)
    if not data:
        return None, fds
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        more = sock.recv(65536)
        if not more:
            return None, fds
        data += more
    size = HEADER.unpack_from(data)[0]
    return json.loads(data[HEADER.size:HEADER.size + size]), fds


def stage_command() -> list[str] | None:
    """``[module, *arguments]`` when this process was started as ``python -m pipeline.stages.<name> ...``."""
    argv = getattr(sys, "orig_argv", [])
    if "-m" not in argv:
        return None
    at = argv.index("-m")
    if at + 1 >= len(argv) or not argv[at + 1].startswith("pipeline.stages."):
        return None
    return argv[at + 1:]


def request(command: list[str]) -> dict[str, Any]:
    """What the worker needs to run ``command`` as this process would."""
    return {"op": "run", "command": command, "cwd": os.getcwd(), "env": dict(os.environ),
            "python": interpreter(), "package": str(PACKAGE), "digest": code_digest()}


def interpreter() -> str:
    """This Python: its version and environment (``sys.prefix``: the venv), which a worker must share."""
    return f"{sys.version} in {os.path.abspath(sys.prefix)}"


def hand_off() -> None:
    """Run this stage in the workspace's worker and exit with its exit code; return (and let the stage run here)
    when there is no worker to run it, or it declines (saying why on stderr)."""
    command = stage_command()
    if command is None or os.environ.get(SWITCH, "").lower() == "off" or DDP_PROCESS.intersection(os.environ):
        return
    path = socket_path(Path.cwd())
    if not path.exists() or not private(path.parent):
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        send(sock, request(command), [0, 1, 2])
        reply, _ = receive(sock)
    except (ConnectionRefusedError, FileNotFoundError):  # a worker that died and left its socket, or none: run here
        sock.close()
        return
    except OSError as error:  # a worker there that this client could not talk to: say so, then run here
        sock.close()
        print(f"pipeline worker: not used (could not talk to it: {error}); running in this process", file=sys.stderr,
              flush=True)
        return
    if reply is None or "declined" in reply:
        reason = "it closed the connection" if reply is None else reply["declined"]
        print(f"pipeline worker: not used ({reason}); running in this process", file=sys.stderr, flush=True)
        sock.close()
        return
    sys.exit(_wait(sock, int(reply["pid"])))


def _wait(sock: socket.socket, pid: int) -> int:
    """Forward signals to the child ``pid`` until the worker reports its exit; the exit code to end with."""
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    while True:
        try:
            reply, _ = receive(sock)
            break
        except InterruptedError:  # a forwarded signal interrupted the wait (Python retries; kept for clarity)
            continue
    if reply is None:
        print("pipeline worker: the worker went away before the stage ended", file=sys.stderr, flush=True)
        return 1
    return int(reply["exit"])
