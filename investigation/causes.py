"""Causes no change made: what the evidence names when nothing in the window is to blame.

Some incidents have no culprit commit: a certificate expires, a provider has an outage, the
network drops packets, an id column or a disk fills up over months, demand sets a new peak. The
evidence usually says so outright (`x509: certificate has expired`, `503 from
s3.us-east-1.amazonaws.com`, `integer out of range`, a users metric rising long before the errors),
while a change that happens to land minutes earlier is only close in time. Without this module the
builtin investigator blames that change and proposes reverting it, which fixes nothing.

Each rule here reads one piece of evidence and, when it positively names such a cause, returns a
`Cause`; it is then kept only if no change in the window touches what the cause names (a change
that edits the failing host, certificate or column is the better explanation). Pure and
deterministic; every text read is untrusted data, searched with fixed patterns and quoted back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from investigation.xref import Clue, Clues, gather_clues, match_change
from models.evidence import ChangeRef, LogLine

CauseKind = Literal["certificate", "provider", "network", "exhaustion", "load"]

#: How every cause hypothesis's title begins.
NO_CHANGE = "No change caused this"

#: Belief in each kind of cause when no change touches what it names. A certificate expiry names
#: itself unambiguously; a failing host may still fail because of how we call it; a filled limit
#: or a demand peak leaves more room for a change that made it worse.
CONFIDENCE: dict[CauseKind, float] = {
    "certificate": 0.8,
    "provider": 0.75,
    "network": 0.7,
    "exhaustion": 0.7,
    "load": 0.65,
}
#: What each kind says in a hypothesis title.
_TITLES: dict[CauseKind, str] = {
    "certificate": "an expired certificate",
    "provider": "an outage at {names}, which the errors blame",
    "network": "the network: packets lost on the way",
    "exhaustion": "a limit reached by growth",
    "load": "demand: {names} rose first",
}
#: What would confirm each kind (added to the hypothesis detail).
_CONFIRM: dict[CauseKind, str] = {
    "certificate": "confirm: its notAfter matches the onset; renewing it, not a revert, fixes it",
    "provider": "confirm: the provider's status page, or the same errors from callers that did not change",
    "network": "confirm: the cloud provider's network health, and loss between hosts that did not change",
    "exhaustion": "confirm: the counter or disk at its maximum; a revert does not give the room back",
    "load": "confirm: the demand against past peaks; capacity, not a revert, relieves it",
}

#: A certificate that is no longer valid: a certificate word and an expiry word in one line.
_CERT_WORD = re.compile(r"\b(?:certificate|cert|x509|tls|ssl|intermediate)\b", re.IGNORECASE)
_EXPIRED = re.compile(r"\bexpired\b|\bnot yet valid\b", re.IGNORECASE)
#: The names a certificate goes by in an error: its subject's CN, or a quoted or parenthesised name.
_CERT_NAME = re.compile(r"\bCN=([^,)\s]{2,100})|['\"(]([A-Za-z0-9*][A-Za-z0-9*._-]{1,100})['\")]")
#: A reply that says the other end is failing. Not a bare timeout, nor throttling: we may be
#: slow or calling too often because of our own change.
#: A 5xx counts as a status (`503 Service...`, `503 error`, `returned 503`), not as any number.
_FAILING = re.compile(
    r"\b5\d\d(?=\s+(?-i:[A-Z])|\s*(?:error|from)\b)|\b(?:status|code|returned|http)[ :=]*5\d\d\b"
    r"|unavailable|bad gateway|gateway time-?out|internal server error|connection (?:refused|reset)"
    r"|could not resolve|name resolution|\bdegraded\b|\boutage\b",
    re.IGNORECASE,
)
#: A host the line blames: a URL's host, or a dotted lower-case name after from/host/to/upstream.
_URL_HOST = re.compile(r"\b[a-z][a-z0-9+.-]*://(?:[^@/\s]+@)?([a-z0-9-]+(?:\.[a-z0-9-]+)+)", re.IGNORECASE)
_NAMED_HOST = re.compile(r"\b(?i:from|host|to|upstream|server|endpoint)[:=]?\s+([a-z0-9-]+(?:\.[a-z0-9-]+)+)")
_TLD = re.compile(r"\.[a-z]{2,}$")
_FILE_SUFFIX = re.compile(
    r"\.(?:py|rb|go|js|ts|java|php|rs|yaml|yml|json|toml|txt|log|md|conf|cfg|ini|sql|html|xml|csv|sh|tf"
    r"|img|tar|gz|zip|jpg|png|pem|crt|key|lock|jar|so)$"
)
#: Host labels that name no one (a change mentioning `api` or `com` does not touch the host).
_GENERIC_LABELS = frozenset(
    {"api", "www", "com", "net", "org", "io", "example", "internal", "local", "svc", "cluster", "prod"}
)
#: A network fault stated as such (a bare timeout is not: a slow backend times out too).
_NETWORK = re.compile(r"packet loss|no route to host|network (?:is )?unreachable", re.IGNORECASE)
#: A limit that growth reaches on its own schedule: ids, transaction counters, disks. Memory,
#: threads, connections and pools are not here: running code consumes those, so a change just
#: before is a credible cause of running out of them. Nor is an index out of range (a bug): only
#: an integer type's range counts.
_EXHAUSTION = re.compile(
    r"\b(?:integer|smallint|bigint|int|numeric value) (?:is )?out of range|out of range (?:value|for type)"
    r"|integer overflow|wraparound|no space left|disk (?:is )?full|filesystem (?:is )?full"
    r"|disk quota exceeded|reached maximum value",
    re.IGNORECASE,
)
#: A metric that measures demand, which arrives from outside rather than from a deploy.
_DEMAND = re.compile(
    r"\b(?:users?|ccu|requests?|rps|qps|sessions?|visitors?|players?|traffic|clients?|connections?)\b",
    re.IGNORECASE,
)
#: ...unless it counts failures or slowness, which are symptoms, not demand.
_SYMPTOM = re.compile(
    r"error|fail|5xx|4xx|timeout|latency|reject|drop|retr|p9\d|seconds|\bms\b", re.IGNORECASE
)
#: A demand metric is the start only when it moved this long before any other metric.
LOAD_LEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class Cause:
    """A cause no change made, read off one piece of evidence (`ref`, quoting `quote`)."""

    kind: CauseKind
    ref: str
    quote: str
    #: What it blames: the failing host, the certificate's names, the demand metric.
    names: tuple[str, ...] = ()
    #: How often the evidence says it (a log line's count), to order causes of one kind.
    weight: int = 0
    #: Other evidence that says the same (`merge`).
    also: tuple[str, ...] = ()

    @property
    def refs(self) -> list[str]:
        return [self.ref, *self.also]

    @property
    def confidence(self) -> float:
        return CONFIDENCE[self.kind]

    def title(self) -> str:
        what = _TITLES[self.kind].format(names=", ".join(self.names[:2]) or "the named host")
        return f"{NO_CHANGE}: {what} ({self.ref}: {self.quote[:200]})"

    def detail(self, changes_seen: int) -> str:
        named = f", which names {', '.join(repr(n) for n in self.names[:3])}" if self.names else ""
        also = f" (and {', '.join(self.also[:3])}, which say the same)" if self.also else ""
        return (
            f"tied to the cause by {self.ref} ({self.quote!r}){named}{also};"
            f" none of the {changes_seen} change(s) gathered touches it; {_CONFIRM[self.kind]}"
        )


def merge(causes: Sequence[Cause]) -> list[Cause]:
    """One cause per kind and culprit, quoting the evidence that says it most often: two lines
    blaming the same host are one outage, not two rival hypotheses (nor a close call). A network
    fault or a filled limit is one cause whatever each line happens to name beside it."""
    groups: dict[tuple[str, tuple[str, ...]], list[Cause]] = {}
    for cause in causes:
        culprit = () if cause.kind in ("network", "exhaustion") else cause.names
        groups.setdefault((cause.kind, culprit), []).append(cause)
    out = []
    for group in groups.values():
        group.sort(key=lambda c: -c.weight)
        head = group[0]
        out.append(replace(head, also=tuple(c.ref for c in group[1:])))
    return out


def hosts(line: str) -> list[str]:
    """The hosts a line names (URL hosts, and dotted names after from/host/to/upstream), lower-cased."""
    out: list[str] = []
    for pattern in (_URL_HOST, _NAMED_HOST):
        for m in pattern.finditer(line[:2000]):
            host = m.group(1).lower().strip(".-")
            if _TLD.search(host) and not _FILE_SUFFIX.search(host) and host not in out:
                out.append(host)
    return out


def _cert_names(text: str) -> list[str]:
    """A certificate's names in an error: CN, quoted or parenthesised names, then hosts."""
    out = [m.group(1) or m.group(2) for m in _CERT_NAME.finditer(text)]
    return list(dict.fromkeys([*out, *hosts(text)]))


