"""Shared fixtures. Tests that read ../shared/data are marked ``external`` and skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REPGLS_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster with one intra-op thread on a shared 2-core machine (opt in per module)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> dict:
    """A real tiny phantom run (world -> mine -> rates -> cache -> train), built once per session."""
    from test_evaluate import build_tiny_run

    return build_tiny_run(tmp_path_factory.mktemp("tiny_run"))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # torch missing: gpu tests cannot run
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def unwritable_place(tmp_path_factory) -> Path:
    """A folder nothing can be written in: a read-only tmpfs mount when this process may mount one (root), else a
    path under a regular file (which can never be created). Outputs are asked for under it."""
    import subprocess

    root = tmp_path_factory.mktemp("unwritable")
    mount = root / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
                          capture_output=True, check=False) if os.geteuid() == 0 else None
    if done is not None and done.returncode == 0:
        yield mount
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)
        return
    (root / "a-file").write_text("not a folder\n")
    yield root / "a-file" / "sub"
