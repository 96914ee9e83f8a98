"""A stub NVIDIA driver for tests without a GPU: ``libcuda.so.1`` built from a few lines of C.

It answers the driver API calls srtool makes (``cuInit``, ``cuDeviceGetCount``, ``cuDeviceGet``,
names, total and free memory through the primary context) with ``devices`` GPUs of 80 GiB, device
``i`` having ``free_bytes + i`` GiB free, so a test can tell which device was asked. It counts
primary context retains minus releases (``stub_contexts_held``), so a test can check that every
context taken is given back. It cannot run kernels: a CUDA session on it fails, as on a machine
with a driver but no working CUDA.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

GIB = 1 << 30

STUB = r"""
#include <stddef.h>
#include <string.h>
typedef int CUresult; typedef int CUdevice; typedef void *CUcontext;
static int ctx[16];
static int held = 0;
static int current = -1;
int stub_contexts_held(void) { return held; }
CUresult cuInit(unsigned int flags) { return 0; }
CUresult cuDriverGetVersion(int *v) { *v = DRIVER_VERSION; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = DEVICES; return 0; }
CUresult cuDeviceGet(CUdevice *d, int i) {
    if (i < 0 || i >= DEVICES) return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *d = i; return 0;
}
CUresult cuDeviceGetName(char *s, int n, CUdevice d) { strncpy(s, "Stub GPU", n); return 0; }
CUresult cuDeviceTotalMem_v2(size_t *b, CUdevice d) { *b = (size_t)80 << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { *c = &ctx[d]; held++; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) { held--; return 0; }
CUresult cuCtxPushCurrent_v2(CUcontext c) { current = (int *)c - ctx; return 0; }
CUresult cuCtxPopCurrent_v2(CUcontext *c) { current = -1; return 0; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) {
    if (current < 0) return 201; /* CUDA_ERROR_INVALID_CONTEXT */
    *f = (size_t)FREE_BYTES + ((size_t)current << 30); *t = (size_t)80 << 30; return 0;
}
"""


def build_stub_driver(
    folder: Path, *, version: int = 13000, devices: int = 1, free_bytes: int = 70 * GIB
) -> Path:
    """Compile the stub into ``folder/libcuda.so.1``; returns ``folder`` (for LD_LIBRARY_PATH)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stub libcuda.so.1")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stub.c").write_text(STUB)
    subprocess.run(
        [compiler, "-shared", "-fPIC", f"-DDRIVER_VERSION={version}", f"-DDEVICES={devices}",
         f"-DFREE_BYTES={free_bytes}ULL", "-o", str(folder / "libcuda.so.1"),
         str(folder / "stub.c")],
        check=True,
    )  # fmt: skip
    return folder


def load_stub_driver(folder: Path) -> ctypes.CDLL:
    """The stub, loaded in this process by path and initialised (as ``cuda_driver`` would)."""
    driver = ctypes.CDLL(str(folder / "libcuda.so.1"))
    assert driver.cuInit(0) == 0
    return driver