def _specific(index: int, line: LogLine) -> tuple[str, ...]:
    """The first few specific names in a line (identifiers, files, routes), to say what it names."""
    clues = gather_clues("", logs=[(index, line)]).clues
    return tuple(c.text for c in clues if c.kind in ("identifier", "file", "route"))[:3]


def line_cause(index: int, line: LogLine, service: str = "") -> Cause | None:
    """The cause a new error line names outright, if any (one per line, the most specific first).

    A certificate expiry, a network fault and a limit reached by growth name themselves; a provider
    outage needs both a failing reply and the host that gave it, so `timed out` alone blames no one,
    and a host of the `service` itself (`orders.example.com` for orders) is the symptom, not a provider.
    """
    text = line.line[:2000]
    ref = f"logs:{index}"
    if _CERT_WORD.search(text) and _EXPIRED.search(text):
        return Cause("certificate", ref, text[:300], tuple(_cert_names(text)), line.count)
    if _NETWORK.search(text):
        return Cause("network", ref, text[:300], _specific(index, line), line.count)
    if _EXHAUSTION.search(text):
        return Cause("exhaustion", ref, text[:300], _specific(index, line), line.count)
    own = service.lower()
    named = [h for h in hosts(text) if not own or own not in h.split(".")]
    if named and _FAILING.search(text):
        return Cause("provider", ref, text[:300], tuple(named), line.count)
    return None


