"""Reading a unified diff for what it would touch, before git ever sees it.

A patch comes from a model or a person; it is data until an approver runs the plan it is in.
`patch_files` walks the diff once (hunks by their line counts, so a removed line starting with
`---` is never taken for a header) and says which repository paths it names, or why it is not
accepted: no `a/`/`b/` prefixes, quoted names, symlinks, submodules and binary patches are
refused, since they are the ways a diff can reach outside the files it shows. Path safety itself
(relative, normalised, no `..`, not `.git`) is the renderer's `path_problem`, applied to every
path returned here.
"""

from __future__ import annotations

import re

from playbooks.schema import show

_DIFF_GIT = re.compile(r"^diff --git a/(\S+) b/(\S+)$")
_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_MODE = re.compile(r"^(?:new file mode|deleted file mode|old mode|new mode) ([0-7]{6})$")
_INDEX_MODE = re.compile(r"^index [0-9a-f]+\.\.[0-9a-f]+ ([0-7]{6})$")
#: File modes a patch may set: regular and executable files only.
_MODES = frozenset({"100644", "100755"})
_RENAME = ("rename from ", "rename to ", "copy from ", "copy to ")


class PatchError(ValueError):
    """The patch is not accepted; the message says which line and why."""


def _header_path(line: str, prefix: str) -> str | None:
    """The path of a `--- a/x` / `+++ b/x` line (None for /dev/null); a tab starts a timestamp."""
    name = line[4:].split("\t", 1)[0]
    if name == "/dev/null":
        return None
    if name.startswith('"'):
        raise PatchError(f"quoted path {show(name)}: file names needing quotes are not accepted")
    if not name.startswith(prefix):
        raise PatchError(f"path {show(name)} lacks the {prefix!r} prefix git diffs carry")
    return name[len(prefix) :]


def patch_files(patch: str) -> list[str]:
    """Every repository path the patch names (old and new), in order, without duplicates."""
    if "\x00" in patch:
        raise PatchError("the patch contains a NUL byte")
    paths: list[str] = []
    lines = patch.splitlines()
    old_left = new_left = 0
    hunks = 0
    for number, line in enumerate(lines, 1):
        if old_left > 0 or new_left > 0:
            if line.startswith("\\"):
                continue
            tag = line[:1]
            if tag in (" ", ""):
                old_left, new_left = old_left - 1, new_left - 1
            elif tag == "-":
                old_left -= 1
            elif tag == "+":
                new_left -= 1
            else:
                raise PatchError(f"line {number}: {show(line)} inside a hunk (its line counts are wrong)")
            if old_left < 0 or new_left < 0:
                raise PatchError(f"line {number}: the hunk is longer than its header says")
            continue
        try:
            found = _header(line)
        except PatchError as err:
            raise PatchError(f"line {number}: {err}") from None
        if found is None:
            m = _HUNK.match(line)
            assert m is not None
            old_left = int(m.group(1) or 1)
            new_left = int(m.group(2) or 1)
            hunks += 1
            continue
        for path in found:
            if path not in paths:
                paths.append(path)
    if old_left > 0 or new_left > 0:
        raise PatchError("the patch ends inside a hunk (truncated?)")
    if not paths:
        raise PatchError("no file header (`--- a/…` / `+++ b/…`): not a unified diff")
    if not hunks and not any(line.startswith(_RENAME) or _MODE.match(line) for line in lines):
        raise PatchError("the patch changes nothing (no hunk)")
    return paths


def _header(line: str) -> list[str] | None:
    """The paths one line outside a hunk names ([] for none); None when it starts a hunk."""
    if line.startswith("@@"):
        if not _HUNK.match(line):
            raise PatchError(f"malformed hunk header {show(line)}")
        return None
    if line.startswith("diff --git "):
        m = _DIFF_GIT.match(line)
        if m is None:
            raise PatchError(f"{show(line)}: expected `diff --git a/<path> b/<path>` without spaces")
        return [m.group(1), m.group(2)]
    if line.startswith("--- "):
        path = _header_path(line, "a/")
        return [path] if path is not None else []
    if line.startswith("+++ "):
        path = _header_path(line, "b/")
        return [path] if path is not None else []
    if line.startswith(_RENAME):
        name = line.split(" ", 2)[2]
        if name.startswith('"'):
            raise PatchError(f"quoted path {show(name)}: file names needing quotes are not accepted")
        return [name]
    if line.startswith(("GIT binary patch", "Binary files ")):
        raise PatchError("binary patches are not accepted")
    mode = _MODE.match(line) or _INDEX_MODE.match(line)
    if mode is not None and mode.group(1) not in _MODES:
        raise PatchError(f"file mode {mode.group(1)} (a symlink or submodule) is not accepted")
    return []
