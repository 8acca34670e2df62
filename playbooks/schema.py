"""The playbook file format (`apiVersion: selfheal/v1`, `kind: Playbook`): pydantic models only.

Strict types and `extra="forbid"` everywhere, so a typo is an error with a line number instead of a
silently ignored field. Nothing here renders templates or reads alerts: `render.py` checks and
renders the templated strings, `matcher.py` decides which playbook applies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from models.plan import KUBE_VERBS, KubeVerb, WorkloadKind
from playbooks.condition import ConditionError, parse_condition

API_VERSION = "selfheal/v1"
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
REPO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
PARAM_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Names that would resolve to a mapping method instead of a value inside a template.
RESERVED_NAMES = frozenset({"get", "items", "keys", "values", "copy"})
#: C0 controls and DEL: never allowed in a param value (NUL, newlines, escapes).
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

ACTION_KINDS = (
    "git_revert",
    "git_edit",
    "command",
    "http",
    "git_push",
    "kube",
    "kube_wait",
    "git_apply",
    "pull_request",
    "gitops_sync",
)
GIT_KINDS = frozenset({"git_revert", "git_edit", "git_push", "git_apply", "pull_request", "gitops_sync"})
#: A commit id as `git_revert: {commit: …}` takes it (literal, or a template rendering to one).
COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


def invalid(message: str) -> PydanticCustomError:
    """A validation error whose message is shown as is (no "Value error, " prefix)."""
    return PydanticCustomError("playbook", message)


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def dns_label_problem(value: str, what: str) -> str:
    """Why `value` is not a DNS-1123 label (a namespace), '' when it is one."""
    if len(value) > 63 or not _DNS_LABEL.fullmatch(value):
        return f"{what} {show(value)} is not a valid DNS-1123 label (lowercase a-z, 0-9, '-', at most 63)"
    return ""


def dns_subdomain_problem(value: str, what: str) -> str:
    """Why `value` is not a DNS-1123 subdomain (an object or node name), '' when it is one."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        return f"{what} {show(value)} is not a valid DNS-1123 name (lowercase a-z, 0-9, '-', '.')"
    return ""


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def show(value: str, limit: int = 80) -> str:
    """Untrusted text for a message: quoted, escaped (no raw newlines or terminal escapes), shortened."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


# --- durations and conditions -------------------------------------------------------------------

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^(?:[0-9]+(?:ms|s|m|h|d|w))+$")
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """`30s`, `5m`, `2h`, `1d`, `1h30m` → seconds (Prometheus style, so authors need not learn a new one)."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m, 2h, 1d")
    return float(sum(int(n) * _UNITS[unit] for n, unit in _DURATION_PART.findall(text)))


def format_duration(seconds: float) -> str:
    """Seconds back to the shortest exact duration string, for human-readable step descriptions."""
    if seconds <= 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _duration_input(value: Any) -> float:
    if not isinstance(value, str):
        raise invalid("a duration is a string such as 30s, 5m, 2h or 1d")
    try:
        return parse_duration(value.strip())
    except ValueError as exc:
        raise invalid(str(exc)) from exc


def _duration_or_template(value: str) -> str:
    if not is_template(value):
        _duration_input(value)
    return value


Duration = Annotated[float, BeforeValidator(_duration_input)]
#: A duration that may come from a param (`since: "{{ params.window }}"`); parsed after rendering.
TemplatedDuration = Annotated[str, AfterValidator(_duration_or_template)]


def normalize_condition(text: str) -> str:
    """`>0.05` → `> 0.05`: one spelling in the plan, so the executor parses a single form."""
    try:
        cond = parse_condition(text)
    except ConditionError as exc:
        raise invalid(str(exc)) from exc
    if not math.isfinite(cond.threshold):
        raise invalid(f"invalid condition {text!r}: the number must be finite")
    return cond.normalized()


Condition = Annotated[str, AfterValidator(normalize_condition)]


