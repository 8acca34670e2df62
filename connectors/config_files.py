"""Edit one value in a YAML, JSON, TOML or .env file, keeping the rest of the file as it was.

What a `git_edit` fix step does to a file in an incident's worktree. It is file editing, not git:
`connectors.git.repo.GitRepo.edit_value` finds the worktree and the journal's place in its git
directory, and commits happen elsewhere. Comments, key order and indentation survive (ruamel
round trip, tomlkit, line edits). An edit is idempotent under activity retries: the last edit is
journalled, so repeating it on a file that still holds its result returns the recorded result.
Every refusal is an EditError, which no retry can cure.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import tomlkit
import tomlkit.items
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from connectors.base import ConnectorError

EditFormat = Literal["auto", "yaml", "json", "toml", "env"]


class EditError(ConnectorError):
    """The edit cannot be made as asked (path, key, value or file content); retrying cannot help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def edit_value(
    root: Path,
    file: str,
    key: str,
    *,
    journal: Path,
    value: Any = None,
    scale: float | None = None,
    max_value: float | str | None = None,
    fmt: EditFormat = "auto",
) -> tuple[Any, Any]:
    """Set or scale the value at dotted `key` in `root/file`; returns (old, new) as plain data.

    Scaling keeps the unit (`512Mi` x 1.5 = `768Mi`), rounds integers up, and `max_value` caps
    the number in the value's own unit. `journal` is where the last edit is recorded (outside the
    edited tree): a call repeating it on a file that still holds its result is a retry and returns
    the recorded result without editing again (so two identical edits in a row count once: write
    `scale=2.25`, not 1.5 twice).
    """
    if (value is None) == (scale is None):
        raise EditError(f"edit of {file}:{key}: give exactly one of value or scale")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise EditError(f"edit of {file}:{key}: scale must be a positive number, got {scale}")
    target = _inside(root, file)
    kind = _format_of(target) if fmt == "auto" else fmt
    text = target.read_text(encoding="utf-8")
    where = f"{file}:{key}"
    call = _digest(json.dumps([file, key, value, scale, max_value, kind], default=str, sort_keys=True))
    last = _read_journal(journal)
    if last.get("call") == call and last.get("after") == _digest(text):
        return last["old"], last["new"]  # a retry of the edit that already happened

    def compute(old: Any) -> Any:
        return (
            _scaled(where, old, scale, max_value) if scale is not None else _checked(where, value, max_value)
        )

    if kind == "yaml":
        new_text, old, new = _edit_yaml(text, key, compute, where)
    elif kind == "json":
        new_text, old, new = _edit_json(text, key, compute, where)
    elif kind == "toml":
        new_text, old, new = _edit_toml(text, key, compute, where)
    else:
        new_text, old, new = _edit_env(text, key, compute, where)
    old, new = _plain(old), _plain(new)
    # Journal first: a crash before the file write then looks like "not applied", never twice.
    _write_journal(journal, {"call": call, "after": _digest(new_text), "old": old, "new": new})
    if new_text != text:
        target.write_text(new_text, encoding="utf-8")
    return old, new


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read_journal(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_journal(path: Path, entry: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a journal."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, default=str))
    os.replace(tmp, path)


def _inside(root: Path, file: str) -> Path:
    """`root/file`, refusing absolute paths, `..`, symlinks leading outside, and `.git`."""
    relative = Path(file)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise EditError(f"{file!r} must be a relative path inside the worktree")
    if relative.parts[0] == ".git":
        raise EditError(f"{file!r} is inside .git")
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target.relative_to(base).parts[:1] == (".git",):
        raise EditError(f"{file!r} resolves to {target}, outside the worktree (symlink?)")
    if not target.is_file():
        raise EditError(f"{file!r} does not exist in the worktree")
    return target


def _format_of(path: Path) -> EditFormat:
    name = path.name.lower()
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".toml"):
        return "toml"
    if name == ".env" or name.startswith(".env.") or name.endswith(".env"):
        return "env"
    raise EditError(f"cannot tell the format of {path.name}; set format: yaml|json|toml|env")


# ------------------------------------------------------------------------------------ key paths


def _key_parts(key: str) -> list[str]:
    r"""`a.b.0.c` → ["a", "b", "0", "c"]; `\.` keeps a dot inside a key (`kubernetes\.io/name`)."""
    parts = [p.replace("\0", ".") for p in key.replace("\\.", "\0").split(".")]
    if not key or any(p == "" for p in parts):
        raise EditError(f"bad key path {key!r}")
    return parts


def _step(node: Any, part: str, where: str) -> tuple[Any, Any]:
    """(container, key) for one path part; lists take an integer index or a `field=value`
    selector naming exactly one item (`containers.name=cart`), so a fix edits the alerting
    container, not whichever happens to come first."""
    if isinstance(node, list) and "=" in part:
        field, _, wanted = part.partition("=")
        hits = [i for i, item in enumerate(node) if isinstance(item, dict) and str(item.get(field)) == wanted]
        if len(hits) != 1:
            found = "no item" if not hits else f"{len(hits)} items"
            raise EditError(f"{where}: {found} with {field}={wanted!r} in the list")
        return node, hits[0]
    if isinstance(node, list):
        try:
            index = int(part)
        except ValueError:
            raise EditError(f"{where}: {part!r} indexes a list; use a number") from None
        if not -len(node) <= index < len(node):
            raise EditError(f"{where}: index {index} out of range (list has {len(node)} items)")
        return node, index
    if isinstance(node, dict):
        if part not in node:
            raise EditError(f"{where}: key {part!r} not found")
        return node, part
    raise EditError(f"{where}: cannot descend into a {type(node).__name__} at {part!r}")


def _locate(root: Any, key: str, where: str) -> tuple[Any, Any]:
    parts = _key_parts(key)
    node = root
    for part in parts[:-1]:
        container, k = _step(node, part, where)
        node = container[k]
    return _step(node, parts[-1], where)


# ---------------------------------------------------------------------------------- formats


def _guess_yaml_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file uses them, so a dump keeps them.

    Sequence indent counts from the parent key to the item's content: `key:\n  - a` is (4, 2).
    """
    mapping: int | None = None
    sequence: int | None = None
    offset: int | None = None
    parent: int | None = None  # indent of the previous line when it was a bare `key:`
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        lead = len(line) - len(line.lstrip(" "))
        if parent is not None and lead > parent:
            if stripped.startswith("- ") and sequence is None:
                offset = lead - parent
                sequence = offset + 2 + len(stripped[2:]) - len(stripped[2:].lstrip(" "))
            elif not stripped.startswith("-") and mapping is None:
                mapping = lead - parent
        elif parent is not None and stripped.startswith("- ") and lead == parent and sequence is None:
            offset, sequence = 0, 2 + len(stripped[2:]) - len(stripped[2:].lstrip(" "))
        parent = lead if stripped.endswith(":") and not stripped.startswith("- ") else None
        if mapping is not None and sequence is not None:
            break
    mapping = mapping or 2
    return mapping, sequence or max(mapping, 2), offset or 0


def _edit_yaml(text: str, key: str, compute: Callable[[Any], Any], where: str) -> tuple[str, Any, Any]:
    mapping, sequence, offset = _guess_yaml_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.explicit_start = text.lstrip().startswith("---")
    docs = list(yaml.load_all(text))
    hits = []
    for doc in docs:
        try:
            hits.append(_locate(doc, key, where))
        except EditError:
            continue
    if not hits:
        _locate(docs[0] if docs else None, key, where)  # raises with the precise reason
    if len(hits) > 1:
        raise EditError(f"{where}: the key exists in {len(hits)} documents of the file; ambiguous")
    container, k = hits[0]
    old = container[k]
    new = compute(old)
    container[k] = _keep_yaml_style(old, new)
    out = _StringSink()
    if len(docs) == 1:
        yaml.dump(docs[0], out)
    else:
        yaml.dump_all(docs, out)
    return out.text(), old, new


def _keep_yaml_style(old: Any, new: Any) -> Any:
    """A new string keeps the old one's quoting (ruamel's scalar string subclasses)."""
    if isinstance(new, str) and isinstance(old, str) and type(old) is not str:
        return type(old)(new)
    return new


class _StringSink:
    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, data: str | bytes) -> None:
        self._parts.append(data.decode() if isinstance(data, bytes) else data)

    def text(self) -> str:
        return "".join(self._parts)


def _edit_json(text: str, key: str, compute: Callable[[Any], Any], where: str) -> tuple[str, Any, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EditError(f"{where}: not valid JSON: {exc}") from exc
    container, k = _locate(data, key, where)
    old = container[k]
    new = compute(old)
    container[k] = new
    indent: int | str | None = None
    m = re.search(r"^[{\[][^\n]*\n([ \t]+)\S", text, re.MULTILINE)
    if m:
        ws = m.group(1)
        indent = ws if "\t" in ws else len(ws)
    dumped = json.dumps(data, indent=indent, ensure_ascii=False)
    if indent is None and ", " not in text and ": " not in text:
        dumped = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return dumped + ("\n" if text.endswith("\n") else ""), old, new


def _edit_toml(text: str, key: str, compute: Callable[[Any], Any], where: str) -> tuple[str, Any, Any]:
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as exc:
        raise EditError(f"{where}: not valid TOML: {exc}") from exc
    container, k = _locate(doc, key, where)
    old = _plain(container[k])
    new = compute(old)
    container[k] = new
    return tomlkit.dumps(doc), old, new


_ENV_LINE = re.compile(
    r"^(?P<lead>\s*(?:export\s+)?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>\s*=\s*)(?P<rest>.*)$"
)


def _edit_env(text: str, key: str, compute: Callable[[Any], Any], where: str) -> tuple[str, Any, Any]:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        m = _ENV_LINE.match(body)
        if m is None or m.group("name") != key:
            continue
        raw_value, quote, comment = _split_env_value(m.group("rest"))
        new = compute(raw_value)
        new_text = _env_scalar(new)
        if not quote and re.search(r"[\s#'\"\\$`]", new_text):
            quote = '"'
        if quote == '"':
            new_text = new_text.replace("\\", "\\\\").replace('"', '\\"')
        elif quote == "'" and "'" in new_text:
            raise EditError(f"{where}: value contains a single quote; cannot keep the '…' quoting")
        ending = line[len(body) :]
        lines[i] = f"{m.group('lead')}{key}{m.group('eq')}{quote}{new_text}{quote}{comment}{ending}"
        return "".join(lines), raw_value, new
    raise EditError(f"{where}: variable {key!r} not found")


def _split_env_value(rest: str) -> tuple[str, str, str]:
    """(value, quote character or "", trailing comment incl. its leading space)."""
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = rest.find(quote, 1)
        while quote == '"' and end > 0 and rest[end - 1] == "\\":
            end = rest.find(quote, end + 1)
        if end > 0:
            inner = rest[1:end]
            if quote == '"':
                inner = inner.replace('\\"', '"').replace("\\\\", "\\")
            return inner, quote, rest[end + 1 :]
    m = re.search(r"\s+#", rest)
    if m:
        return rest[: m.start()], "", rest[m.start() :]
    return rest.rstrip(), "", rest[len(rest.rstrip()) :]


def _env_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise EditError("a .env value must be a scalar")
    return str(value)


# ---------------------------------------------------------------------------------- numbers

_QUANTITY = re.compile(r"^(?P<sign>[-+]?)(?P<num>\d+(?:\.\d+)?|\.\d+)(?P<unit>[A-Za-z%]*)$")


_UNIT_FACTORS = {
    "": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50,
}  # fmt: skip


def _cap_in_unit(where: str, max_value: float | str, unit: str) -> float:
    """The cap expressed in the value's unit; a bare number already is."""
    if not isinstance(max_value, str):
        return float(max_value)
    m = _QUANTITY.match(max_value.strip())
    if m is None:
        raise EditError(f"{where}: bad max_value {max_value!r}")
    cap_unit = m.group("unit")
    if cap_unit not in _UNIT_FACTORS or unit not in _UNIT_FACTORS:
        raise EditError(f"{where}: cannot compare {unit or 'a plain number'} with max_value {max_value!r}")
    return float(m.group("sign") + m.group("num")) * _UNIT_FACTORS[cap_unit] / _UNIT_FACTORS[unit]


