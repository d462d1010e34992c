"""Code state: the commit, branch and uncommitted changes a run was produced from.

Capture never raises and never blocks the user's own git work: every call runs with
``GIT_OPTIONAL_LOCKS=0`` (``git status`` would otherwise refresh and lock the index), a fixed
argument list, ``LC_ALL=C`` (error text is matched in English) and one overall deadline.
A failure is recorded as a short human reason under ``"error"``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exptrack.capture.shell import shell_comment, shell_word

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)

_UNTRACKED_CAP = 20  # names kept per run; the count is kept whole
_STATUS = ("status", "--porcelain=v2", "--branch", "-z", "--untracked-files=all")
_TOPLEVEL = ("rev-parse", "--show-toplevel")
_REMOTES = ("config", "-z", "--get-regexp", r"^remote\..*\.url$")
# Explicit prefixes, no external/textconv drivers, short submodule lines: the user's diff config
# must not change the bytes, or `git apply` of the saved patch would fail. The trailing "--" keeps
# a file named HEAD from making the revision ambiguous.
_DIFF = (
    "diff",
    "HEAD",
    "--binary",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--submodule=short",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--",
)
# Configuration that can make git run a program (a repository's own .git/config may set it):
# never honoured.  Diff drivers are off through --no-ext-diff / --no-textconv.
_SAFE_CONFIG = (
    "-c", "core.fsmonitor=false",
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.untrackedCache=false",
    "-c", "diff.external=",
)
# scheme://user:password@host -> http(s) user names are often tokens, so they go too.
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<user>[^/@:]*)(?::[^/@]*)?@")


@dataclass(frozen=True, slots=True)
class CodeState:
    """What ``capture_code`` saw: JSON-able facts plus the patch bytes, stored separately.

    Attributes:
        info: commit, branch, remote, dirty, untracked, repo_root, and ``patch_sha256`` /
            ``patch_bytes`` when there is a diff, or ``error`` when something could not be read.
        patch: ``git diff HEAD --binary`` (staged and unstaged changes to tracked files), or
            ``None`` when the tracked files match HEAD. Untracked files are listed, not saved.
    """

    info: dict[str, object]
    patch: bytes | None


class _GitFailed(Exception):
    """A git call failed; the message is the reason recorded under ``"error"``."""


def capture_code(cwd: str | os.PathLike[str] | None = None, *, timeout: float = 10.0) -> CodeState:
    """Record the code state of the git work tree containing ``cwd``; never raises.

    Three git processes run concurrently (status, top level, remotes), plus ``git diff`` only
    when tracked files changed, so a clean repository costs about one git start-up.

    Args:
        cwd: any directory inside the work tree (a subdirectory or a linked worktree is fine);
            default the current directory.
        timeout: seconds for all git calls together; on expiry ``error`` is ``"git timed out"``.

    Returns:
        A ``CodeState``; ``info`` always has every key, ``None`` where unknown.
    """
    info: dict[str, object] = {
        "commit": None,
        "branch": None,
        "remote": None,
        "dirty": None,
        "untracked": [],
        "repo_root": None,
    }
    try:
        directory = os.fspath(cwd) if cwd is not None else os.getcwd()
    except OSError:  # the cwd was deleted under the process
        directory = ""
    if not directory or not os.path.isdir(directory):
        info["error"] = "directory not found"
        return CodeState(info, None)
    deadline = time.monotonic() + timeout
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    try:
        status_out, toplevel_out, remotes_out = _run_all(
            [_STATUS, _TOPLEVEL, _REMOTES], directory, env, deadline
        )
        toplevel = toplevel_out.rstrip(b"\n")
        root = os.fsdecode(toplevel)
        info["repo_root"] = toplevel.decode("utf-8", "backslashreplace")
        info["remote"] = _pick_remote(remotes_out)
        commit, branch, tracked, untracked = _parse_status(status_out)
        info["branch"] = branch
        # Untracked files are listed apart: they never make the tree "dirty" (that is a patch
        # to tracked files), and noise (a virtual environment, bytecode) is left out entirely.
        untracked = without_noise(root, untracked)
        info["dirty"] = tracked > 0
        info["untracked_count"] = len(untracked)
        if len(untracked) > _UNTRACKED_CAP:
            info["untracked_truncated"] = True
            untracked = untracked[:_UNTRACKED_CAP]
        info["untracked"] = untracked
        if commit is None:
            info["error"] = "repository has no commits yet"
            return CodeState(info, None)
        info["commit"] = commit
        patch = None
        if tracked:
            (diff_out,) = _run_all([_DIFF], root, env, deadline)
            patch = diff_out or None  # e.g. only a submodule's untracked content changed
        if patch is not None:
            info["patch_sha256"] = hashlib.sha256(patch).hexdigest()
            info["patch_bytes"] = len(patch)
        return CodeState(info, patch)
    except _GitFailed as exc:
        info["error"] = str(exc)
        logger.debug("code capture in %s incomplete: %s", directory, exc)
        return CodeState(info, None)


def _run_all(commands: list[tuple[str, ...]], cwd: str, env: dict[str, str], deadline: float) -> list[bytes]:
    """Run git commands concurrently and return the stdout of each (empty when nothing matched)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.extend(_start(args, cwd, env) for args in commands)
        outputs: list[bytes] = []
        for args, proc in zip(commands, procs, strict=True):
            try:
                out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired as exc:
                raise _GitFailed("git timed out") from exc
            if proc.returncode == 1 and args[0] == "config":
                outputs.append(b"")  # no remote configured: not a failure
            elif proc.returncode != 0:
                raise _GitFailed(_reason(err))
            else:
                outputs.append(out)
        return outputs
    finally:
        for proc in procs:
            if proc.returncode is None:  # timed out, or an earlier command failed
                proc.kill()
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