def _host_clues(cause: Cause, service: str) -> Clues:
    """For a provider: the hosts and their specific labels, the only names that tie a change to it."""
    clues = Clues(service=service)
    for host in cause.names:
        clues.add(Clue(host, "identifier", cause.ref, cause.quote))
        for label in host.split("."):
            if label not in _GENERIC_LABELS and not label.isdigit():
                clues.add(Clue(label, "identifier", cause.ref, cause.quote))
    return clues


def touching(
    cause: Cause, line: LogLine, index: int, service: str, changes: Sequence[ChangeRef]
) -> ChangeRef | None:
    """The first change that touches what the cause names (a changed line, a path, its summary or
    its service; the unchanged lines around a hunk are too weak a tie to clear a change), else None.

    For a provider only the failing host counts: a change to the bucket or the route that is
    called is not a change to the provider.
    """
    clues = (
        _host_clues(cause, service)
        if cause.kind == "provider"
        else gather_clues(service, logs=[(index, line)])
    )
    for change in changes:
        if any(m.where != "context" for m in match_change(change, clues)):
            return change
    return None


def load_cause(
    onsets: Sequence[tuple[datetime, str, float, float]],
    suspect_times: Sequence[datetime],
    horizon: timedelta,
) -> Cause | None:
    """Demand that rose first, with no suspect change before it: the load itself is the cause.

    `onsets` are (when, metric, baseline, level) of the metrics that left their baseline. The
    earliest must measure demand, have risen, and lead every other metric by LOAD_LEAD; and no
    suspect change (`suspect_times`: changes that could alter the service's behaviour) may land in
    the `horizon` before it. A change after the rise cannot have caused it.
    """
    ordered = sorted(onsets)
    if len(ordered) < 2:
        return None
    at, name, base, level = ordered[0]
    if ordered[1][0] - at < LOAD_LEAD or not _DEMAND.search(name) or _SYMPTOM.search(name) or level <= base:
        return None
    if any(at - horizon <= t <= at + timedelta(minutes=1) for t in suspect_times):
        return None
    lead = (ordered[1][0] - at).total_seconds() / 60
    quote = f"{name} {base:g} -> {level:g}, {lead:.0f} min before {ordered[1][1]}"
    return Cause("load", f"metrics:{name}", quote, (name,))
