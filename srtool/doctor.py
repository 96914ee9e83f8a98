"""What ``srtool doctor`` checks: versions, execution providers, GPUs, CUDA libraries, and whether
the requested device really works — with the command that fixes what is missing.

onnxruntime-gpu's CUDA provider needs the CUDA runtime, cuBLAS, cuRAND, cuFFT and cuDNN of the
CUDA major it was built for (``onnxruntime.capi.build_and_package_info.cuda_version``), plus an
NVIDIA driver new enough for that major. pip installs them as ``nvidia-*`` wheels through the
``srtool[cuda]`` extra (``onnxruntime-gpu[cuda,cudnn]``); ``onnxruntime.preload_dlls()`` loads
them from there. Everything here is read with ctypes and onnxruntime's own API: no torch, no
nvidia-smi. GPU facts come from the driver API (``libcuda``), which honours
``CUDA_VISIBLE_DEVICES``, so ``cuda:0`` here is the ``cuda:0`` srtool runs on.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import io
import logging
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from srtool import __version__
from srtool.errors import first_line

__all__ = [
    "CUDA_FIX",
    "DRIVER_FOR_CUDA",
    "CudaLibrary",
    "DoctorReport",
    "Gpu",
    "diagnose",
    "required_cuda_libraries",
]

log = logging.getLogger("srtool")

#: The install command that brings every CUDA library the provider needs.
CUDA_FIX = 'pip install "srtool[cuda]"'
#: Minimum NVIDIA driver branch per CUDA major (CUDA's release notes, "minimum driver").
DRIVER_FOR_CUDA = {12: 525, 13: 580}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    total_bytes: int | None
    free_bytes: int | None


@dataclass(frozen=True)
class CudaLibrary:
    soname: str
    package: str  #: the pip package that ships it
    found: bool


@dataclass
class DoctorReport:
    """Everything ``srtool doctor`` found. ``ok`` says whether the requested device works."""

    device: str
    srtool: str
    python: str
    platform: str
    onnxruntime: str | None
    onnxruntime_package: str | None
    onnxruntime_cuda: str | None  #: CUDA major.minor the installed onnxruntime was built for
    providers: list[str]
    torch: str | None
    torch_cuda: str | None
    driver: str | None  #: CUDA version the driver supports, e.g. "13.0"; None: no driver
    gpus: list[Gpu]
    libraries: list[CudaLibrary]
    cuda_session: bool | None  #: a CUDA session opened on a tiny model (None: not tried)
    cuda_error: str | None
    problems: list[str] = field(default_factory=list)  #: why the requested device fails
    notes: list[str] = field(default_factory=list)  #: what ``auto`` falls back from, and why
    fixes: list[str] = field(default_factory=list)  #: commands that fix the problems

    @property
    def ok(self) -> bool:
        return not self.problems


def required_cuda_libraries(cuda_version: str) -> list[tuple[str, str]]:
    """``(soname, pip package)`` the CUDA provider of an onnxruntime built for ``cuda_version``
    loads on Linux: its NEEDED list plus what it dlopens (cuDNN, cuFFT)."""
    major = int(cuda_version.split(".")[0])
    tag = "" if major >= 13 else f"-cu{major}"  # CUDA 13 wheels dropped the -cuNN suffix
    return [
        (f"libcudart.so.{major}", f"nvidia-cuda-runtime{tag}"),
        (f"libcublas.so.{major}", f"nvidia-cublas{tag}"),
        (f"libcublasLt.so.{major}", f"nvidia-cublas{tag}"),
        ("libcurand.so.10", f"nvidia-curand{tag}"),
        (f"libcufft.so.{major - 1}", f"nvidia-cufft{tag}"),
        ("libcudnn.so.9", f"nvidia-cudnn-cu{major}"),
    ]


# --------------------------------------------------------------------------- probes


def _gpus(lib: ctypes.CDLL) -> tuple[str | None, list[Gpu]]:
    version = ctypes.c_int(0)
    driver = None
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value:
        driver = f"{version.value // 1000}.{version.value % 1000 // 10}"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return driver, []
    gpus = []
    for i in range(count.value):
        dev = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, dev)
        total = ctypes.c_size_t(0)
        total_fn = getattr(lib, "cuDeviceTotalMem_v2", None) or lib.cuDeviceTotalMem
        total_ok = total_fn(ctypes.byref(total), dev) == 0
        gpus.append(
            Gpu(
                i,
                name.value.decode(errors="replace") or "unknown",
                total.value if total_ok else None,
                _free(lib, dev),
            )
        )
    return driver, gpus


def _free(lib: ctypes.CDLL, dev: ctypes.c_int) -> int | None:
    """Free memory of ``dev`` through its primary context (released again afterwards)."""
    from srtool.infer.onnx_session import context_free_memory

    return context_free_memory(lib, dev)


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def _preload(ort: object) -> None:
    """onnxruntime's loader for pip-installed CUDA libraries; its prints never reach stdout."""
    from srtool.infer.onnx_session import preload_cuda_libraries

    preload_cuda_libraries(ort)


