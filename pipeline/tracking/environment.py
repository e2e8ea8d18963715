"""Environment tags: the Python, OS, CPU, GPU and package versions a run ran on."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from pipeline.io import file_md5


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux; ``platform`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_driver() -> str:
    """The NVIDIA driver version, or ``none`` without one (torch reports CUDA's version, not the driver's)."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else "none"


def pip_freeze() -> str:
    """Every installed distribution as ``name==version`` lines, sorted (what ``pip freeze`` lists)."""
    names = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return "".join(f"{name}=={version}\n" for name, version in sorted(names.items()))


def environment_tags(root: Path | None = None) -> dict[str, str]:
    """Python, OS, CPU, key package versions, torch build, GPU and driver, and the lock file's hash."""
    import torch

    lock = Path(root or Path.cwd()) / "requirements.lock"
    tags = {
        "env.python": sys.version.split()[0],
        "env.platform": platform.platform(),
        "env.cpu": cpu_model(),
        "env.cpu_count": str(os.cpu_count()),
        "env.torch_threads": str(torch.get_num_threads()),
        "env.cuda": torch.version.cuda or "cpu",
        "env.cudnn": str(torch.backends.cudnn.version()) if torch.cuda.is_available() else "cpu",
        "env.gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "env.gpu_driver": gpu_driver() if torch.cuda.is_available() else "none",
        "env.requirements_lock_md5": file_md5(lock) if lock.is_file() else "missing",
    }
    for package in ("torch", "lightning", "mlflow", "dvc", "pandas", "scikit-learn", "numpy"):
        try:
            tags[f"env.{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            tags[f"env.{package}"] = "missing"
    return tags
