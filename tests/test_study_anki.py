"""Anki-compatible text: a deck exported to a file and imported from that file gives the same
cards (fields with tabs, quotes and line breaks included); Anki's own header lines are
tolerated; unusable lines are reported, not fatal; refusals."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Api

CARDS = [
    ("Capital of France", "Paris", ["geo", "europe"]),
    ('Say "hello"', "Bonjour\tin French", []),
    ("Two lines", "first\nsecond", ["multi"]),
    ("Ünïcödé ✓", "√2 ≈ 1.414", ["maths"]),
]


async def test_export_then_import_from_a_file_gives_the_same_cards(
    api: Api, tmp_path: Path
) -> None:
    me = await api.register()
    deck = (await api.post("/api/decks", me, json={"title": "Trivia: mixed"})).body
    for front, back, tags in CARDS:
        resp = await api.post(
            f"/api/decks/{deck['id']}/cards", me, json={"front": front, "back": back, "tags": tags}
        )
        assert resp.status == 201, resp.body
    exported = await api.get(f"/api/decks/{deck['id']}/export", me)
    assert exported.status == 200
    assert exported.headers["Content-Type"].startswith("text/plain")
    assert "attachment" in exported.headers["Content-Disposition"]
    text = exported.body.decode()
    assert text.startswith("#separator:tab\n#html:false\n#tags column:3\n")
    assert "Capital of France\tParis\tgeo europe\n" in text
    file = tmp_path / "trivia.txt"
    file.write_bytes(exported.body)

    copy = (await api.post("/api/decks", me, json={"title": "Copy"})).body
    imported = await api.post(
        f"/api/decks/{copy['id']}/import",
        me,
        data=file.read_bytes(),
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )
    assert imported.status == 200, imported.body
    assert imported.body == {"imported": 4, "skipped": []}
    cards = (await api.get(f"/api/decks/{copy['id']}/cards", me)).body["cards"]
    assert [(c["front"], c["back"], c["tags"], c["status"]) for c in cards] == [
        (f, b, t, "kept") for f, b, t in CARDS
    ]
    again = await api.get(f"/api/decks/{copy['id']}/export", me)
    assert again.body == exported.body


async def test_an_anki_file_with_headers_and_bad_lines(api: Api) -> None:
    me, other = await api.register(), await api.register()
    deck = (await api.post("/api/decks", me, json={"title": "From Anki"})).body
    anki = (
        "#separator:tab\n#html:true\n#notetype column:4\n#tags column:3\n"
        "front one\tback one\ttag1 tag2\tBasic\n"
        "only a front\n"
        "\n"
        "front two\tback two\n"
        "\tno front\n"
    )
    resp = await api.post(
        f"/api/decks/{deck['id']}/import",
        me,
        data=anki.encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status == 200, resp.body
    assert resp.body["imported"] == 2
    assert [s["line"] for s in resp.body["skipped"]] == [6, 9]
    cards = (await api.get(f"/api/decks/{deck['id']}/cards", me)).body["cards"]
    assert [(c["front"], c["tags"]) for c in cards] == [
        ("front one", ["tag1", "tag2"]),
        ("front two", []),
    ]
    # semicolons, as Anki's CSV export may use
    semi = await api.post(
        f"/api/decks/{deck['id']}/import",
        me,
        data=b"#separator:semicolon\nthree;back three;x\n",
        headers={"Content-Type": "text/plain"},
    )
    assert semi.body["imported"] == 1
    # a CSV file (Content-Type text/csv) without headers
    csv_file = await api.post(
        f"/api/decks/{deck['id']}/import",
        me,
        data=b'four,"back, with a comma",y z\n',
        headers={"Content-Type": "text/csv"},
    )
    assert csv_file.body == {"imported": 1, "skipped": []}
    cards = (await api.get(f"/api/decks/{deck['id']}/cards", me)).body["cards"]
    assert (cards[-1]["back"], cards[-1]["tags"]) == ("back, with a comma", ["y", "z"])
    # refusals: not the owner, not text, not UTF-8, unknown deck
    for who, data, kind, status in (
        (other, b"a\tb\n", "text/plain", 404),
        (me, b"a\tb\n", "application/json", 415),
        (me, b"\xff\xfe\x00a", "text/plain", 400),
    ):
        refused = await api.post(
            f"/api/decks/{deck['id']}/import", who, data=data, headers={"Content-Type": kind}
        )
        assert refused.status == status, refused.body