# --- Alertmanager label matchers ----------------------------------------------------------------

_MATCHER = re.compile(
    r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|([^\s"\',{}=!~]*))\s*$'
)
_UNESCAPE = {"n": "\n", '"': '"', "\\": "\\"}


class LabelMatcher(BaseModel):
    """One Alertmanager matcher (`=`, `!=`, `=~`, `!~`); regexes are fully anchored, as in Alertmanager."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)

    def model_post_init(self, context: Any, /) -> None:
        if self.op in ("=~", "!~"):
            self._regex = re.compile(self.value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """A missing label matches as the empty string, as in Alertmanager."""
        actual = labels.get(self.name, "")
        if self._regex is not None:
            hit = self._regex.fullmatch(actual) is not None
            return hit if self.op == "=~" else not hit
        return (actual == self.value) if self.op == "=" else (actual != self.value)

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> LabelMatcher:
    m = _MATCHER.fullmatch(text)
    if m is None:
        raise ValueError(f'invalid matcher {text!r}: expected name="value" with one of = != =~ !~')
    raw = m.group(3) if m.group(3) is not None else m.group(4)
    value = re.sub(r"\\(.)", lambda e: _UNESCAPE.get(e.group(1), "\\" + e.group(1)), raw)
    try:
        return LabelMatcher(name=m.group(1), op=m.group(2), value=value)
    except re.error as exc:
        raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from exc


def _matcher_input(value: Any) -> Any:
    if isinstance(value, LabelMatcher):
        return value
    if not isinstance(value, str):
        raise invalid('a matcher is a string such as service=~"checkout|cart"')
    try:
        return parse_matcher(value)
    except ValueError as exc:
        raise invalid(str(exc)) from exc


Matcher = Annotated[LabelMatcher, BeforeValidator(_matcher_input)]


# --- the playbook model ---------------------------------------------------------------------------


class Spec(BaseModel):
    """Strict and closed: unknown keys and wrong types are errors, not surprises."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MatchSpec(Spec):
    alertname: str = Field(min_length=1)
    matchers: list[Matcher] = Field(default_factory=list)
    priority: int = Field(default=0, ge=-1000, le=1000)


class ParamSpec(Spec):
    """A param is the only way alert data reaches a template, and only after `pattern` accepts it.

    `from: label|annotation` reads the alert; `from: query` reads label `key` of the first sample a
    PromQL `query` returns, at run time (the query may use params declared before this one).
    """

    source: Literal["label", "annotation", "query"] = Field(alias="from")
    key: str = Field(min_length=1)
    pattern: str = Field(min_length=1)
    #: Use this capture group of `pattern` as the value (e.g. the host out of `instance="host:9100"`).
    group: int | None = Field(default=None, ge=1)
    default: str | None = None
    #: `from: query` only: an instant PromQL query; template values are placed inside its strings.
    query: str | None = None
    _regex: re.Pattern[str] = PrivateAttr()

    @field_validator("key")
    @classmethod
    def _label_name(cls, key: str, info: ValidationInfo) -> str:
        if info.data.get("source") in ("label", "query") and not LABEL_NAME.fullmatch(key):
            raise invalid(f"{key!r} is not a valid label name")
        return key

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise invalid(f"invalid regular expression {value!r}: {exc}") from exc
        return value

    @field_validator("group")
    @classmethod
    def _group_exists(cls, group: int | None, info: ValidationInfo) -> int | None:
        pattern = info.data.get("pattern")
        if group is not None and pattern is not None and group > re.compile(pattern).groups:
            raise invalid(f"the pattern has no capture group {group}")
        return group

    @field_validator("default")
    @classmethod
    def _default_matches(cls, default: str | None, info: ValidationInfo) -> str | None:
        pattern = info.data.get("pattern")
        if default is None:
            return None
        if CONTROL.search(default):
            raise invalid("contains a control character")
        if pattern is not None and re.fullmatch(pattern, default) is None:
            raise invalid(f"{default!r} does not match {pattern}")
        return default

    @model_validator(mode="after")
    def _query_source(self) -> ParamSpec:
        if self.source != "query":
            if self.query is not None:
                raise invalid("query: only with `from: query`")
            return self
        if self.query is None or not self.query.strip():
            raise invalid("query: a non-empty PromQL query is required with `from: query`")
        if self.default is not None:
            raise invalid("default: not allowed with `from: query` (no result rules the playbook out)")
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._regex = re.compile(self.pattern)

    @property
    def regex(self) -> re.Pattern[str]:
        return self._regex


class CheckSpec(Spec):
    """A PromQL precondition: do not act unless the symptom is (still) there."""

    name: str = Field(min_length=1)
    query: str = Field(min_length=1)
    condition: Condition


class VerifySpec(Spec):
    query: str = Field(min_length=1)
    condition: Condition
    hold_for: Duration = 60.0
    timeout: Duration = 600.0
    alert_resolved: bool = False

    @field_validator("timeout")
    @classmethod
    def _hold_fits(cls, timeout: float, info: ValidationInfo) -> float:
        if timeout <= 0:
            raise invalid("must be positive")
        if info.data.get("hold_for", 0) > timeout:
            raise invalid("shorter than hold_for, so verification could never pass")
        return timeout


#: Kinds whose events a diagnostic may attach (the objects the stock alerts name).
EVENT_KINDS = (
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "Node",
    "PersistentVolumeClaim",
)


class KubeObjectSpec(Spec):
    kind: Literal[
        "Pod", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Node", "PersistentVolumeClaim"
    ]
    namespace: str | None = Field(default=None, min_length=1)
    name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _namespaced(self) -> KubeObjectSpec:
        if (self.kind == "Node") != (self.namespace is None):
            raise invalid("namespace: required for every kind but Node, which has none")
        return self


class DiagnosticSpec(Spec):
    """Information for the humans reading the ticket; never gates anything (that is `diagnose`)."""

    name: str = Field(min_length=1)
    query: str | None = Field(default=None, min_length=1)
    kube_events: KubeObjectSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DiagnosticSpec:
        if (self.query is None) == (self.kube_events is None):
            raise invalid("set exactly one of query or kube_events")
        return self


class PolicySpec(Spec):
    mode: Literal["auto", "approve", "suggest"] = "approve"
    max_runs: int = Field(default=3, ge=1, le=100)
    window: Duration = 3600.0
    cooldown: Duration = 600.0
    require_firing: bool = True


class GitRevertSpec(Spec):
    """Either the commits of a window (`since` + `paths`), or one `commit` of the base branch."""

    since: TemplatedDuration | None = None
    paths: list[str] = Field(default_factory=list)
    max_commits: int = Field(default=5, ge=1, le=50)
    commit: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _window_or_commit(self) -> GitRevertSpec:
        if self.commit is not None:
            if self.since is not None or self.paths:
                raise invalid("set either commit, or since and paths, not both")
            if not is_template(self.commit) and not COMMIT.fullmatch(self.commit):
                raise invalid(f"commit {show(self.commit)} is not a commit id (7-64 lowercase hex digits)")
            return self
        if self.since is None or not self.paths:
            raise invalid("needs since and paths (the commits of a window), or commit (one commit)")
        return self


class GitApplySpec(Spec):
    """A unified diff applied with `git apply --index`; literal (never a template), and every path
    it names must stay inside the repository."""

    patch: str = Field(min_length=1, max_length=200_000)


_MAX_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P|m)?$")


class GitEditSpec(Spec):
    file: str = Field(min_length=1)
    key: str = Field(min_length=1)
    value: Any = None
    scale: float | None = Field(default=None, gt=0, le=100)
    max_value: float | str | None = None
    format: Literal["auto", "yaml", "json", "toml", "env"] = "auto"

    @field_validator("max_value")
    @classmethod
    def _quantity(cls, value: float | str | None) -> float | str | None:
        if isinstance(value, str) and not _MAX_QUANTITY.match(value):
            raise ValueError(f"max_value {value!r}: a number or a quantity such as 4096Mi, 2Gi, 500m")
        return value

    @model_validator(mode="after")
    def _value_or_scale(self) -> GitEditSpec:
        if ("value" in self.model_fields_set) == (self.scale is not None):
            raise invalid("set exactly one of value or scale")
        if self.max_value is not None and self.scale is None:
            raise invalid("max_value: only meaningful with scale")
        return self


class CommandSpec(Spec):
    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = Field(default=".", min_length=1)
    timeout: Duration = 60.0
    sandbox: bool = False

    @field_validator("argv")
    @classmethod
    def _program_literal(cls, argv: list[str]) -> list[str]:
        if not argv[0].strip():
            raise invalid("argv: the program (argv[0]) is empty")
        if is_template(argv[0]):
            raise invalid("argv: the program (argv[0]) must be literal, not a template")
        return argv

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME.fullmatch(name):
                raise invalid(f"env: {name!r} is not a valid variable name")
        return env


class HttpSpec(Spec):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(min_length=1)
    json_body: Any = Field(default=None, alias="json")
    headers: dict[str, str] = Field(default_factory=dict)
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=lambda: [200, 201, 202, 204], min_length=1
    )
    timeout: Duration = 30.0

    @field_validator("headers")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", name):
                raise invalid(f"headers: {name!r} is not a valid header name")
        return headers


