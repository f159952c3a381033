"""The plant simulator: plays a site config on simulated devices, one module per source type.

:class:`devkit.simulator.plant.Plant` computes what every tag reads at a time ``t`` (pure:
the signals of :mod:`~devkit.simulator.signals` plus a scenario of
:mod:`~devkit.simulator.scenarios`); :func:`devkit.simulator.plant.run_plant` ticks it in
real time and hands each frame to the simulated devices.

Which devices is decided by the source-type registry (``adapters/registry.py``): each
:class:`~gateway.core.sources.SourceSpec` names its simulator module in
``SourceSpec.simulator`` (``devkit.simulator.modbus``, ``devkit.simulator.mqtt``). The plant
groups the config's *enabled* sources by spec, imports each spec's module and uses only
this contract, so it never names a source type:

``traits(configs: Sequence[SourceConfig]) -> SourceTraits``
    What scenarios may do with these sources (pure, cheap, no I/O): the fault status
    points of their detectors (the plant sets them when a scenario faults the detector)
    and the tags the devices can leave out one by one.

``build(configs: Sequence[SourceConfig], site: SiteConfig) -> list[SimulatedDevice]``
    The devices serving ``configs`` (no I/O before ``start``). A :class:`SimulatedDevice`
    has ``async start()`` (open servers / connect), ``async stop()`` (idempotent) and
    ``async show(frame, ts_ms)``, called once per tick: serve or publish
    ``frame.values`` for its own tags (``ts_ms``: wall clock, epoch ms) and honour
    ``frame.effects``: sources in ``silent_sources`` stop answering or publishing until
    a later frame leaves them out; tags in ``silent_tags`` are left out if the device can.

``configs`` are the enabled sources of that spec's types, in config order, typed as
:class:`~gateway.core.config.SourceConfig` (each module casts to its own models). A source
type whose spec names no simulator, or whose module is not installed, is logged once and
skipped: its tags still get values in each frame, nobody serves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gateway.core.config import SiteConfig, SourceConfig

if TYPE_CHECKING:
    from devkit.simulator.plant import Frame

__all__ = ["FaultPoint", "SimulatedDevice", "SimulatorModule", "SourceTraits"]


@dataclass(frozen=True)
class FaultPoint:
    """A detector's fault status point: ``state`` is the value that means "fault"."""

    detector: str
    state: bool = True


@dataclass(frozen=True)
class SourceTraits:
    #: fault status point tag -> its detector, in config order
    fault_points: Mapping[str, FaultPoint] = field(default_factory=dict)
    #: tags the devices can leave out one by one (a publisher can; a polled device can only go silent as a whole)
    silenceable_tags: frozenset[str] = frozenset()
    #: ids of the sources the devices serve (filled in by the plant, not by the modules)
    sources: tuple[str, ...] = ()


class SimulatedDevice(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def show(self, frame: Frame, ts_ms: int) -> None: ...


class SimulatorModule(Protocol):
    """What ``SourceSpec.simulator`` names (a module with these two functions)."""

    def traits(self, configs: Sequence[SourceConfig]) -> SourceTraits: ...

    def build(self, configs: Sequence[SourceConfig], site: SiteConfig) -> list[SimulatedDevice]: ...