def _scaled(where: str, old: Any, scale: float, max_value: float | str | None) -> Any:
    """`old` times `scale`, in old's type and unit; integers round up; capped at `max_value`."""
    if isinstance(old, bool):
        raise EditError(f"{where}: cannot scale a boolean")
    if isinstance(old, (int, float)):
        number, unit, as_string = float(old), "", False
        integral = isinstance(old, int)
    elif isinstance(old, str):
        m = _QUANTITY.match(old.strip())
        if m is None:
            raise EditError(f"{where}: cannot scale {old!r}: not a number with an optional unit")
        number = float(m.group("sign") + m.group("num"))
        unit, as_string = m.group("unit"), True
        integral = "." not in m.group("num")
    else:
        raise EditError(f"{where}: cannot scale a {type(old).__name__}")
    result = number * scale
    if integral:
        result = float(math.ceil(round(result, 9)))  # 3 x 1.1 = 3.3000000000000003 → 4, not 5
    else:
        result = round(result, 9)
    if max_value is not None:
        limit = _cap_in_unit(where, max_value, unit)
        cap = float(math.floor(limit)) if integral else limit
        if result > cap:
            result = cap
        if (scale > 1 and result <= number) or (scale < 1 and result >= number):
            shown = max_value if isinstance(max_value, str) else f"{max_value:g}{unit}"
            raise EditError(
                f"{where}: {old!r} is already at or beyond max_value {shown}: scaling would change nothing"
            )
    number_text = str(int(result)) if integral else repr(result)
    if as_string:
        return f"{number_text}{unit}"
    return int(result) if integral else result


def _checked(where: str, value: Any, max_value: float | str | None) -> Any:
    """A value to set, refused when its number exceeds `max_value`."""
    if max_value is None or isinstance(value, bool):
        return value
    number: float | None = None
    unit = ""
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and (m := _QUANTITY.match(value.strip())):
        number, unit = float(m.group("sign") + m.group("num")), m.group("unit")
    if number is not None and number > _cap_in_unit(where, max_value, unit):
        raise EditError(f"{where}: {value!r} exceeds max_value {max_value}")
    return value


def _plain(value: Any) -> Any:
    """Plain Python data (for results and history), not ruamel/tomlkit wrapper types."""
    if isinstance(value, tomlkit.items.Item):
        return _plain(value.unwrap())
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (dict, CommentedMap)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, CommentedSeq)):
        return [_plain(v) for v in value]
    return value