class GitPushSpec(Spec):
    branch: str = Field(min_length=1)
    remote: str = Field(default="origin", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


#: The fields each kube verb takes; all of them are required and every other field is refused.
KUBE_VERB_FIELDS: dict[str, tuple[str, ...]] = {
    "rollout_restart": ("kind", "namespace", "name"),
    "scale": ("kind", "namespace", "name", "replicas", "max_replicas"),
    "delete_pod": ("namespace", "name"),
    "evict_pod": ("namespace", "name"),
    "cordon": ("node",),
    "uncordon": ("node",),
    "drain": ("node",),
    "resize_pvc": ("namespace", "name", "scale", "max_size"),
    "job_from_cronjob": ("namespace", "cronjob"),
    "delete_failed_job": ("namespace", "name"),
}
assert set(KUBE_VERB_FIELDS) == set(KUBE_VERBS)
_KUBE_FIELDS = (
    "kind",
    "namespace",
    "name",
    "node",
    "cronjob",
    "replicas",
    "max_replicas",
    "scale",
    "max_size",
)
_SIZE = re.compile(r"^[1-9][0-9]{0,5}(Ki|Mi|Gi|Ti)$")


def _kube_names(spec: BaseModel) -> None:
    """Literal names must already be DNS-1123 names; templated ones are checked after rendering."""
    for field in ("namespace", "name", "node", "cronjob"):
        value = getattr(spec, field, None)
        if value is None or is_template(value):
            continue
        if field == "namespace":
            problem = dns_label_problem(value, "namespace")
        else:
            problem = dns_subdomain_problem(value, field)
        if problem:
            raise invalid(problem)


class KubeSpec(Spec):
    """One verb of the closed list; which fields it takes is in `KUBE_VERB_FIELDS`."""

    verb: KubeVerb
    kind: WorkloadKind | None = None
    namespace: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)
    node: str | None = Field(default=None, min_length=1)
    cronjob: str | None = Field(default=None, min_length=1)
    #: A number, or a template rendering to one (checked against max_replicas after rendering).
    replicas: int | str | None = None
    max_replicas: int | None = Field(default=None, ge=1, le=1000)
    scale: float | None = Field(default=None, gt=1, le=10)
    max_size: str | None = None

    @model_validator(mode="after")
    def _verb_fields(self) -> KubeSpec:
        takes = KUBE_VERB_FIELDS[self.verb]
        for field in _KUBE_FIELDS:
            present = getattr(self, field) is not None
            if field in takes and not present:
                raise invalid(f"verb {self.verb} needs `{field}` (it takes {', '.join(takes)})")
            if field not in takes and present:
                raise invalid(f"`{field}` is not used by verb {self.verb} (it takes {', '.join(takes)})")
        if self.verb == "scale" and self.kind == "DaemonSet":
            raise invalid("verb scale: a DaemonSet has no replicas (kind: Deployment or StatefulSet)")
        if isinstance(self.replicas, str) and not is_template(self.replicas):
            raise invalid("replicas: a number, or a template such as '{{ params.replicas }}'")
        if isinstance(self.replicas, int) and not 0 <= self.replicas <= (self.max_replicas or 0):
            raise invalid(f"replicas: {self.replicas} is outside 0..max_replicas ({self.max_replicas})")
        if self.max_size is not None and not _SIZE.fullmatch(self.max_size):
            raise invalid(f"max_size {self.max_size!r}: a size such as 200Gi (Ki, Mi, Gi or Ti)")
        _kube_names(self)
        return self


