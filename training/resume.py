"""--resume restores the run: its settings come back from the checkpoint, and the flags given on the
command line are checked against them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection

from training.cli import fail


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def settings_on_resume(
    args,
    saved: dict,
    *,
    fixed: Collection[str],
    runtime: Collection[str],
    same: Callable[[str, object, object], bool] = lambda name, mine, theirs: mine == theirs,
):
    """`args` with the checkpoint's settings `saved` (its Args as a dict) put back.

    A flag left at its default takes the checkpoint's value. A flag given with another value is
    refused with one line when it is in `fixed` (the run's structure: its envs, policy, game), and
    otherwise kept and printed. Flags in `runtime` (iterations, output, workers) are not the run's
    settings and always come from the command line. `same(name, mine, theirs)` compares two values
    (e.g. two spellings of one checkpoint path)."""
    defaults = type(args)()
    restored = {}
    for field in dataclasses.fields(args):
        name = field.name
        if name in runtime or name not in saved:
            continue
        mine, default = getattr(args, name), getattr(defaults, name)
        theirs = tuple(saved[name]) if isinstance(saved[name], list) else saved[name]
        if mine == default or same(name, mine, theirs):
            restored[name] = theirs
        elif name in fixed:
            raise fail(
                f"{flag(name)} {mine!r}: the checkpoint's run has {theirs!r}, which a resumed run keeps "
                "(leave the flag out, or start a new run)"
            )
        else:
            print(f"resume: {flag(name)} {mine!r} instead of the checkpoint's {theirs!r}")
    return dataclasses.replace(args, **restored)
