"""Edit records and the merge rule: how tags, notes, names, deletion and resumes change a run after the fact.

The log is append-only: a run's line is never rewritten.  An edit is a line of its own kind::

    {"schema":2,"kind":"tags","runs":["<id>"],"timestamp":"…Z","add":["best"],"remove":["draft"],"crc":"…"}
    {"schema":2,"kind":"note","runs":["<id>"],"timestamp":"…Z","note":"the one to ship","crc":"…"}
    {"schema":2,"kind":"rename","runs":["<id>"],"timestamp":"…Z","name":"rf-depth-8","crc":"…"}
    {"schema":2,"kind":"delete","runs":["<id>", …],"timestamp":"…Z","crc":"…"}
    {"schema":2,"kind":"restore","runs":["<id>", …],"timestamp":"…Z","crc":"…"}

**Merge rule: edits apply in log order, the last edit wins per field** (for tags, per tag: an add
after a remove of the same tag leaves it on).  A reader folds every edit into an :class:`Overlay`
and applies it to each run it hands out; deleted runs are left out unless asked for.  Only
``gc`` (compaction) writes the merged runs back as plain lines and drops the edits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from exptrack.store.record import Run

EDIT_KINDS = ("tags", "note", "rename", "delete", "restore")
VISIBILITY_KINDS = frozenset({"delete", "restore"})
MAX_RUNS_PER_EDIT = 50_000
"""Ids per delete/restore line (~2 MB of ids, far below the line cap); more are split over lines
that one append writes together."""


@dataclass(frozen=True, slots=True)
class Edit:
    """One edit line: which runs it changes and how."""

    kind: str
    runs: tuple[str, ...]
    timestamp: str
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    text: str | None = None  # the note of a "note", the name of a "rename"
    offset: int = -1

    def to_object(self) -> dict[str, Any]:
        """The line's JSON object (without schema and checksum, which the codec adds)."""
        body: dict[str, Any] = {"kind": self.kind, "runs": list(self.runs), "timestamp": self.timestamp}
        if self.kind == "tags":
            body["add"], body["remove"] = list(self.add), list(self.remove)
        elif self.kind == "note":
            body["note"] = self.text
        elif self.kind == "rename":
            body["name"] = self.text
        return body


class EditError(ValueError):
    """A line of an edit kind whose fields are not what the kind needs (the scanner reports it)."""


def edit_from_object(obj: Mapping[str, Any], offset: int = -1) -> Edit:
    """Validate a parsed edit line (``kind`` already known to be an edit kind)."""
    kind = obj["kind"]
    runs = obj.get("runs")
    if type(runs) is not list or not runs or any(type(r) is not str or not r for r in runs):
        raise EditError(f"{kind} edit: runs is not a non-empty list of run ids")
    stamp = obj.get("timestamp", "")
    if type(stamp) is not str:
        raise EditError(f"{kind} edit: timestamp is not a string")
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    text = None
    if kind == "tags":
        add_raw, remove_raw = obj.get("add", []), obj.get("remove", [])
        for part in (add_raw, remove_raw):
            if type(part) is not list or any(type(t) is not str for t in part):
                raise EditError("tags edit: add/remove is not a list of strings")
        add, remove = tuple(add_raw), tuple(remove_raw)
    elif kind in ("note", "rename"):
        key = "note" if kind == "note" else "name"
        text = obj.get(key)
        if type(text) is not str or (kind == "rename" and not text):
            raise EditError(f"{kind} edit: {key} is not a{' non-empty' if kind == 'rename' else ''} string")
    return Edit(kind, tuple(runs), stamp, add, remove, text, offset)


@dataclass(slots=True)
class _State:
    tags: list[tuple[tuple[str, ...], tuple[str, ...]]] | None = None
    note: str | None = None
    name: str | None = None
    deleted: bool = False


class Overlay:
    """Every edit read so far, folded per run: what ``apply`` changes on a run as stored."""

    def __init__(self) -> None:
        self._runs: dict[str, _State] = {}
        self.edits = 0

    def __bool__(self) -> bool:
        return bool(self._runs)

    def add(self, edit: Edit) -> None:
        """Fold one edit in (edits must be added in log order)."""
        self.edits += 1
        for run_id in edit.runs:
            state = self._runs.get(run_id)
            if state is None:
                state = self._runs[run_id] = _State()
            if edit.kind == "tags":
                if state.tags is None:
                    state.tags = []
                state.tags.append((edit.add, edit.remove))
            elif edit.kind == "note":
                state.note = edit.text
            elif edit.kind == "rename":
                state.name = edit.text
            elif edit.kind == "delete":
                state.deleted = True
            elif edit.kind == "restore":
                state.deleted = False

    def extend(self, edits: Iterable[Edit]) -> None:
        for edit in edits:
            self.add(edit)

    def deleted(self) -> set[str]:
        """Ids of the runs that are deleted now."""
        return {run_id for run_id, state in self._runs.items() if state.deleted}

    def is_deleted(self, run_id: str) -> bool:
        state = self._runs.get(run_id)
        return state is not None and state.deleted

    def renamed(self, name: str) -> list[str]:
        """Ids of the runs an edit named ``name``."""
        return [run_id for run_id, state in self._runs.items() if state.name == name]

    def apply(self, run: Run) -> Run:
        """The run as the merged view shows it (the same object when no edit touches it)."""
        state = self._runs.get(run.run_id)
        if state is None:
            return run
        return merge(run, state.tags or (), state.note, state.name, state.deleted)

    def to_state(self) -> dict[str, list[Any]]:
        return {
            "runs": [[run_id, [[list(a), list(r)] for a, r in state.tags or ()], state.note, state.name, state.deleted]
                     for run_id, state in self._runs.items()],
            "edits": [self.edits],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Overlay:
        overlay = cls()
        for run_id, tags, note, name, deleted in state.get("runs", ()):
            overlay._runs[str(run_id)] = _State(
                [(tuple(map(str, a)), tuple(map(str, r))) for a, r in tags] or None,
                None if note is None else str(note), None if name is None else str(name), bool(deleted))
        overlay.edits = int(state.get("edits", [0])[0])
        return overlay


def merge(run: Run, tag_ops: Sequence[tuple[Sequence[str], Sequence[str]]], note: str | None, name: str | None,
          deleted: bool) -> Run:
    """``run`` with edits applied: tag operations in order, then the note, name and deletion."""
    tags = list(run.tags)
    for add, remove in tag_ops:
        gone = set(remove)
        tags = [tag for tag in tags if tag not in gone]
        tags.extend(tag for tag in add if tag not in tags)
    extra = dict(run.extra)
    if note is not None:
        if note:
            extra["note"] = note
        else:
            extra.pop("note", None)  # an empty note clears it
    if name is not None:
        extra["name"] = name
    if deleted:
        extra["deleted"] = True
    return replace(run, tags=tuple(tags), extra=extra)
