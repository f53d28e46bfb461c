"""Backwards compatibility and ownership against the model at a git ref (``--base``)."""

from __future__ import annotations

import io
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from dataferry.errors import UsageError
from dataferry.model.findings import Path
from dataferry.model.graph import DatasetEntry, ModelIndex
from dataferry.model.load import LoadedModel, PieceCache, load_model
from dataferry.model.spec import Ecosystem
from dataferry.model.types import DataType, TypeParseError, describe_change, parse_type


@dataclass
class BaseComparison:
    """What changed between the model at ``--base`` and the working tree."""

    base: Ecosystem | None
    changed_files: list[str] = field(default_factory=list)
    changed_teams: list[str] = field(default_factory=list)


def _git(repo: FsPath, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError("--base needs git, which is not installed") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UsageError(f"git {' '.join(args[:2])} failed: {message[-1] if message else '?'}")
    return done.stdout


def load_base(
    root: FsPath, ref: str, cache: PieceCache | None = None
) -> tuple[LoadedModel | None, list[str]]:
    """The model at git ``ref`` (None if it had no ferry.yaml) and the files changed since.

    With the ``cache`` of the working tree's load, only files that differ are parsed again.
    """
    try:
        top = FsPath(_git(root, "rev-parse", "--show-toplevel").decode().strip())
    except UsageError:
        raise UsageError(f"--base needs the model directory {root} to be in a git "
                         "repository") from None
    prefix = root.resolve().relative_to(top.resolve()).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    try:
        _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except UsageError:
        raise UsageError(f"--base {ref}: no such git ref (try origin/main, main or a "
                         "commit hash; in CI fetch it first)") from None
    changed = _changed_files(top, ref, prefix)
    archive = _git(top, "archive", "--format=tar", ref, "--", prefix or ".") if prefix else (
        _git(top, "archive", "--format=tar", ref)
    )
    with tempfile.TemporaryDirectory(prefix="ferry-base-") as tmp:
        import tarfile  # only when comparing with a git ref, not for a run

        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        base_root = FsPath(tmp) / prefix
        if not (base_root / "ferry.yaml").is_file():
            return None, changed
        return load_model(base_root, cache=cache), changed


def _changed_files(top: FsPath, ref: str, prefix: str) -> list[str]:
    spec = ["--", prefix or "."]
    tracked = _git(top, "diff", "--name-only", "--no-renames", ref, *spec).decode().splitlines()
    untracked = _git(top, "ls-files", "--others", "--exclude-standard", *spec).decode()
    files = {f[len(prefix):] for f in [*tracked, *untracked.splitlines()] if f.startswith(prefix)}
    return sorted(files)


def team_of_file(rel: str) -> str | None:
    parts = rel.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "teams" else None


def compare(
    head: LoadedModel, base: Ecosystem | None, changed: list[str], author: str | None
) -> BaseComparison:
    """Add breaking-change and unauthorized-change findings to ``head.report``."""
    assert head.ecosystem is not None
    eco = head.ecosystem
    result = BaseComparison(base, changed)
    teams = {t for t in map(team_of_file, changed) if t is not None}
    if base is not None:
        for name in set(eco.teams) | set(base.teams):
            if eco.teams.get(name) != base.teams.get(name):
                teams.add(name)
        _check_breaking(ModelIndex(base), ModelIndex(eco), head)
    result.changed_teams = sorted(teams)
    if author is not None:
        _check_authors(head, base, changed, author)
    return result


def _check_authors(head: LoadedModel, base: Ecosystem | None, changed: list[str],
                   author: str) -> None:
    eco = head.ecosystem
    assert eco is not None
    who = author.strip().lower()
    admins = {a.lower() for a in (base or eco).admins}
    if who in admins:
        return
    for rel in changed:
        team = team_of_file(rel)
        if team is None:
            head.report.add_at(
                "unauthorized-change",
                f"{author} changed {rel}, which only the ecosystem's admins may change "
                f"({', '.join(sorted(admins)) or 'none listed in ferry.yaml'})",
                rel, (1, 1))
            continue
        owning = (base.teams.get(team) if base is not None else None) or eco.teams.get(team)
        owners = {o.lower() for o in owning.owners} if owning is not None else set()
        if who not in owners:
            head.report.add_at(
                "unauthorized-change",
                f"{author} changed {rel} of team {team}, but is not one of its owners "
                f"({', '.join(sorted(owners)) or 'none'}) or an admin; ask an owner to make or "
                "approve the change",
                rel, (1, 1))


def _check_breaking(base: ModelIndex, head: ModelIndex, loaded: LoadedModel) -> None:
    report = loaded.report
    for ref, old in base.datasets.items():
        if ref in loaded.invalid or f"{old.team}.*" in loaded.invalid:
            continue  # it failed to load: that is reported already
        receipts = base.receivers.get(ref, [])
        new = head.datasets.get(ref)
        if new is None:
            still = [r for r in receipts if _receiver_exists(head, r.team, r.entity, r.need)]
            for receipt in still:
                report.add("breaking-change",
                           f"dataset {ref} was removed, but {receipt.label} receives it; keep "
                           "it (deprecated: ...) until its consumers have moved",
                           receipt.path)
            continue
        received: set[str] = set()
        for receipt in receipts:
            received.update(base.delivered_columns(receipt))
        reasons = list(_dataset_changes(old, new, received))
        bumped = new.spec.version > old.spec.version
        for reason, path in reasons:
            if bumped:
                report.add("breaking-change",
                           f"{ref}: {reason}; allowed because its major version goes from "
                           f"{old.spec.version} to {new.spec.version} (serve the old version "
                           "until its consumers move)", path, severity="warning")
            else:
                report.add("breaking-change",
                           f"{ref}: {reason}; this breaks its readers (consumers, clones, "
                           f"shares): keep the old shape, or raise version: to "
                           f"{old.spec.version + 1}", path)


def _receiver_exists(head: ModelIndex, team: str, entity: str, need: object) -> bool:
    section = head.ecosystem.teams.get(team)
    if section is None:
        return False
    return entity in (section.consumers if need is not None else section.transformers)


def _type(text: str) -> DataType | None:
    try:
        return parse_type(text)
    except TypeParseError:
        return None


def _dataset_changes(
    old: DatasetEntry, new: DatasetEntry, received: set[str]
) -> Iterator[tuple[str, Path]]:
    """(reason, path) for every change to ``old`` that breaks consumers."""
    if old.spec.primary_key != new.spec.primary_key:
        yield (f"primary key changed from {old.spec.primary_key} to {new.spec.primary_key}",
               (*new.path, "primary_key"))
    for name, column in old.spec.columns.items():
        now = new.spec.columns.get(name)
        if now is None:
            if name in received:
                yield (f"column {name!r} was removed or renamed, but consumers receive it",
                       (*new.path, "columns"))
            continue
        at: Path = (*new.path, "columns", name)
        before, after = _type(column.type), _type(now.type)
        if before is not None and after is not None:
            change = describe_change(before, after)
            if change is not None:
                yield (f"column {name!r}: {change}", (*at, "type"))
        # A key column was never nullable in the store: saying so changes nothing.
        if column.nullable and not now.nullable and name not in new.spec.primary_key:
            yield (f"column {name!r} became not nullable (narrowing)", (*at, "nullable"))
    for name, column in new.spec.columns.items():
        if name not in old.spec.columns and not column.nullable and received:
            yield (f"new column {name!r} is not nullable; add it as nullable so existing rows "
                   "and consumers' tables stay valid", (*new.path, "columns", name))