class KubeWaitSpec(Spec):
    """Wait for a workload's rollout to complete, as `kubectl rollout status` decides it."""

    kind: WorkloadKind
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)
    timeout: Duration = 600.0

    @model_validator(mode="after")
    def _names(self) -> KubeWaitSpec:
        if self.timeout <= 0:
            raise invalid("timeout: must be positive")
        _kube_names(self)
        return self


_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/-]{0,49}$")
#: The labels of a pull request selfheal opens when nothing says otherwise (a `pull_request` step
#: without `labels`, and every drafted playbook's request).
DEFAULT_PR_LABELS = ("selfheal",)


class PullRequestSpec(Spec):
    """Deploy through review: the fix goes to a pull (merge) request that a person or the forge's
    auto-merge merges; the wait is durable (hours if need be), woken early by the forge's webhook."""

    repo: str = Field(pattern=REPO_PATTERN)
    merge: Literal["auto", "human"] = "human"
    base: str | None = Field(default=None, min_length=1)
    labels: list[str] = Field(default_factory=lambda: list(DEFAULT_PR_LABELS), max_length=10)
    timeout: Duration = 86400.0
    #: For `policy.mode: approve` only: the merge is the approval, so the request opens at once.
    merge_approves: bool = False

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str]) -> list[str]:
        for label in labels:
            if not _LABEL.fullmatch(label):
                raise invalid(f"labels: {label!r} is not a label (letters, digits, ' ._:/-', at most 50)")
        return labels

    @model_validator(mode="after")
    def _bounds(self) -> PullRequestSpec:
        if not 60 <= self.timeout <= 30 * 86400:
            raise invalid("timeout: between 1m and 30d")
        if self.merge_approves and self.merge != "human":
            raise invalid("merge_approves: only with merge: human (a person's merge is the approval)")
        return self


