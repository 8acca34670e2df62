"""Property-based: hostile label values never reach a plan, and broken playbook YAML never crashes
the loader (every problem is a `file:line: field: message` line).

Derandomized, so every run tries the same examples; `SELFHEAL_FUZZ_EXAMPLES` raises the count.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.incident import AlertmanagerWebhook
from playbooks.loader import LIBRARY_DIR, load_file, load_playbooks
from playbooks.matcher import PlaybookSet
from playbooks.schema import CONTROL

EXAMPLES = int(os.environ.get("SELFHEAL_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
SAMPLES = sorted((LIBRARY_DIR / "samples").glob("*.json"))
LIBRARY = sorted(LIBRARY_DIR.glob("*.yaml"))

HOSTILE = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "$(id)",
            "`reboot`",
            "a; rm -rf /",
            "{{ settings }}",
            "{% raw %}",
            "../../../etc/shadow",
            "web\nnamespace: kube-system",
            "x\x00y",
            "-rf",
            "--help",
            "a b",
            "kube-system",
        ]
    ),
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_hostile_label_values_never_reach_a_plan() -> None:
    """Each library sample with one label replaced by a hostile value: either no plan, or a plan
    whose every param passed its pattern and whose every string is free of control characters."""
    playbooks = PlaybookSet(load_playbooks([LIBRARY_DIR], known_repos=None))
    bodies = [AlertmanagerWebhook.model_validate_json(p.read_text()) for p in SAMPLES]
    assert bodies, "the library ships samples"

    @FUZZ
    @given(index=st.integers(min_value=0, max_value=len(bodies) - 1), data=st.data())
    def run(index: int, data: st.DataObject) -> None:
        alert = bodies[index].alerts[0]
        label = data.draw(st.sampled_from(sorted(alert.labels)))
        value = data.draw(HOSTILE)
        hostile = alert.model_copy(update={"labels": {**alert.labels, label: value}})
        result = playbooks.match(hostile, settings_ctx={"public_url": "https://selfheal.example"})
        if result.plan is None:
            return
        spec = playbooks.by_name[result.plan.playbook].spec
        for name, param_value in result.plan.params.items():
            param = spec.params[name]
            if param.source == "query":  # resolved at run time, validated there
                continue
            raw = (hostile.labels if param.source == "label" else hostile.annotations).get(param.key, "")
            assert param.regex.fullmatch(raw or param.default or ""), (name, raw)
            assert not CONTROL.search(param_value)
        for text in _strings(result.plan.model_dump(mode="json")):
            assert not CONTROL.search(text.replace("\n", "")), text
            assert "{{" not in text and "{%" not in text, text

    run()


def _mutate(doc: Any, draw: Any) -> Any:
    """Change one node somewhere in the document: drop it, retype it, or replace it with junk."""
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=20),
        st.lists(st.text(max_size=5), max_size=2),
        st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    )
    if isinstance(doc, dict) and doc:
        key = draw(st.sampled_from(sorted(doc, key=str)))
        action = draw(st.sampled_from(["drop", "junk", "descend", "rename"]))
        out = dict(doc)
        if action == "drop":
            del out[key]
        elif action == "junk":
            out[key] = draw(junk)
        elif action == "rename":
            out[draw(st.text(min_size=1, max_size=12))] = out.pop(key)
        else:
            out[key] = _mutate(doc[key], draw)
        return out
    if isinstance(doc, list) and doc:
        i = draw(st.integers(min_value=0, max_value=len(doc) - 1))
        out_list = list(doc)
        out_list[i] = _mutate(doc[i], draw) if draw(st.booleans()) else draw(junk)
        return out_list
    return draw(junk)


_PROBLEM = re.compile(r"^.+\.yaml:\d+: .+")


def test_broken_playbooks_are_refused_with_a_line_never_a_crash(tmp_path: Path) -> None:
    sources = [yaml.safe_load(p.read_text()) for p in LIBRARY]

    @FUZZ
    @given(index=st.integers(min_value=0, max_value=len(sources) - 1), data=st.data(), raw=st.booleans())
    def run(index: int, data: st.DataObject, raw: bool) -> None:
        path = tmp_path / "fuzzed.yaml"
        if raw:  # not even a mapping / not YAML
            path.write_text(data.draw(st.text(max_size=200)), encoding="utf-8")
        else:
            doc = _mutate(copy.deepcopy(sources[index]), data.draw)
            path.write_text(json.dumps(doc, default=str), encoding="utf-8")  # JSON is YAML
        playbook, problems = load_file(path)
        assert (playbook is None) == bool(problems)
        for line in problems:
            assert _PROBLEM.match(line), line
            assert "Traceback" not in line

    run()
