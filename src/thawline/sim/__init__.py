"""``thawline simulate``'s engine: a deterministic synthetic world of holders, events and ground truth.

A pure generator: it imports nothing from the services, adapters, API or CLI. Build a
:class:`World` from a :class:`SimConfig`, then write it with :func:`write_dataset` (files) or
consume :meth:`World.registrations` and :meth:`World.stream` directly (e.g. to post to the API).
"""

from thawline.sim.model import ABUSE_LABELS, LABELS, LOOKALIKE_TAGS, SimConfig, SimConfigError
from thawline.sim.output import EventFormat, write_dataset
from thawline.sim.world import World

__all__ = [
    "ABUSE_LABELS",
    "LABELS",
    "LOOKALIKE_TAGS",
    "EventFormat",
    "SimConfig",
    "SimConfigError",
    "World",
    "write_dataset",
]