def _start(args: tuple[str, ...], cwd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            ["git", *_SAFE_CONFIG, *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise _GitFailed("git is not installed") from exc
    except OSError as exc:
        raise _GitFailed(f"git could not start: {exc.strerror}") from exc


def _reason(stderr: bytes) -> str:
    """The first line of git's complaint, shortened to what a person needs to read."""
    text = stderr.decode("utf-8", "replace")
    if "not a git repository" in text:
        return "not a git repository"
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "git failed")
    line = line.removeprefix("fatal: ").removeprefix("error: ")
    return line[:200]


def without_noise(root: str, untracked: list[str]) -> list[str]:
    """Untracked paths minus what no run depends on: anything inside a virtual environment (a
    directory holding ``pyvenv.cfg``: a ``.venv`` in the clone listed 1,000 paths per run),
    ``__pycache__`` directories and ``.pyc`` files.  Ignored files never reach here (git leaves
    them out of ``status``)."""
    venv: dict[str, bool] = {}
    kept: list[str] = []
    for path in untracked:
        parts = path.split("/")
        if "__pycache__" in parts[:-1] or path.endswith((".pyc", ".pyo")):
            continue
        noise = False
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix not in venv:
                venv[prefix] = os.path.isfile(os.path.join(root, prefix, "pyvenv.cfg"))
            if venv[prefix]:
                noise = True
                break
        if not noise:
            kept.append(path)
    return kept


def _parse_status(out: bytes) -> tuple[str | None, str | None, int, list[str]]:
    """Commit, branch, count of changed tracked files and untracked paths from porcelain v2 -z.

    Porcelain paths are relative to the repository root whatever the cwd, and ``-z`` keeps
    names with spaces, quotes or newlines intact.
    """
    commit: str | None = None
    branch: str | None = None
    tracked = 0
    untracked: list[str] = []
    fields = out.split(b"\0")
    i = 0
    while i < len(fields):
        field = fields[i]
        i += 1
        if field.startswith(b"# branch.oid "):
            oid = field[13:].decode("ascii", "replace")
            commit = None if oid == "(initial)" else oid
        elif field.startswith(b"# branch.head "):
            head = field[14:].decode("utf-8", "replace")
            branch = None if head == "(detached)" else head
        elif field[:2] in (b"1 ", b"u "):
            tracked += 1
        elif field[:2] == b"2 ":
            tracked += 1
            i += 1  # a rename's original path follows as its own NUL-terminated field
        elif field[:2] == b"? ":
            # backslashreplace: a non-UTF-8 name must still be JSON-encodable
            untracked.append(field[2:].decode("utf-8", "backslashreplace"))
    return commit, branch, tracked, untracked


def _pick_remote(out: bytes) -> str | None:
    """URL of ``origin``, else of the first remote configured, without credentials."""
    urls: dict[str, str] = {}
    for entry in out.split(b"\0"):
        key, _, value = entry.decode("utf-8", "replace").partition("\n")
        if key.startswith("remote.") and key.endswith(".url"):
            urls.setdefault(key[len("remote.") : -len(".url")], value)
    if not urls:
        return None
    url = urls.get("origin", next(iter(urls.values())))
    return strip_credentials(url)


def strip_credentials(url: str) -> str:
    """Drop passwords (and http user names, often tokens) so a URL can be stored and shared."""
    match = _USERINFO.match(url)
    if match is None:
        return url  # scp-like git@host:path carries no password
    scheme, user = match["scheme"], match["user"]
    keep = "" if scheme.lower().startswith(("http", "ftp")) or not user else f"{user}@"
    return f"{scheme}://{keep}{url[match.end() :]}"


def compare_code(
    recorded: Mapping[str, object],
    current: Mapping[str, object],
    recorded_patch_sha: str | None = None,
) -> dict[str, object]:
    """Whether the current code state is the one a run was recorded with.

    Args:
        recorded: the run's ``CodeState.info``.
        current: ``capture_code().info`` now.
        recorded_patch_sha: the sha256 of the run's patch when the caller keeps it elsewhere;
            default ``recorded["patch_sha256"]``.

    Returns:
        ``{"verdict": "match" | "mismatch" | "unknown", "reason": str}``. Untracked files are
        listed but not saved, so a difference in them alone gives ``"unknown"``.
    """
    for label, state in (("recorded", recorded), ("current", current)):
        if not isinstance(state.get("commit"), str):
            why = state.get("error") or "no commit"
            return {"verdict": "unknown", "reason": f"{label} code state unknown: {why}"}
    rec_commit, cur_commit = str(recorded["commit"]), str(current["commit"])
    if rec_commit != cur_commit:
        return {
            "verdict": "mismatch",
            "reason": f"commit differs: recorded {rec_commit[:12]}, current {cur_commit[:12]}",
        }
    rec_patch = recorded_patch_sha or _opt_str(recorded.get("patch_sha256"))
    cur_patch = _opt_str(current.get("patch_sha256"))
    if rec_patch != cur_patch:
        if cur_patch is None:
            reason = "the run had uncommitted changes; the working tree now matches the commit"
        elif rec_patch is None:
            reason = "the working tree has uncommitted changes the run did not have"
        else:
            reason = "uncommitted changes differ from the run's"
        return {"verdict": "mismatch", "reason": reason}
    rec_untracked, cur_untracked = set(_str_list(recorded)), set(_str_list(current))
    if rec_untracked != cur_untracked:
        added, gone = sorted(cur_untracked - rec_untracked), sorted(rec_untracked - cur_untracked)
        detail = ", ".join([f"+{p}" for p in added[:3]] + [f"-{p}" for p in gone[:3]])
        return {
            "verdict": "unknown",
            "reason": f"same commit and changes; untracked files differ "
            f"({detail}) and their contents are not recorded",
        }
    changes = "with the same uncommitted changes" if rec_patch else "clean"
    return {"verdict": "match", "reason": f"same commit {rec_commit[:12]}, {changes}"}


COMMIT_ID = re.compile(r"[0-9a-f]{7,64}")
_MAX_PATHSPECS = 200  # untracked files kept out of a stash by name; beyond, stash tracked changes only


def _stash_steps(
    recorded: Mapping[str, object], current: Mapping[str, object], commit: str, keep: Sequence[str]
) -> list[str]:
    """The stash that puts aside the current work the run did not have, and nothing else."""
    if not current.get("dirty") and not _str_list(current):
        return []
    had = set(_str_list(recorded))
    untracked = _str_list(current)
    new = [p for p in untracked if p not in had]
    if not new and not current.get("patch_sha256"):
        return []  # only untracked files the run had as well: nothing to put aside
    message = shell_word(f"exptrack: before restoring {commit[:12]}")
    kept = [p for p in untracked if p in had] + [k.rstrip("/") for k in keep]
    if new and len(kept) <= _MAX_PATHSPECS:
        excluded = "".join(" " + shell_word(f":(exclude,literal){p}") for p in kept)
        return [f"git stash push --include-untracked -m {message} -- .{excluded}"]
    steps = [f"git stash push -m {message}"]  # tracked changes only
    if new:
        shown = shell_comment(", ".join(new[:5]))
        steps.append(f"# {len(new)} untracked file(s) the run did not have are left in place: {shown}")
    return steps


def code_restore_steps(
    recorded: Mapping[str, object],
    current: Mapping[str, object],
    patch_file: str | None = None,
    keep: Sequence[str] = (),
) -> list[str]:
    """Shell commands that bring the current checkout back to a run's code state.

    Current uncommitted work is stashed rather than discarded -- but only what the run did not
    have: a plain ``git stash --include-untracked`` would also sweep away the untracked files the
    run itself had (its script, often) and anything in ``keep`` (a store inside the repository,
    with the saved patch), and the restored checkout could then never match.  Lines starting with
    ``#`` explain what cannot be automated (a patch that was not saved, untracked files).

    Args:
        recorded: the run's ``CodeState.info``.
        current: ``capture_code().info`` where the user will run the commands.
        patch_file: where the run's saved patch is; without it the apply step is a comment.
        keep: repository-relative paths to leave out of the stash.

    Returns:
        Commands in order, empty when the code already matches.
    """
    commit = recorded.get("commit")
    if not isinstance(commit, str):
        return [f"# cannot restore: the run recorded no commit ({shell_comment(recorded.get('error') or 'unknown')})"]
    if not COMMIT_ID.fullmatch(commit):  # a stored value: it reaches a shell only as a commit id
        return [f"# cannot restore: the recorded commit is not a commit id: {shell_comment(commit[:80])}"]
    if compare_code(recorded, current)["verdict"] == "match":
        return []
    steps: list[str] = []
    root = current.get("repo_root")
    remote = recorded.get("remote")
    checkout = current.get("commit") != commit
    if isinstance(root, str):
        steps.append(f"cd -- {shell_word(root)}")
        steps += _stash_steps(recorded, current, commit, keep)
    elif isinstance(remote, str):
        name = os.path.basename(str(recorded.get("repo_root") or "")) or "restored"
        # "--": a stored remote such as "--upload-pack=..." stays a URL, never an option
        steps += [f"git clone -- {shell_word(remote)} {shell_word(name)}", f"cd -- {shell_word(name)}"]
        checkout = True
    else:
        steps.append("# no repository here and no remote recorded: cd into a clone first")
        checkout = True
    if checkout:
        steps.append(f"git checkout --detach {shell_word(commit)}")
    patch_sha = _opt_str(recorded.get("patch_sha256"))
    if patch_sha is not None:
        if patch_file is not None:
            steps.append(f"git apply -- {shell_word(patch_file)}")
        else:
            steps.append(
                f"# the run had uncommitted changes (patch sha256 {shell_comment(patch_sha[:12])}); "
                "apply its saved patch with: git apply <patch file>"
            )
    untracked = _str_list(recorded)
    if untracked:
        shown = shell_comment(", ".join(untracked[:5]) + (", ..." if len(untracked) > 5 else ""))
        steps.append(f"# {len(untracked)} untracked file(s) were present and are not recorded: {shown}")
    return steps


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _str_list(state: Mapping[str, object]) -> list[str]:
    value = state.get("untracked")
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