def _tiny_model() -> bytes:
    """A 1-node ONNX model (Identity on a float tensor), built without the onnx package."""

    # Hand-written protobuf: ModelProto{ir_version=8, opset_import{version=17},
    # graph{node{input "x", output "y", op_type "Identity"}, name "g", input x, output y}}.
    def field(num: int, payload: bytes) -> bytes:
        return bytes([num << 3 | 2]) + _varint(len(payload)) + payload

    def value_info(name: str) -> bytes:
        tensor = bytes([1 << 3]) + _varint(1)  # elem_type FLOAT
        tensor += field(2, field(1, bytes([1 << 3]) + _varint(1)))  # shape [1]
        return field(1, name.encode()) + field(2, field(1, tensor))

    node = field(1, b"x") + field(2, b"y") + field(4, b"Identity")
    graph = (
        field(1, node) + field(2, b"g") + field(11, value_info("x")) + field(12, value_info("y"))
    )
    opset = bytes([2 << 3]) + _varint(17)
    return bytes([1 << 3]) + _varint(8) + field(7, graph) + field(8, opset)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@contextlib.contextmanager
def _stderr_lines() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2 (onnxruntime's loader logs there)."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            lines += [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in text.splitlines()]


def _cuda_session(ort: object, index: int) -> tuple[bool, str | None]:
    """Open a CUDA session on a tiny model and check onnxruntime kept the CUDA provider; when it
    did not, the reason is onnxruntime's own first complaint."""
    options = ort.SessionOptions()  # type: ignore[attr-defined]
    options.log_severity_level = 2
    providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    create = ort.InferenceSession  # type: ignore[attr-defined]
    ort.set_default_logger_severity(2)  # type: ignore[attr-defined]
    try:
        with _stderr_lines() as logged, contextlib.redirect_stdout(io.StringIO()):
            session = create(_tiny_model(), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return False, first_line(exc)
    finally:
        ort.set_default_logger_severity(4)  # type: ignore[attr-defined]
    if "CUDAExecutionProvider" in session.get_providers():
        return True, None
    return False, f"onnxruntime fell back to the CPU provider ({_load_failure(logged)})"


def _load_failure(lines: list[str]) -> str:
    """The useful part of onnxruntime's complaint: the loader's own error when it gives one."""
    for line in lines:
        found = re.search(r"with error: (.+)", line)
        if found:
            return found.group(1).strip()[:300]
    for line in lines:
        if re.search(r"fail|error|require", line, re.I):
            return line.rsplit("] ", 1)[-1].strip()[:300]
    return "no reason given"


# --------------------------------------------------------------------------- the report


def diagnose(device: str = "auto") -> DoctorReport:
    """Check the machine for ``device`` ("auto", "cpu", "cuda" or "cuda:N")."""
    from srtool.infer.onnx_session import cuda_driver, parse_device

    kind, index = parse_device(device)
    report = DoctorReport(
        device=device,
        srtool=__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        onnxruntime=None,
        onnxruntime_package=None,
        onnxruntime_cuda=None,
        providers=[],
        torch=None,
        torch_cuda=None,
        driver=None,
        gpus=[],
        libraries=[],
        cuda_session=None,
        cuda_error=None,
    )
    _torch_versions(report)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        report.problems.append(f"onnxruntime cannot be imported: {first_line(exc)}")
        report.fixes.append('pip install --force-reinstall "srtool"')
        return report
    ort.set_default_logger_severity(4)
    report.onnxruntime = ort.__version__
    report.providers = list(ort.get_available_providers())
    packages = [d for d in ("onnxruntime", "onnxruntime-gpu") if _installed(d)]
    report.onnxruntime_package = ", ".join(packages) or None
    if len(packages) > 1:
        report.problems.append(
            "both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's files"
        )
        report.fixes.append('pip uninstall -y onnxruntime onnxruntime-gpu && pip install "srtool"')
    try:
        from onnxruntime.capi import build_and_package_info as build
    except ImportError:
        build = None
    report.onnxruntime_cuda = getattr(build, "cuda_version", None) or None

    lib = cuda_driver()
    if lib is not None:
        report.driver, report.gpus = _gpus(lib)
    if kind == "cpu":
        return report
    wants_cuda = kind == "cuda"
    if "CUDAExecutionProvider" not in report.providers:
        if wants_cuda:
            report.problems.append(
                f"this onnxruntime ({report.onnxruntime_package}) has no CUDA provider"
            )
            report.fixes.append(CUDA_FIX)
        return report
    if not report.gpus:
        if wants_cuda:
            report.problems.append(
                "no NVIDIA GPU found (no driver, or CUDA_VISIBLE_DEVICES hides every device)"
            )
        return report
    if index >= len(report.gpus):
        report.problems.append(f"cuda:{index} requested but {len(report.gpus)} GPU(s) found")
        return report
    _preload(ort)
    if report.onnxruntime_cuda:
        for soname, package in required_cuda_libraries(report.onnxruntime_cuda):
            report.libraries.append(CudaLibrary(soname, package, _loadable(soname)))
        major = int(report.onnxruntime_cuda.split(".")[0])
        if report.driver and int(report.driver.split(".")[0]) < major:
            report.problems.append(
                f"the NVIDIA driver supports CUDA {report.driver}; this onnxruntime needs CUDA "
                f"{report.onnxruntime_cuda} (driver R{DRIVER_FOR_CUDA.get(major, '?')} or newer)"
            )
            report.fixes.append("update the NVIDIA driver")
    missing = [lib.soname for lib in report.libraries if not lib.found]
    report.cuda_session, report.cuda_error = _cuda_session(ort, index)
    if not report.cuda_session:
        reason = f"missing {', '.join(missing)}" if missing else report.cuda_error
        message = f"onnxruntime cannot use CUDA: {reason}"
        if wants_cuda:
            report.problems.append(message)
        else:
            report.notes.append(f"{message}; auto runs on CPU")
        if missing and CUDA_FIX not in report.fixes:
            report.fixes.append(CUDA_FIX)
    return report


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _torch_versions(report: DoctorReport) -> None:
    """torch's version and CUDA build, read from its metadata without importing it."""
    if importlib.util.find_spec("torch") is None:
        return
    try:
        report.torch = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return
    spec = importlib.util.find_spec("torch.version")
    if spec is not None and spec.origin:
        with open(spec.origin, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("cuda"):
                    value = line.split("=", 1)[1].strip().strip("'\"")
                    report.torch_cuda = None if value in ("None", "") else value
