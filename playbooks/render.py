"""Playbook templates: checked statically at load, rendered in a sandbox into a `RemediationPlan`.

Alert labels and annotations never reach a template: only validated `params`, four `alert` fields
and operator-supplied `settings` do. Every rendered path, URL and argv element then gets its own
check, so even a loose param pattern cannot leave the worktree, redirect a request, or smuggle an
option. A param value is output once, literally: rendered text is never parsed as a template again.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote, urlsplit

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from models.plan import (
    Action,
    ArgoTarget,
    CommandAction,
    FluxTarget,
    GitApplyAction,
    GitEditAction,
    GitopsSyncAction,
    GitPushAction,
    GitRevertAction,
    HttpAction,
    KubeAction,
    KubeWaitAction,
    PlannedCheck,
    PlannedDiagnostic,
    PlannedPolicy,
    PlannedStep,
    PlannedVerify,
    PullRequestAction,
    RemediationPlan,
)
from playbooks.patch import PatchError, patch_files
from playbooks.schema import (
    COMMIT,
    CONTROL,
    RESERVED_NAMES,
    CommandSpec,
    GitApplySpec,
    GitEditSpec,
    GitopsSyncSpec,
    GitPushSpec,
    GitRevertSpec,
    HttpSpec,
    KubeSpec,
    KubeWaitSpec,
    Playbook,
    PlaybookSpec,
    PullRequestSpec,
    Step,
    dns_label_problem,
    dns_subdomain_problem,
    format_duration,
    is_template,
    parse_duration,
    show,
)

Loc = tuple[str | int, ...]

ROOTS = ("params", "alert", "settings")
#: How long one kube verb may take (a drain evicts every pod of a node, one call each).
KUBE_VERB_TIMEOUT = {"drain": 600.0}
KUBE_DEFAULT_TIMEOUT = 60.0
#: The only alert fields a template may read; labels and annotations go through params.
ALERT_FIELDS = ("alertname", "fingerprint", "startsAt", "status")
#: Pure string filters; anything that calls back into Python objects is left out.
FILTERS = frozenset({"lower", "upper", "trim", "replace", "default", "urlencode", "truncate", "string"})
SETTINGS_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
FINGERPRINT = re.compile(r"^[0-9A-Za-z]{1,128}$")
_PROMQL_UNSAFE = re.compile(r"[\"'`\\{}]")
_BRANCH = re.compile(r"^(?![-/])(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/+-]{1,200}(?<![./])(?<!\.lock)$")
_NODE_NAMES: dict[type[nodes.Node], str] = {
    nodes.Call: "function and method calls",
    nodes.For: "{% for %} loops",
    nodes.Assign: "{% set %}",
    nodes.AssignBlock: "{% set %}",
    nodes.Macro: "macros",
    nodes.CallBlock: "{% call %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% import %}",
    nodes.Extends: "{% extends %}",
    nodes.Block: "{% block %}",
    nodes.BinExpr: "arithmetic",
    nodes.UnaryExpr: "arithmetic",
    nodes.Test: "tests (`is ...`)",
}
_ALLOWED_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Concat,
    nodes.CondExpr,
    nodes.If,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Filter,
    nodes.Keyword,
)


class RenderError(Exception):
    """The playbook cannot be rendered for this alert; `problems` are `field.path: message` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class UnsafeValue(ValueError):
    """A value a template produced that must not appear where it was going."""


def loc_str(loc: Loc) -> str:
    return ".".join(str(p) for p in loc)


# --- static checks -------------------------------------------------------------------------------


def check_template(source: str, declared: Collection[str]) -> tuple[list[str], set[tuple[str, str]]]:
    """Parse one template and allow only reads of params.<declared>, alert.<field>, settings.<key>.

    Returns the problems and the `(root, name)` references it makes.
    """
    try:
        tree = _TEXT_ENV.parse(source)
    except TemplateSyntaxError as exc:
        return [f"template syntax error: {exc.message}"], set()
    problems: list[str] = []
    refs: set[tuple[str, str]] = set()
    for name in sorted(meta.find_undeclared_variables(tree) - set(ROOTS)):
        problems.append(f"template uses {name!r}: only params, alert and settings are available")
    _walk(tree, set(declared), problems, refs)
    return list(dict.fromkeys(problems)), refs


