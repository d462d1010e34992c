"""A run as readable text for ``exptrack show``: every section, one block each."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exptrack.store.record import Run


def describe_run(run: Run) -> str:
    """A readable, sectioned view of one run: what it is, what made it, what it produced."""
    from exptrack.query.output import format_value

    lines = [f"run        {run.run_id}", f"timestamp  {run.timestamp}", f"status     {run.status}"]
    if run.tags:
        lines.append(f"tags       {', '.join(run.tags)}")
    extra = dict(run.extra)
    if "duration_s" in extra:
        lines.append(f"duration   {float(extra.pop('duration_s')):.3f} s")
    error = extra.pop("error", None)
    if isinstance(error, Mapping):
        lines.append(f"error      {error.get('type')}: {error.get('message')}")
    lines += _block("params", run.params)
    lines += _block("metrics", run.metrics)
    history = extra.pop("history", None)
    if isinstance(history, Mapping) and history:
        lines.append("history (min @ step / max @ step / last step / points):")
        width = max(len(k) for k in history)
        for name, h in history.items():
            lines.append(f"  {name.ljust(width)}  {format_value(h.get('min'))} @ {h.get('min_step')}"
                         f" / {format_value(h.get('max'))} @ {h.get('max_step')}"
                         f" / {h.get('last_step')} / {h.get('count')}")
    lines += _describe_code(extra.pop("code", None))
    lines += _describe_data(extra.pop("data", None))
    lines += _describe_system(extra.pop("system", None))
    invocation = extra.pop("invocation", None)
    if isinstance(invocation, Mapping):
        from exptrack.capture import command_line

        lines += ["invocation:", f"  command  {command_line(invocation)}"]
        if invocation.get("seed") is not None:
            lines.append(f"  seed     {format_value(invocation.get('seed'))}")
    artifacts = extra.pop("artifacts", None)
    if isinstance(artifacts, Mapping) and artifacts:
        lines.append("artifacts:")
        width = max(len(k) for k in artifacts)
        lines += [f"  {k.ljust(width)}  {v.get('size')} bytes  sha256 {str(v.get('sha256'))[:16]}"
                  for k, v in artifacts.items()]
    for key, value in extra.items():
        lines += _block(key, value) if isinstance(value, Mapping) else [f"{key}:", f"  {format_value(value)}"]
    from exptrack.query.output import terminal_safe

    return "\n".join(terminal_safe(line) for line in lines)  # stored text never drives the terminal


def _describe_code(code: object) -> list[str]:
    from exptrack.query.output import format_value

    lines: list[str] = []
    if isinstance(code, Mapping):
        if code.get("commit"):
            state = "dirty" if code.get("dirty") else "clean"
            lines += ["code:", f"  commit  {code.get('commit')} ({state})",
                      f"  branch  {format_value(code.get('branch'))}", f"  remote  {format_value(code.get('remote'))}"]
            if code.get("untracked"):
                lines.append(f"  untracked  {', '.join(map(str, code['untracked'][:10]))}")
        else:
            lines += ["code:", f"  unknown ({code.get('error')})"]
    return lines


def _describe_data(data: object) -> list[str]:

    lines: list[str] = []
    if isinstance(data, Mapping):
        lines.append(f"data (tree {str(data.get('tree', '-'))[:16]}):")
        for path, entry in (data.get("paths") or {}).items():
            if not isinstance(entry, Mapping) or "error" in entry:
                lines.append(f"  {path}  {entry.get('error') if isinstance(entry, Mapping) else entry}")
                continue
            what = f"{entry.get('files')} files" if entry.get("type") == "dir" else "file"
            dvc = f", dvc md5 {entry['dvc'].get('md5')}" if isinstance(entry.get("dvc"), Mapping) else ""
            lines.append(f"  {path}  sha256 {str(entry.get('sha256') or entry.get('tree'))[:16]}"
                         f" ({what}, {entry.get('size')} bytes{dvc})")
    return lines


def _describe_system(system: object) -> list[str]:

    lines: list[str] = []
    if isinstance(system, Mapping):
        raw_gpu = system.get("gpu")
        gpu: Mapping[str, Any] = raw_gpu if isinstance(raw_gpu, Mapping) else {}
        lines += ["system:",
                  f"  os      {system.get('os')} {system.get('os_release')} ({system.get('machine')})",
                  f"  python  {system.get('python_version')} {system.get('python_executable')}",
                  f"  cpu     {system.get('cpu_model')} x{system.get('cpu_count')}",
                  f"  memory  {system.get('memory_total_bytes')} bytes",
                  f"  gpu     {gpu.get('name') or gpu.get('error') or '-'}",
                  f"  host    {system.get('hostname')}"]
    return lines


def _block(title: str, section: Mapping[str, Any]) -> list[str]:
    from exptrack.query.output import format_value

    lines = [f"{title}:"]
    if not section:
        return [*lines, "  (none)"]
    width = max(len(k) for k in section)
    return lines + [f"  {key.ljust(width)}  {format_value(value)}" for key, value in section.items()]


