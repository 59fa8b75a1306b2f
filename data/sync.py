"""Copy a sharded dataset (data/shards.py) between a local folder and a storage URL, or between two of
either, by its manifest: shards already at the target with the manifest's size are skipped, and the
manifest goes last, so an interrupted sync leaves no manifest that promises missing shards.

    uv run python data/sync.py data/speedruns/shards s3://bucket/speedruns      # upload
    uv run python data/sync.py s3://bucket/speedruns data/speedruns/shards      # download

S3 reads its endpoint from AWS_ENDPOINT_URL and its credentials from the standard AWS variables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import tyro
from tqdm import tqdm

from data import storage
from data.shards import DATASET_ERRORS, MANIFEST, dataset_files, read_manifest
from training.cli import one_line_errors


@dataclass
class SyncResult:
    copied: list[str]
    skipped: list[str]
    bytes_copied: int


def sync(source: str, target: str, show_progress: bool = True) -> SyncResult:
    """Copy the dataset at `source` to `target`, skipping files already there whole."""
    manifest = read_manifest(source)
    files = dataset_files(manifest)
    result = SyncResult([], [], 0)
    with tqdm(total=sum(files.values()), unit="B", unit_scale=True, disable=not show_progress) as bar:
        for name, size in files.items():
            bar.set_description(name)
            if storage.size(storage.join(target, name)) == size:
                result.skipped.append(name)
            else:
                storage.copy(storage.join(source, name), storage.join(target, name))
                result.copied.append(name)
                result.bytes_copied += size
            bar.update(size)
    storage.write_bytes(storage.join(target, MANIFEST), json.dumps(manifest, indent=1).encode())
    return result


@dataclass
class Args:
    source: tyro.conf.Positional[str]
    """The sharded dataset to copy: a folder or a storage URL (s3://bucket/prefix, gs://..., ...)."""
    target: tyro.conf.Positional[str]
    """Where it goes: a folder or a storage URL."""


def main(args: Args) -> SyncResult:
    with one_line_errors(f"{args.source} -> {args.target}", plain=DATASET_ERRORS):
        result = sync(args.source, args.target)
    print(
        f"{args.source} -> {args.target}: copied {len(result.copied)} file(s), "
        f"{result.bytes_copied / 2**20:.1f} MiB; {len(result.skipped)} already there"
    )
    return result


if __name__ == "__main__":
    main(tyro.cli(Args))
