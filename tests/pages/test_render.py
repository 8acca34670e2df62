"""The HTML renderer (the `/ui` page): every string stays text, only safe links, only named images."""

from __future__ import annotations

from html.parser import HTMLParser

from pages.document import Document, Image, Paragraph, Text
from pages.render import render_html
from pages.ticket import build_page
from tests.support.page_fixture import HOSTILE, WORKFLOW_URL, view

#: Every element the renderer may produce; anything else would be injected markup.
ALLOWED_TAGS = {
    "h1", "h2", "h3", "h4", "h5", "h6", "p", "ul", "li", "table", "thead", "tbody", "tr", "th", "td",
    "pre", "code", "strong", "a", "figure", "img", "figcaption",
}  # fmt: skip


class _Parsed(HTMLParser):
    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_strings_arrive_as_text_and_nothing_else_becomes_markup() -> None:
    doc = build_page(view(hostile=True), WORKFLOW_URL)
    parsed = _Parsed(render_html(doc))
    assert {tag for tag, _ in parsed.tags} <= ALLOWED_TAGS
    text = "".join(parsed.text)
    for hostile in HOSTILE:
        # Inline text folds line breaks; each line of a hostile string is still there, verbatim.
        for line in hostile.split("\n"):
            assert line in text, line
    for tag, attrs in parsed.tags:
        if tag == "a":
            assert set(attrs) == {"href", "rel"}
            assert (attrs["href"] or "").startswith(("http://", "https://"))
            assert "evil.example" not in (attrs["href"] or "")
        else:
            assert tag == "img" or not attrs, (tag, attrs)


def test_every_section_of_the_ticket_page_is_there() -> None:
    doc = build_page(view(), WORKFLOW_URL)
    parsed = _Parsed(render_html(doc))
    headings = [t for t, _ in parsed.tags if t == "h2"]
    assert len(headings) == sum(1 for b in doc.blocks if b.kind == "heading" and b.level == 2)
    assert [a["href"] for t, a in parsed.tags if t == "a" and a["href"] == WORKFLOW_URL]
    assert any(t == "table" for t, _ in parsed.tags) and any(t == "pre" for t, _ in parsed.tags)


def test_only_valid_attachment_names_become_images_at_the_callers_url() -> None:
    doc = Document(
        blocks=[
            Image(attachment="inc-1-graph-0.png", alt='latency "p99"'),
            Image(attachment="javascript:alert(1).png", alt="bad"),
            Image(attachment="unserved.png", alt="not served"),
            Paragraph(runs=[Text(text="click", link="javascript:alert(1)")]),
        ]
    )
    urls = {"inc-1-graph-0.png": "/ui/tickets/LOCAL-1/attachments/inc-1-graph-0.png?a=1&b=2"}
    parsed = _Parsed(render_html(doc, urls.get))
    images = [a for t, a in parsed.tags if t == "img"]
    assert images == [{"src": urls["inc-1-graph-0.png"], "alt": 'latency "p99"'}]
    assert not [t for t, _ in parsed.tags if t == "a"]
    text = "".join(parsed.text)
    assert "(attachment: bad)" in text and "(attachment: not served)" in text and "click" in text