def _walk(node: nodes.Node, declared: set[str], problems: list[str], refs: set[tuple[str, str]]) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem):
        problem = _reference(node, declared, refs)
        if problem:
            problems.append(problem)
        return
    if isinstance(node, nodes.Name):
        if node.name in ROOTS:
            problems.append(f"use {node.name}.<name>, not {node.name} itself")
        else:
            problems.append(f"template uses {node.name!r}: only params, alert and settings are available")
        return
    if isinstance(node, nodes.Filter) and node.name not in FILTERS:
        problems.append(f"filter {node.name!r} is not allowed (allowed: {', '.join(sorted(FILTERS))})")
    if not isinstance(node, _ALLOWED_NODES):
        what = next((v for k, v in _NODE_NAMES.items() if isinstance(node, k)), type(node).__name__)
        problems.append(f"{what} not allowed in playbook templates")
        return
    for child in node.iter_child_nodes():
        _walk(child, declared, problems, refs)


def _reference(node: nodes.Getattr | nodes.Getitem, declared: set[str], refs: set[tuple[str, str]]) -> str:
    target = node.node
    if isinstance(node, nodes.Getattr):
        attr: object = node.attr
    else:
        attr = node.arg.value if isinstance(node.arg, nodes.Const) else None
    if isinstance(target, nodes.Getattr | nodes.Getitem):
        inner = _reference(target, declared, refs)
        return (
            inner
            or f"{attr!r} of a value is not allowed: read params.<name>, alert.<field> or settings.<key>"
        )
    if isinstance(target, nodes.Name) and target.name not in ROOTS:
        return f"template uses {target.name!r}: only params, alert and settings are available"
    if not isinstance(target, nodes.Name):
        what = "a constant" if isinstance(target, nodes.Const) else "an expression"
        return (
            f"access to {attr!r} on {what} is not allowed: read params.<name>, alert.<field>"
            " or settings.<key> only"
        )
    root = target.name
    if not isinstance(attr, str):
        return f"{root}[...] needs a constant name"
    if root == "params" and attr not in declared:
        names = ", ".join(sorted(declared)) or "none"
        return f"params.{attr} is not a declared param (declared: {names})"
    if root == "alert" and attr not in ALERT_FIELDS:
        return (
            f"alert.{attr} is not available to templates (only {', '.join(ALERT_FIELDS)}); "
            "take label and annotation values through a validated param"
        )
    if root == "settings" and (not SETTINGS_KEY.fullmatch(attr) or attr in RESERVED_NAMES):
        return f"settings.{attr} is not allowed (settings keys are lowercase names)"
    refs.add((root, attr))
    return ""


# --- checks on rendered values -------------------------------------------------------------------


def path_problem(path: str, *, dot_ok: bool = False) -> str:
    """Why a rendered repository path is unsafe ('' when it is fine): relative, normalised, no `..`."""
    shown = show(path)
    if not path:
        return "path is empty"
    if CONTROL.search(path):
        return f"path {shown} contains a control character"
    if path.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", path):
        return f"path {shown} must be relative to the repository"
    if "\\" in path:
        return f"path {shown} contains a backslash"
    parts = path.split("/")
    if ".." in parts:
        return f"path {shown} has a '..' component"
    if any(p.lower() == ".git" for p in parts):
        return f"path {shown} points into .git"
    if path == "." and dot_ok:
        return ""
    if path == "." or posixpath.normpath(path) != path:
        return f"path {shown} is not normalised"
    return ""


def url_problem(url: str) -> str:
    shown = show(url)
    if CONTROL.search(url) or re.search(r"\s", url):
        return f"url {shown} contains whitespace or a control character"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"url {shown} must be http:// or https://"
    if not parts.hostname:
        return f"url {shown} has no host"
    if parts.username is not None or parts.password is not None:
        return f"url {shown} must not carry credentials (use headers)"
    if {".", ".."} & set(unquote(parts.path).split("/")):
        return f"url {shown} has a '.' or '..' path segment"
    return ""


