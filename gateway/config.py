"""The site config model: the sections of :mod:`gateway.core.config` with ``sources``
typed by the source-type registry (:mod:`adapters.registry`).

``Config.model_validate(data)`` validates a whole site file; each ``sources[]`` entry is
validated by the model its ``type`` names. Code below the application layer takes a
:class:`~gateway.core.config.SiteConfig` (which a ``Config`` is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from adapters.registry import source_models
from gateway.core.config import SiteConfig, SourceConfig

if TYPE_CHECKING:
    AnySource = SourceConfig
else:
    AnySource = Annotated[Union[source_models()], Field(discriminator="type")]  # noqa: UP007


class Config(SiteConfig):
    sources: list[AnySource] = Field(default_factory=list)


__all__ = ["AnySource", "Config"]
