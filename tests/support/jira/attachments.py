"""Attachments."""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from tests.support.jira.model import JsonDict, _Attachment, _ts
from tests.support.jira.server import _fail, _HTTPError, _Response


class AttachmentsMixin:
    """Part of `JiraFake`: attachments, uploaded as multipart behind the XSRF header, and their content."""

    def attachments(self, key: str) -> list[tuple[str, bytes]]:
        """(filename, content) of each attachment on the issue."""
        with self._lock:
            return [(a.filename, a.data) for a in self._issues[key].attachments]

    def _attachment_json(self, a: _Attachment) -> JsonDict:
        base = self._base()
        return {
            "self": f"{base}/rest/api/2/attachment/{a.id}",
            "id": str(a.id),
            "filename": a.filename,
            "author": self._user_json(a.author),
            "created": _ts(a.created),
            "size": len(a.data),
            "mimeType": a.mime_type,
            "content": f"{base}/secure/attachment/{a.id}/{quote(a.filename)}",
        }

    def _h_attach(self, key: str, user: str, headers: Mapping[str, str], body: bytes, **_: Any) -> _Response:
        if headers.get("x-atlassian-token", "").lower() != "no-check":
            raise _HTTPError(403, "XSRF check failed")
        ctype = headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise _HTTPError(415, {"errorMessages": ["Unsupported Media Type"], "errors": {}})
        raw = f"Content-Type: {ctype}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        files: list[tuple[str, bytes, str]] = []
        if message.is_multipart():
            for part in message.iter_parts():
                if not isinstance(part, EmailMessage):
                    continue
                if part.get_param("name", header="content-disposition") != "file":
                    continue
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                files.append((part.get_filename() or "attachment", data, part.get_content_type()))
        with self._lock:
            iss = self._get_issue(key)
            if not files:
                _fail(400, ["No file was uploaded: the multipart field must be named 'file'."])
            out = []
            for filename, data, mime in files:
                att = _Attachment(self._next_id(), filename, user, datetime.now(UTC), data, mime)
                iss.attachments.append(att)
                out.append(self._attachment_json(att))
            iss.updated = datetime.now(UTC)
            return self._json(200, out)

    def _h_attachment_content(self, aid: str, **_: Any) -> _Response:
        with self._lock:
            for iss in self._issues.values():
                for att in iss.attachments:
                    if att.id == int(aid):
                        return _Response(200, att.data, {"Content-Type": att.mime_type})
        _fail(404, ["The attachment does not exist"])