def branch_problem(branch: str) -> str:
    if not _BRANCH.fullmatch(branch):
        return f"branch {show(branch)} is not a safe git branch name"
    return ""


def commit_problem(commit: str) -> str:
    if not COMMIT.fullmatch(commit):
        return f"commit {show(commit)} is not a commit id (7-64 lowercase hex digits)"
    return ""


def patch_problems(patch: str) -> list[str]:
    """Why a patch is refused ([] when it may be applied): unreadable, or a path leaving the repo."""
    try:
        paths = patch_files(patch)
    except PatchError as exc:
        return [f"patch: {exc}"]
    return [f"patch: {problem}" for problem in map(path_problem, paths) if problem]


_ARGO_APP = re.compile(r"^(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def argo_app_problem(app: str) -> str:
    """An Argo CD application name (`name`, or `namespace/name` for apps in any namespace): a
    DNS-1123 name, so a param can never change the API path it lands in."""
    if len(app) > 253 or not _ARGO_APP.fullmatch(app):
        return f"app {show(app)} is not a valid Argo CD application name (DNS-1123, optionally ns/name)"
    return ""


def key_problem(key: str) -> str:
    if CONTROL.search(key) or re.search(r"\s", key):
        return f"key {show(key)} contains whitespace or a control character"
    if any(not part for part in key.split(".")):
        return f"key {show(key)} has an empty segment"
    return ""


# --- rendering -----------------------------------------------------------------------------------


def _finalize_text(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if CONTROL.search(text):
        raise UnsafeValue(f"value {show(text)} contains a control character")
    return text


def _finalize_query(value: Any) -> str:
    text = _finalize_text(value)
    if _PROMQL_UNSAFE.search(text):
        raise UnsafeValue(
            f"value {show(text)} cannot be placed in a PromQL query (quote, backslash or brace)"
        )
    return text


def _environment(finalize: Any) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=finalize)
    env.globals.clear()  # no range, lipsum, cycler, joiner, namespace, dict: only our three variables
    return env


def _finalize_slot(value: Any) -> str:
    """Leave a marker carrying the value (hex, so no filter or later text can alter it); the
    value is escaped for the PromQL string it turns out to sit in (`place_in_strings`)."""
    return "\x00" + _finalize_text(value).encode().hex() + "\x00"


_TEXT_ENV = _environment(_finalize_text)
_QUERY_ENV = _environment(_finalize_query)
_SLOT_ENV = _environment(_finalize_slot)


@lru_cache(maxsize=4096)
def _compiled(source: str, query: bool) -> Template:
    return (_QUERY_ENV if query else _TEXT_ENV).from_string(source)


def _escaped(value: str, quote: str) -> str:
    if quote == "`":  # a raw string has no escapes: only a value without backticks fits
        if "`" in value:
            raise UnsafeValue(f"value {show(value)} cannot be placed in a `raw` PromQL string")
        return value
    return value.replace("\\", "\\\\").replace(quote, "\\" + quote)


def place_in_strings(rendered: str) -> str:
    """Substitute the markers `_finalize_slot` left, each escaped for the PromQL string literal
    around it; a value outside a string (or right after a backslash) is refused, so no value can
    end a string, add a matcher or change the query's shape."""
    out: list[str] = []
    quote: str | None = None  # the open string's quote, "#" in a comment
    i = 0
    while i < len(rendered):
        c = rendered[i]
        if c == "\x00":
            end = rendered.index("\x00", i + 1)
            value = bytes.fromhex(rendered[i + 1 : end]).decode()
            if quote is None or quote == "#":
                raise UnsafeValue(
                    f"value {show(value)} is outside a quoted string: in a param query, template"
                    ' values may only stand inside PromQL strings (e.g. namespace="{{ params.namespace }}")'
                )
            out.append(_escaped(value, quote))
            i = end + 1
            continue
        out.append(c)
        i += 1
        if quote is None:
            quote = c if c in "\"'`#" else None
        elif quote == "#":
            quote = None if c == "\n" else quote
        elif c == quote:
            quote = None
        elif c == "\\" and quote != "`" and i < len(rendered):
            if rendered[i] == "\x00":
                raise UnsafeValue("a template value must not follow a backslash in a PromQL string")
            out.append(rendered[i])
            i += 1
    return "".join(out)


@lru_cache(maxsize=1024)
def _compiled_slots(source: str) -> Template:
    return _SLOT_ENV.from_string(source)


def _render_param_query(source: str, context: Mapping[str, Any]) -> str:
    if "\x00" in source:
        raise UnsafeValue("the query contains a NUL character")
    return place_in_strings(_compiled_slots(source).render(context))


class _AnySetting(Mapping[str, str]):
    """Lint-time stand-in for settings, whose keys are only known when the operator passes them."""

    def __getitem__(self, key: str) -> str:
        return "https://settings.invalid"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _Builder:
    """Walks a playbook's steps once; in `check` mode with placeholder values, collecting static problems."""

    def __init__(
        self,
        spec: PlaybookSpec,
        *,
        params: Mapping[str, str],
        alert: Mapping[str, str],
        settings: Mapping[str, str],
        check: bool,
    ) -> None:
        self.spec = spec
        self.check = check
        self.declared = set(spec.params)
        self.problems: list[tuple[Loc, str]] = []
        self.refs: set[tuple[str, str]] = set()
        self.settings = settings
        self.context = self._context(params, alert)

    def _context(self, params: Mapping[str, str], alert: Mapping[str, str]) -> dict[str, Any]:
        return {
            "params": MappingProxyType(dict(params)),
            "alert": MappingProxyType(dict(alert)),
            "settings": self.settings,
        }

    def _placeholder(self, letter: str) -> dict[str, Any]:
        return self._context({p: letter for p in self.declared}, {f: letter for f in ALERT_FIELDS})

    def fail(self, loc: Loc, message: str) -> None:
        self.problems.append((loc, message))

    # one value of each kind ----------------------------------------------------------------------

    def text(
        self, loc: Loc, source: str, *, query: bool = False, context: dict[str, Any] | None = None
    ) -> str:
        """Render one string; on failure record the problem and return it unrendered (plan is discarded)."""
        if not is_template(source):
            return source
        if self.check and context is None:
            issues, refs = check_template(source, self.declared)
            self.refs |= refs
            if issues:
                for issue in issues:
                    self.fail(loc, issue)
                return source
        try:
            return _compiled(source, query).render(context or self.context)
        except (TemplateError, UnsafeValue) as exc:
            self.fail(loc, str(exc) if isinstance(exc, UnsafeValue) else f"cannot render: {exc}")
            return source

    def _checked(self, loc: Loc, source: str, problem: Callable[..., str], **kw: Any) -> str:
        before = len(self.problems)
        value = self.text(loc, source)
        if len(self.problems) == before:
            issue = problem(value, **kw)
            if issue:
                self.fail(loc, issue)
        return value

    def commit(self, loc: Loc, source: str) -> str:
        if self.check and is_template(source):
            return self.text(loc, source)  # the value is only known for an alert
        return self._checked(loc, source, commit_problem)

    def path(self, loc: Loc, source: str, *, dot_ok: bool = False) -> str:
        return self._checked(loc, source, path_problem, dot_ok=dot_ok)

    def argv(self, loc: Loc, argv: list[str]) -> list[str]:
        out = []
        for i, source in enumerate(argv):
            before = len(self.problems)
            value = self.text((*loc, i), source)
            if len(self.problems) == before and is_template(source) and not self.check:
                probe = self.text((*loc, i), source, context=self._placeholder("p"))
                if value.startswith("-") and not probe.startswith("-"):
                    self.fail((*loc, i), f"value {show(value)} would be read as an option")
            out.append(value)
        return out

    def url(self, loc: Loc, source: str) -> str:
        before = len(self.problems)
        value = self._checked(loc, source, url_problem)
        if len(self.problems) == before and is_template(source):
            first = value if not self.check else self.text(loc, source, context=self._placeholder("q"))
            probe = self.text(loc, source, context=self._placeholder("p"))
            a, b = urlsplit(first), urlsplit(probe)
            if (a.scheme, a.netloc) != (b.scheme, b.netloc):
                self.fail(loc, "the URL's scheme and host must not depend on params or alert (use settings)")
        return value

    def data(self, loc: Loc, value: Any) -> Any:
        """JSON-like data: string leaves are templates, keys and other scalars are literal."""
        if isinstance(value, str):
            return self.text(loc, value)
        if isinstance(value, list):
            return [self.data((*loc, i), v) for i, v in enumerate(value)]
        if isinstance(value, dict):
            out = {}
            for key, v in value.items():
                if self.check and isinstance(key, str) and is_template(key):
                    self.fail((*loc, key), "templates are only allowed in string values, not in keys")
                out[key] = self.data((*loc, key), v)
            return out
        return value

    def kube_name(self, loc: Loc, source: str | None, what: str) -> str | None:
        """A rendered namespace (DNS-1123 label) or object/node name (DNS-1123 subdomain), or refused:
        whatever a label carried, only a valid name ever reaches a verb."""
        if source is None:
            return None
        check = dns_label_problem if what == "namespace" else dns_subdomain_problem
        return self._checked(loc, source, lambda value: check(value, what))

    def replicas(self, loc: Loc, source: int | str | None, maximum: int | None) -> int | None:
        if source is None or isinstance(source, int):
            return source
        before = len(self.problems)
        value = self.text(loc, source)
        if self.check or len(self.problems) > before:
            return 0
        if not value.isdigit() or len(value) > 6 or not 0 <= int(value) <= (maximum or 0):
            self.fail(loc, f"replicas {show(value)} is not a whole number in 0..max_replicas ({maximum})")
            return 0
        return int(value)

    def duration(self, loc: Loc, source: str) -> float:
        if not is_template(source):
            return parse_duration(source)
        before = len(self.problems)
        value = self.text(loc, source)
        if self.check or len(self.problems) > before:
            return 1.0
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(loc, str(exc))
            return 1.0

    # the plan -------------------------------------------------------------------------------------

    def action(self, loc: Loc, step: Step, *, sandbox: bool = False) -> Action:
        spec = step.action
        at = (*loc, step.kind)
        if isinstance(spec, GitRevertSpec):
            if spec.commit is not None:
                return GitRevertAction(commit=self.commit((*at, "commit"), spec.commit))
            return GitRevertAction(
                since_seconds=self.duration((*at, "since"), spec.since or "0s"),
                paths=[self.path((*at, "paths", i), p) for i, p in enumerate(spec.paths)],
                max_commits=spec.max_commits,
            )
        if isinstance(spec, GitApplySpec):
            for problem in patch_problems(spec.patch):  # literal data, never rendered
                self.fail((*at, "patch"), problem)
            return GitApplyAction(patch=spec.patch)
        if isinstance(spec, GitEditSpec):
            return GitEditAction(
                file=self.path((*at, "file"), spec.file),
                key=self._checked((*at, "key"), spec.key, key_problem),
                value=self.data((*at, "value"), spec.value),
                scale=spec.scale,
                max_value=spec.max_value,
                format=spec.format,
            )
        if isinstance(spec, CommandSpec):
            return CommandAction(
                argv=self.argv((*at, "argv"), spec.argv),
                env={k: self.text((*at, "env", k), v) for k, v in spec.env.items()},
                cwd=self.path((*at, "cwd"), spec.cwd, dot_ok=True),
                timeout_seconds=spec.timeout,
                sandbox=sandbox or spec.sandbox,
            )
        if isinstance(spec, HttpSpec):
            return HttpAction(
                method=spec.method,
                url=self.url((*at, "url"), spec.url),
                json_body=self.data((*at, "json"), spec.json_body),
                headers={k: self.text((*at, "headers", k), v) for k, v in spec.headers.items()},
                expect_status=list(spec.expect_status),
                timeout_seconds=spec.timeout,
            )
        if isinstance(spec, GitPushSpec):
            return GitPushAction(
                branch=self._checked((*at, "branch"), spec.branch, branch_problem), remote=spec.remote
            )
        if isinstance(spec, KubeSpec):
            return KubeAction(
                verb=spec.verb,
                workload=spec.kind,
                namespace=self.kube_name((*at, "namespace"), spec.namespace, "namespace"),
                name=self.kube_name((*at, "name"), spec.name, "name"),
                node=self.kube_name((*at, "node"), spec.node, "node"),
                cronjob=self.kube_name((*at, "cronjob"), spec.cronjob, "cronjob"),
                replicas=self.replicas((*at, "replicas"), spec.replicas, spec.max_replicas),
                max_replicas=spec.max_replicas,
                scale=spec.scale,
                max_size=spec.max_size,
                dry_run=sandbox,
                timeout_seconds=KUBE_VERB_TIMEOUT.get(spec.verb, KUBE_DEFAULT_TIMEOUT),
            )
        if isinstance(spec, KubeWaitSpec):
            return KubeWaitAction(
                workload=spec.kind,
                namespace=self.kube_name((*at, "namespace"), spec.namespace, "namespace") or "",
                name=self.kube_name((*at, "name"), spec.name, "name") or "",
                timeout_seconds=spec.timeout,
            )
        if isinstance(spec, PullRequestSpec):
            base = self._checked((*at, "base"), spec.base, branch_problem) if spec.base else None
            return PullRequestAction(
                repo=spec.repo,
                merge=spec.merge,
                base=base,
                labels=list(spec.labels),
                timeout_seconds=spec.timeout,
                merge_approves=spec.merge_approves,
            )
        if isinstance(spec, GitopsSyncSpec):
            argocd = flux = None
            if spec.argocd is not None:
                app = self._checked((*at, "argocd", "app"), spec.argocd.app, argo_app_problem)
                argocd = ArgoTarget(app=app)
            if spec.flux is not None:
                flux = FluxTarget(
                    kind=spec.flux.kind,
                    namespace=self.kube_name((*at, "flux", "namespace"), spec.flux.namespace, "namespace")
                    or "",
                    name=self.kube_name((*at, "flux", "name"), spec.flux.name, "name") or "",
                )
            return GitopsSyncAction(argocd=argocd, flux=flux, timeout_seconds=spec.timeout)
        raise AssertionError(f"unknown action {step.kind}")  # pragma: no cover

    def steps(self, phase: str, steps: list[Any]) -> list[PlannedStep]:
        planned = []
        for i, step in enumerate(steps):
            action = self.action((phase, i), step, sandbox=phase == "test")
            name = self.text((phase, i, "name"), step.name) if step.name else describe(action)
            planned.append(PlannedStep(phase=phase, index=i, description=name, action=action))
        return planned

    def plan(
        self, *, digest: str, fingerprint: str, incident_id: str, starts_at: datetime | None
    ) -> RemediationPlan:
        spec = self.spec
        target = self.text(("target",), spec.target)
        if not target.strip() or len(target) > 200:
            self.fail(("target",), f"target {show(target)} must be 1-200 characters")
        diagnose = [
            PlannedCheck(
                name=check.name,
                query=self.text(("diagnose", i, "query"), check.query, query=True),
                condition=check.condition,
            )
            for i, check in enumerate(spec.diagnose)
        ]
        diagnostics = []
        for i, diag in enumerate(spec.diagnostics):
            at: Loc = ("diagnostics", i)
            if diag.query is not None:
                diagnostics.append(
                    PlannedDiagnostic(name=diag.name, query=self.text((*at, "query"), diag.query, query=True))
                )
            elif diag.kube_events is not None:
                obj = diag.kube_events
                ref = {
                    "kind": obj.kind,
                    "namespace": self.kube_name((*at, "kube_events", "namespace"), obj.namespace, "namespace")
                    or "",
                    "name": self.kube_name((*at, "kube_events", "name"), obj.name, "name") or "",
                }
                diagnostics.append(PlannedDiagnostic(name=diag.name, kube_events=ref))
        verify = None
        if spec.verify is not None:
            verify = PlannedVerify(
                query=self.text(("verify", "query"), spec.verify.query, query=True),
                condition=spec.verify.condition,
                hold_for_seconds=spec.verify.hold_for,
                timeout_seconds=spec.verify.timeout,
                alert_resolved=spec.verify.alert_resolved,
            )
        rollback = "auto" if isinstance(spec.rollback, str) else self.steps("rollback", spec.rollback)
        return RemediationPlan(
            playbook=spec.name,
            playbook_digest=digest,
            category=spec.category,
            description=spec.description,
            incident_id=incident_id,
            alert_fingerprint=fingerprint,
            alertname=spec.match.alertname,
            alert_starts_at=starts_at,
            target=target,
            repo=spec.repo,
            params=dict(self.context["params"]),
            policy=PlannedPolicy(
                mode=spec.policy.mode,
                max_runs=spec.policy.max_runs,
                window_seconds=spec.policy.window,
                cooldown_seconds=spec.policy.cooldown,
                require_firing=spec.policy.require_firing,
            ),
            diagnose=diagnose,
            diagnostics=diagnostics,
            fix=self.steps("fix", spec.fix),
            test=self.steps("test", spec.test),
            deploy=self.steps("deploy", spec.deploy),
            verify=verify,
            rollback=rollback,
        )


def describe(action: Action) -> str:
    """A one-line, human description of a rendered action (for tickets and the `plan` command)."""
    if isinstance(action, GitRevertAction) and action.commit is not None:
        return f"revert commit {action.commit[:12]}"
    if isinstance(action, GitApplyAction):
        try:
            files = patch_files(action.patch)
        except PatchError:
            files = []
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        return f"apply a patch to {shown or 'the repository'}"
    if isinstance(action, GitRevertAction):
        paths = ", ".join(action.paths)
        since = format_duration(action.since_seconds)
        return f"revert up to {action.max_commits} commits from the last {since} touching {paths}"
    if isinstance(action, GitEditAction):
        if action.scale is not None:
            cap = f" (at most {action.max_value})" if action.max_value is not None else ""
            return f"scale {action.key} in {action.file} by {action.scale:g}{cap}"
        return f"set {action.key} in {action.file} to {json.dumps(action.value)}"
    if isinstance(action, CommandAction):
        where = "" if action.cwd == "." else f" in {action.cwd}"
        return f"run {shlex.join(action.argv)}{where}{' (sandboxed)' if action.sandbox else ''}"
    if isinstance(action, HttpAction):
        return f"{action.method} {action.url}"
    if isinstance(action, KubeAction):
        return describe_kube(action)
    if isinstance(action, KubeWaitAction):
        within = format_duration(action.timeout_seconds)
        return f"wait for {action.workload} {action.namespace}/{action.name} to roll out (within {within})"
    if isinstance(action, PullRequestAction):
        onto = action.base or "the base branch"
        who = "auto-merge" if action.merge == "auto" else "a person"
        approval = "; the merge is the approval" if action.merge_approves else ""
        within = format_duration(action.timeout_seconds)
        return (
            f"open a pull request of the fix into {onto} of {action.repo} (labels {', '.join(action.labels)})"
            f" and wait up to {within} for {who} to merge it{approval}"
        )
    if isinstance(action, GitopsSyncAction):
        within = format_duration(action.timeout_seconds)
        if action.argocd is not None:
            what = f"Argo CD application {action.argocd.app}"
        else:
            assert action.flux is not None
            what = f"Flux {action.flux.kind} {action.flux.namespace}/{action.flux.name}"
        return f"sync {what} and wait up to {within} until it runs the fix and is healthy"
    return f"push to {action.remote}/{action.branch}"


def describe_kube(a: KubeAction) -> str:
    where = f"{a.namespace}/{a.name}"
    match a.verb:
        case "rollout_restart":
            text = f"rollout restart {a.workload} {where}"
        case "scale":
            text = f"scale {a.workload} {where} to {a.replicas} replicas (at most {a.max_replicas})"
        case "delete_pod":
            text = f"delete pod {where}"
        case "evict_pod":
            text = f"evict pod {where} (PodDisruptionBudgets respected)"
        case "cordon" | "uncordon":
            text = f"{a.verb} node {a.node}"
        case "drain":
            text = f"drain node {a.node} (cordon, then evict its pods)"
        case "resize_pvc":
            text = f"grow PVC {where} by {a.scale or 0:g} (at most {a.max_size})"
        case "job_from_cronjob":
            text = f"create a Job from CronJob {a.namespace}/{a.cronjob}"
        case "delete_failed_job":
            text = f"delete failed Job {where}"
    return f"kube {text}{' (server-side dry run)' if a.dry_run else ''}"


def check_playbook(spec: PlaybookSpec) -> tuple[list[tuple[Loc, str]], frozenset[str]]:
    """Static checks of every template and of the literal parts of paths, URLs and branches.

    Returns the problems (location, message) and the alert fields the templates read.
    """
    builder = _Builder(spec, params={}, alert={}, settings=_AnySetting(), check=True)
    builder.context = builder._placeholder("p")
    builder.plan(digest="", fingerprint="lint", incident_id="", starts_at=None)
    _check_param_queries(builder)
    fields = frozenset(name for root, name in builder.refs if root == "alert")
    return builder.problems, fields


def _check_param_queries(builder: _Builder) -> None:
    """A `from: query` param's query may read only params declared before it (they are resolved in
    order), and its values must stand inside PromQL strings."""
    earlier: list[str] = []
    for name, param in builder.spec.params.items():
        if param.query is not None:
            loc: Loc = ("params", name, "query")
            issues, refs = check_template(param.query, builder.declared)
            builder.refs |= refs
            later = sorted(ref for root, ref in refs if root == "params" and ref not in earlier)
            for ref in later:
                issues.append(
                    f"params.{ref} is not declared before {name}: a query may only use params declared"
                    f" above it (params are resolved in order; above: {', '.join(earlier) or 'none'})"
                )
            for issue in issues:
                builder.fail(loc, issue)
            if not issues:
                try:
                    _render_param_query(param.query, builder.context)
                except (TemplateError, UnsafeValue) as exc:
                    builder.fail(loc, str(exc))
        earlier.append(name)


def _alert_context(playbook: Playbook, fingerprint: str, status: str, starts_at: datetime) -> dict[str, str]:
    if "fingerprint" in playbook.alert_fields and not FINGERPRINT.fullmatch(fingerprint):
        raise RenderError([f"alert fingerprint {show(fingerprint)} is not alphanumeric"])
    return {
        "alertname": playbook.spec.match.alertname,
        "fingerprint": fingerprint,
        "startsAt": starts_at.isoformat().replace("+00:00", "Z"),
        "status": status,
    }


def render_param_query(
    playbook: Playbook,
    name: str,
    *,
    params: Mapping[str, str],
    fingerprint: str,
    status: str,
    starts_at: datetime,
    settings_ctx: Mapping[str, str] | None = None,
) -> str:
    """The PromQL of `from: query` param `name` for one alert, each template value escaped for
    the string literal it stands in; RenderError when a value cannot be placed safely."""
    source = playbook.spec.params[name].query
    assert source is not None, f"param {name} is not from a query"
    context = {
        "params": MappingProxyType(dict(params)),
        "alert": MappingProxyType(_alert_context(playbook, fingerprint, status, starts_at)),
        "settings": MappingProxyType({str(k): str(v) for k, v in (settings_ctx or {}).items()}),
    }
    try:
        return _render_param_query(source, context)
    except UnsafeValue as exc:
        raise RenderError([f"params.{name}.query: {exc}"]) from exc
    except TemplateError as exc:
        raise RenderError([f"params.{name}.query: cannot render: {exc}"]) from exc


def render_plan(
    playbook: Playbook,
    *,
    params: Mapping[str, str],
    fingerprint: str,
    status: str,
    starts_at: datetime,
    incident_id: str = "",
    settings_ctx: Mapping[str, str] | None = None,
) -> RemediationPlan:
    """Render the playbook for one alert whose params already passed their patterns."""
    alert = _alert_context(playbook, fingerprint, status, starts_at)
    settings = MappingProxyType({str(k): str(v) for k, v in (settings_ctx or {}).items()})
    builder = _Builder(playbook.spec, params=params, alert=alert, settings=settings, check=False)
    plan = builder.plan(
        digest=playbook.digest, fingerprint=fingerprint, incident_id=incident_id, starts_at=starts_at
    )
    if builder.problems:
        raise RenderError([f"{loc_str(loc)}: {message}" for loc, message in builder.problems])
    return plan
