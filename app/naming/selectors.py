"""Selector strategies: which of a selector's targets serves one request.

Pure: the caller describes each target as it is at this moment (``Candidate``:
how warm it is, how many requests it already has) and ``choose`` returns the
name of one target. The strategies are llama-swap's:

- ``pin``: always the first target; the others are reference data.
- ``warm``: the first target that is ready, else the first one already
  starting, else the first target (a cold start). A peer's model counts as
  ready: nothing has to load here for it.
- ``spillover``: the first target, in order, holding fewer than
  ``settings.spillover`` requests (in flight or waiting); when every target
  is that full, the least loaded one, earlier targets winning ties. So
  traffic fills the first target to its reservation and only then starts the
  next one.

Targets that name nothing known are left out by the caller (config warned
about them at load); a selector left with no candidate is the caller's 404.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from app.config.model import SelectorConfig

class Warmth(enum.IntEnum):
    COLD = 0
    STARTING = 1
    READY = 2


@dataclass(frozen=True)
class Candidate:
    target: str  # the name as the selector lists it (model id, alias, peer model)
    warmth: Warmth
    load: int  # requests in flight or waiting


def choose(selector: SelectorConfig, candidates: Sequence[Candidate]) -> str:
    """The target that serves the next request; ``candidates`` in the selector's order, not empty."""
    if not candidates:
        raise ValueError(f"selector {selector.id!r} has no known target")
    if selector.strategy == "pin":
        return candidates[0].target
    if selector.strategy == "warm":
        for wanted in (Warmth.READY, Warmth.STARTING):
            for candidate in candidates:
                if candidate.warmth is wanted:
                    return candidate.target
        return candidates[0].target
    if selector.strategy == "spillover":
        for candidate in candidates:
            if candidate.load < selector.spillover:
                return candidate.target
        return min(candidates, key=lambda c: c.load).target  # min keeps the first of equals
    raise ValueError(f"selector {selector.id!r}: unknown strategy {selector.strategy!r}")