class ArgoSyncSpec(Spec):
    app: str = Field(min_length=1)


class FluxSyncSpec(Spec):
    kind: Literal["Kustomization", "HelmRelease"] = "Kustomization"
    namespace: str = Field(min_length=1)
    name: str = Field(min_length=1)

    @model_validator(mode="after")
    def _names(self) -> FluxSyncSpec:
        _kube_names(self)
        return self


class GitopsSyncSpec(Spec):
    """Have Argo CD (`argocd: {app}`) or Flux (`flux: {kind, namespace, name}`) apply the deployed
    commit, then wait until it runs it (or a later commit containing it) and is healthy."""

    argocd: ArgoSyncSpec | None = None
    flux: FluxSyncSpec | None = None
    timeout: Duration = 600.0

    @model_validator(mode="after")
    def _one_tool(self) -> GitopsSyncSpec:
        if (self.argocd is None) == (self.flux is None):
            raise invalid("set exactly one of argocd or flux")
        if not 1 <= self.timeout <= 86400:
            raise invalid("timeout: between 1s and 1d")
        return self


ActionSpec = (
    GitRevertSpec
    | GitEditSpec
    | CommandSpec
    | HttpSpec
    | GitPushSpec
    | KubeSpec
    | KubeWaitSpec
    | GitApplySpec
    | PullRequestSpec
    | GitopsSyncSpec
)


