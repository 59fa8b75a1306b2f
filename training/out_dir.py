"""--out-dir as a local folder or a storage URL (s3://bucket/prefix, ...), written by process 0 only.

A phase always writes into a local folder. For a URL that folder is a staging copy: it starts with the
files already at the URL (so --resume finds its checkpoint), and `push()` uploads each file written since
the last push, atomically (data/storage.py), checkpoints first, so a metrics record never reaches the
bucket before the checkpoint it describes. A phase pushes after every checkpoint and on the way out; if
that last push fails, the staging folder is kept and named, so nothing is lost.

With several processes (training/distributed.py) every process runs the same code, but only process 0
writes to --out-dir: the others write into a private copy of it (so --resume reads the same
checkpoint), deleted on the way out.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tqdm import tqdm

from data import storage
from training.cli import fail, one_line_errors, writable_dir
from training.distributed import is_main_process


class OutDir:
    def __init__(self, target: str | Path, flag: str = "--out-dir"):
        self.target = str(target)
        self.remote = storage.is_url(target)
        self.writes = is_main_process()  # with several processes, only process 0's outputs are kept
        self._pushed: dict[Path, tuple[int, int]] = {}  # file -> (size, mtime_ns) at its last upload
        if not self.remote and self.writes:
            self.local = writable_dir(target, flag)
            return
        with one_line_errors(f"{flag} {target}: cannot write there"):
            if self.writes:
                storage.check_writable(self.target)
            fs, root = storage.filesystem(self.target)
            existing = (
                [n for n in fs.find(root) if not Path(n).name.startswith(".")] if fs.exists(root) else []
            )
        cache = storage.cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        self.local = Path(tempfile.mkdtemp(prefix="out-dir-", dir=cache))
        for name in tqdm(existing, desc=f"copying {target}", unit="file", disable=not existing):
            local = self.local / Path(name).relative_to(root)
            local.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(name, str(local))
            self._pushed[local] = self._stamp(local)

    def location(self, path: Path) -> str:
        """Where a file written under `local` ends up: the path itself, or its URL."""
        return storage.join(self.target, *path.relative_to(self.local).parts) if self.remote else str(path)

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns

    def push(self) -> None:
        """Upload the files written since the last push (nothing to do for a local --out-dir, or in a
        process other than process 0)."""
        if not self.remote or not self.writes:
            return
        files = [p for p in self.local.rglob("*") if p.is_file() and not p.name.startswith(".")]
        for path in sorted(files, key=lambda p: (p.suffix != ".pkl", str(p))):
            stamp = self._stamp(path)
            if self._pushed.get(path) != stamp:
                storage.upload(path, storage.join(self.target, *path.relative_to(self.local).parts))
                self._pushed[path] = stamp

    def __enter__(self) -> OutDir:
        return self

    def __exit__(self, *exc) -> None:
        if not self.remote and self.writes:
            return
        try:
            self.push()
        except Exception as err:
            raise fail(
                f"could not upload to {self.target} ({type(err).__name__}: {err}); "
                f"the outputs are kept in {self.local}"
            ) from None
        shutil.rmtree(self.local, ignore_errors=True)
