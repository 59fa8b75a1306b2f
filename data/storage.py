"""Local paths and storage URLs behind one small API, through fsspec.

A URL is anything fsspec knows: `s3://bucket/key` (s3fs is a dependency), `memory://...`, or another
protocol once its package is installed (gcsfs for `gs://`); anything else is a local path. S3 takes its
endpoint from the standard `AWS_ENDPOINT_URL` and its credentials from the standard AWS variables or
files, as boto does.

Reads of remote files go through a local read cache (`$EMURL_CACHE`, default `~/.cache/emurl`): a file
is downloaded once per version (its ETag on S3). Writes are atomic on both sides: a local file is
written beside its target and renamed onto it, an object is uploaded to a temporary key and copied onto
its key, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import fsspec

from training.io import atomic_path


def is_url(path: str | os.PathLike) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def filesystem(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for a local path or a URL."""
    return fsspec.core.url_to_fs(str(path))


def join(base: str | os.PathLike, *parts: str) -> str:
    """`base`/`parts` for a URL or a local path."""
    return "/".join([str(base).rstrip("/"), *parts]) if is_url(base) else str(Path(base, *parts))


def cache_dir() -> Path:
    return Path(os.environ.get("EMURL_CACHE", Path.home() / ".cache" / "emurl"))


def exists(path: str | os.PathLike) -> bool:
    fs, inner = filesystem(path)
    return fs.exists(inner)


def size(path: str | os.PathLike) -> int | None:
    """Bytes of the file at `path`, None if there is none."""
    fs, inner = filesystem(path)
    try:
        return fs.size(inner)
    except FileNotFoundError:
        return None


def local_copy(path: str | os.PathLike, expected_size: int | None = None) -> Path:
    """A local file with the contents of `path`: the path itself when it is local, else its copy in the
    read cache, downloaded once per version of the remote file (fsspec's ukey: S3's ETag), so a checkpoint
    overwritten in place is fetched again. `expected_size`: the size the copy must have."""
    if not is_url(path):
        return Path(path)
    fs, inner = filesystem(path)
    key = hashlib.sha256(f"{path}\n{fs.ukey(inner)}".encode()).hexdigest()[:16]
    local = cache_dir() / "files" / f"{key}-{Path(inner).name}"
    if not local.is_file():
        with atomic_path(local) as tmp:
            fs.get_file(inner, str(tmp))
    if expected_size is not None and local.stat().st_size != expected_size:
        raise ValueError(f"{path} is {local.stat().st_size} bytes, not {expected_size}: sync it again")
    return local


def upload(local: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copy the local file onto `path` atomically: to a temporary name beside it, then onto it."""
    if not is_url(path):
        with atomic_path(path) as tmp:
            shutil.copyfile(local, tmp)
        return
    fs, inner = filesystem(path)
    tmp = f"{inner}.tmp-{os.getpid()}"
    fs.put_file(str(local), tmp)
    try:
        fs.copy(tmp, inner)
    finally:
        fs.rm_file(tmp)


def copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy one file between local paths and URLs, atomically at `target`, without a cached copy."""
    if not is_url(source):
        upload(source, target)
    elif not is_url(target):
        fs, inner = filesystem(source)
        with atomic_path(target) as tmp:
            fs.get_file(inner, str(tmp))
    else:
        upload(local_copy(source), target)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to a local path or URL atomically."""
    with tempfile.NamedTemporaryFile() as local:
        local.write(data)
        local.flush()
        upload(local.name, path)


def check_writable(folder: str | os.PathLike) -> None:
    """Write and delete a small file in `folder` (a folder or URL prefix), so a place that cannot be
    written fails before any work, with the storage's own error."""
    check = join(folder, ".write-check")
    write_bytes(check, b"")
    fs, inner = filesystem(check)
    fs.rm_file(inner)


def read_bytes(path: str | os.PathLike) -> bytes:
    fs, inner = filesystem(path)
    return fs.cat_file(inner)