class Step(Spec):
    """One step: an optional `name` and exactly one action key allowed in its phase."""

    phase: ClassVar[str] = ""
    allowed: ClassVar[tuple[str, ...]] = ACTION_KINDS

    name: str | None = Field(default=None, min_length=1)
    git_revert: GitRevertSpec | None = None
    git_edit: GitEditSpec | None = None
    command: CommandSpec | None = None
    http: HttpSpec | None = None
    git_push: GitPushSpec | None = None
    kube: KubeSpec | None = None
    kube_wait: KubeWaitSpec | None = None
    git_apply: GitApplySpec | None = None
    pull_request: PullRequestSpec | None = None
    gitops_sync: GitopsSyncSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_action(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        actions = [k for k in data if k in ACTION_KINDS]
        for key in actions:
            if key not in cls.allowed:
                raise invalid(
                    f"`{key}` is not allowed in {cls.phase} steps (allowed: {', '.join(cls.allowed)})"
                )
        if len(actions) != 1:
            got = f": {', '.join(actions)}" if actions else ""
            raise invalid(
                f"a step needs exactly one action ({', '.join(cls.allowed)}), got {len(actions)}{got}"
            )
        return data

    @property
    def kind(self) -> str:
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)

    @property
    def action(self) -> ActionSpec:
        value: ActionSpec = getattr(self, self.kind)
        return value


class FixStep(Step):
    phase: ClassVar[str] = "fix"
    allowed: ClassVar[tuple[str, ...]] = ("git_revert", "git_edit", "command", "http", "kube", "git_apply")


class TestStep(Step):
    """Tests are sandboxed commands, or kube verbs sent as a server-side dry run (`dryRun=All`)."""

    __test__: ClassVar[bool] = False  # not a pytest class, despite the name
    phase: ClassVar[str] = "test"
    allowed: ClassVar[tuple[str, ...]] = ("command", "kube")

    @model_validator(mode="after")
    def _sandboxed(self) -> TestStep:
        if (
            self.command is not None
            and "sandbox" in self.command.model_fields_set
            and not self.command.sandbox
        ):
            raise invalid("command.sandbox: test steps always run sandboxed")
        return self


class DeployStep(Step):
    phase: ClassVar[str] = "deploy"
    allowed: ClassVar[tuple[str, ...]] = (
        "git_push",
        "command",
        "http",
        "kube",
        "kube_wait",
        "pull_request",
        "gitops_sync",
    )


class RollbackStep(Step):
    """A revert pull request is `rollback: auto`'s job (it knows what was merged), not a step's."""

    phase: ClassVar[str] = "rollback"
    allowed: ClassVar[tuple[str, ...]] = tuple(k for k in ACTION_KINDS if k != "pull_request")


def _param_name(name: str) -> str:
    if not PARAM_NAME.fullmatch(name) or name in RESERVED_NAMES:
        reserved = "/".join(sorted(RESERVED_NAMES))
        raise invalid(f"{name!r} is not a valid param name (lowercase, a letter first, not {reserved})")
    return name


ParamName = Annotated[str, AfterValidator(_param_name)]


def _rollback_tag(value: Any) -> str:
    return "auto" if isinstance(value, str) else "steps"


Rollback = Annotated[
    Annotated[Literal["auto"], Tag("auto")] | Annotated[list[RollbackStep], Tag("steps")],
    Discriminator(_rollback_tag),
]


