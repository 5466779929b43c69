"""Progress bars for jobs that run longer than a few seconds (``c2i features build``, ``c2i evaluate``).

tqdm on stderr, shown only when stderr is a terminal (``disable=None``): logs, CI and tests stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "step") -> Iterator[T]:
    """``items`` with a bar named ``desc``; each item's name (``str(item)``) shows beside the bar."""
    from tqdm.auto import tqdm

    bar: Any = tqdm(
        items, desc=desc, total=total, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True
    )
    for item in bar:
        bar.set_postfix_str(str(item)[:40], refresh=False)
        yield item


@contextmanager
def step_bar(desc: str, total: int) -> Iterator[Callable[[str], None]]:
    """A bar over a job's ``total`` named steps: call the yielded ``done(name)`` after each one."""
    from tqdm.auto import tqdm

    bar: Any = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=None, dynamic_ncols=True)

    def done(name: str) -> None:
        bar.set_postfix_str(name[:40], refresh=False)
        bar.update()

    try:
        yield done
    finally:
        bar.close()
