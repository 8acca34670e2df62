"""Issue properties (`/issue/{key}/properties/{propertyKey}`): JSON values apps keep on an issue,
invisible in the UI and sent to no watcher, which is why selfheal keeps its page hash there."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tests.support.jira.server import _fail, _Response

#: Jira's limit on a property value (bytes of its JSON).
_MAX_PROPERTY_BYTES = 32_768


class PropertiesMixin:
    """Part of `JiraFake`: list, read, set and delete an issue's properties, as Jira answers them."""

    def issue_property(self, key: str, name: str) -> Any:
        """The stored value (test helper); KeyError when unset."""
        with self._lock:
            return self._issues[key].properties[name]

    def _h_list_properties(self, key: str, **_: Any) -> _Response:
        with self._lock:
            iss = self._get_issue(key)
            keys = [
                {"self": f"{self._base()}/rest/api/2/issue/{iss.id}/properties/{n}", "key": n}
                for n in sorted(iss.properties)
            ]
            return self._json(200, {"keys": keys})

    def _h_get_property(self, key: str, prop: str, **_: Any) -> _Response:
        with self._lock:
            iss = self._get_issue(key)
            if prop not in iss.properties:
                _fail(404, [f"The property with key '{prop}' does not exist."])
            return self._json(200, {"key": prop, "value": iss.properties[prop]})

    def _h_set_property(
        self, key: str, prop: str, headers: Mapping[str, str], body: bytes, **_: Any
    ) -> _Response:
        if "json" not in headers.get("content-type", "").lower():
            _fail(415, ["Unsupported Media Type"])
        if len(body) > _MAX_PROPERTY_BYTES:
            _fail(400, ["The property value has to be less than 32768 bytes."])
        if len(prop) > 255:
            _fail(400, ["The property key cannot be longer than 255 characters."])
        try:
            value = json.loads(body)
        except ValueError:
            _fail(400, ["The property value has to be a valid, non-empty JSON."])
        with self._lock:
            iss = self._get_issue(key)
            existed = prop in iss.properties
            iss.properties[prop] = value  # no `updated` change and no event: properties are not fields
        return _Response(200 if existed else 201)

    def _h_delete_property(self, key: str, prop: str, **_: Any) -> _Response:
        with self._lock:
            iss = self._get_issue(key)
            if iss.properties.pop(prop, None) is None:
                _fail(404, [f"The property with key '{prop}' does not exist."])
        return _Response(204)
