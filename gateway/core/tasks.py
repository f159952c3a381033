"""A component whose work is one background task (a periodic watcher, a writer loop)."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod


class TaskComponent(ABC):
    """Subclasses set ``name`` and implement ``_run``; ``start``/``stop`` manage the task."""

    name = "task"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait for it; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @abstractmethod
    async def _run(self) -> None:
        """The component's loop; runs until cancelled by ``stop``."""
