"""Where a job runs: the planner's rules, each choice with the reason it gives.

In order (MODEL.md, SERVER.md):

1. a platform named on the dataset, transformer or consumer (``platform:``);
2. a source or sink only reachable inside a private network: that network's agent
   platform;
3. data at least as large as a platform's ``min_rows`` (the rows of the dataset's latest
   version; for a transformer, of its inputs together): the platform with the largest
   ``min_rows`` the data reaches (Spark, typically), but never a Spark platform for a
   Python transformer (it gets whole tables; Spark would hand it partitions);
4. ``defaults.platform``.

The owning team's zone may restrict its jobs to some platforms (zone ``platforms:``):
a choice outside that list falls back to the first allowed platform that is not tied to
a private network, and the reason says so. (``ferry check`` reports a model that names
a platform its zone does not allow as a policy violation.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dataferry.model.graph import ModelIndex


@dataclass(frozen=True)
class Choice:
    platform: str
    why: str


def choose(index: ModelIndex, team: str, *, explicit: str | None, network: str | None,
           rows: int | None, spark: bool = True) -> Choice:
    """The platform for a job of ``team`` (see the module docstring); ``spark=False``: the
    job cannot run on Spark (a Python transformer), so size never sends it there."""
    eco = index.ecosystem
    if explicit:
        choice = Choice(explicit, f"platform {explicit} is set in the model")
    elif network:
        name = index.networks.get(network, network)
        choice = Choice(name, f"its source/sink is only reachable in network {network}")
    else:
        choice = _by_size(index, rows, spark) or Choice(eco.defaults.platform, "defaults.platform")
    return _within_zone(index, team, choice)


def _by_size(index: ModelIndex, rows: int | None, spark: bool) -> Choice | None:
    if rows is None:
        return None
    platforms = index.ecosystem.platforms
    reached = [(platform.min_rows, name) for name, platform in platforms.items()
               if platform.min_rows is not None and platform.network is None
               and rows >= platform.min_rows]
    fitting = [(m, name) for m, name in reached if spark or platforms[name].engine != "spark"]
    if not fitting:
        if not reached:
            return None
        default = index.ecosystem.defaults.platform
        _, name = max(reached)
        return Choice(default, f"{rows:,} rows reach platform {name}'s min_rows, but a Python "
                      f"transformer does not run on Spark: defaults.platform")
    min_rows, name = max(fitting)
    return Choice(name, f"{rows:,} rows reach platform {name}'s min_rows ({min_rows:,})")


def _within_zone(index: ModelIndex, team: str, choice: Choice) -> Choice:
    zone_name = index.ecosystem.teams[team].zone if team in index.ecosystem.teams else None
    zone = index.ecosystem.zones.get(zone_name) if zone_name else None
    allowed = zone.platforms if zone is not None else None
    if allowed is None or choice.platform in allowed:
        return choice
    platforms = index.ecosystem.platforms
    fallback = next((name for name in allowed
                     if name in platforms and platforms[name].network is None), None)
    if fallback is None:
        return Choice(choice.platform, f"{choice.why}; zone {zone_name} allows only "
                      f"{', '.join(allowed)}, none of which can run it")
    return Choice(fallback, f"zone {zone_name} allows only {', '.join(allowed)} "
                  f"(instead of {choice.platform}: {choice.why})")


def dataset_rows(sizes: Mapping[str, int], refs: list[str]) -> int | None:
    """Rows of the datasets together, when any of them has been published."""
    known = [sizes[ref] for ref in refs if ref in sizes]
    return sum(known) if known else None