class PlaybookSpec(Spec):
    """One playbook file."""

    apiVersion: Literal["selfheal/v1"]
    kind: Literal["Playbook"]
    name: str = Field(pattern=NAME_PATTERN)
    description: str = Field(min_length=1)
    category: str = Field(default="", pattern=CATEGORY_PATTERN)
    match: MatchSpec
    target: str = Field(min_length=1)
    repo: str | None = Field(default=None, pattern=REPO_PATTERN)
    params: dict[ParamName, ParamSpec] = Field(default_factory=dict)
    diagnose: list[CheckSpec] = Field(default_factory=list)
    diagnostics: list[DiagnosticSpec] = Field(default_factory=list, max_length=20)
    policy: PolicySpec = Field(default_factory=PolicySpec)
    #: Required, except for a `mode: suggest` playbook, which may only attach diagnostics.
    fix: list[FixStep] = Field(default_factory=list)
    test: list[TestStep] = Field(default_factory=list)
    deploy: list[DeployStep] = Field(default_factory=list)
    verify: VerifySpec | None = None
    rollback: Rollback = "auto"

    @model_validator(mode="after")
    def _fix_unless_suggest(self) -> PlaybookSpec:
        if not self.fix and self.policy.mode != "suggest":
            raise invalid("fix: at least one step (only a `mode: suggest` playbook may have none)")
        return self

    @model_validator(mode="after")
    def _repo_for_git(self) -> PlaybookSpec:
        kinds = {step.kind for step in self.steps()}
        if kinds & GIT_KINDS and self.repo is None:
            used = ", ".join(sorted(kinds & GIT_KINDS))
            raise invalid(f"repo: required because the playbook has git steps ({used})")
        self._gitops_rules()
        return self

    def _gitops_rules(self) -> None:
        """A pull request deploys the playbook's own repository, once; `merge_approves` only where
        nothing but a worktree changes before the request opens."""
        requests = [s.pull_request for s in self.deploy if s.pull_request is not None]
        if len(requests) > 1:
            raise invalid("deploy: at most one pull_request step")
        if any(s.git_push is not None for s in self.deploy) and requests:
            raise invalid("deploy: pull_request and git_push both deploy the fix; use one of them")
        for pr in requests:
            if pr.repo != self.repo:
                raise invalid(f"pull_request.repo: {pr.repo!r} is not the playbook's repo {self.repo!r}")
            if not pr.merge_approves:
                continue
            if self.policy.mode != "approve":
                raise invalid("pull_request.merge_approves: only for policy.mode: approve")
            if any(s.kind not in ("git_revert", "git_edit") for s in self.fix):
                raise invalid(
                    "pull_request.merge_approves: fix steps must be git_revert or git_edit only"
                    " (anything else would change the world before the approval)"
                )
            if self.deploy[0].pull_request is None:
                raise invalid("pull_request.merge_approves: the pull_request must be the first deploy step")

    def steps(self) -> list[Step]:
        rollback = [] if isinstance(self.rollback, str) else self.rollback
        return [*self.fix, *self.test, *self.deploy, *rollback]


@dataclass(frozen=True)
class Playbook:
    """A validated playbook and where it came from (for messages and the plan's digest)."""

    spec: PlaybookSpec
    path: Path
    digest: str
    name_line: int
    match_line: int
    repo_line: int
    #: `alert.<field>` names its templates use (so an unusual fingerprint only matters when used).
    alert_fields: frozenset[str]
    #: Literal (untemplated) namespaces of its kube steps, each with its line, for the allow-list.
    kube_namespaces: tuple[tuple[str, int], ...] = ()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def rank(self) -> tuple[int, int, str]:
        """Sort key for precedence: higher priority, then more matchers, then name."""
        return (-self.spec.match.priority, -len(self.spec.match.matchers), self.spec.name)
