"""What a file from the user becomes (``attachments.py``): its type sniffed from its
bytes, its limits from the config, one line for every refusal, and its forms on the wire."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from images import png

from streamchat.attachments import (
    AttachmentError,
    Limits,
    check_count,
    classify,
    data_url_bytes,
    elide_data_urls,
    from_message,
    inline_text,
    inspect,
    parse_inline,
)
from streamchat.config import ConfigError, parse_config

BASE = "name: t\ninstructions: i\nmodel: m\n"


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_types_are_sniffed_from_the_bytes_not_trusted_from_the_name(tmp_path: Path) -> None:
    image = inspect(write(tmp_path, "photo.txt", png()), Limits())  # a PNG named .txt is a PNG
    assert (image.kind, image.mime, image.size) == ("image", "image/png", len(png()))
    assert image.sha256 == hashlib.sha256(png()).hexdigest()
    pdf = inspect(write(tmp_path, "paper.bin", b"%PDF-1.7\n..."), Limits())
    assert (pdf.kind, pdf.mime) == ("document", "application/pdf")
    notes = inspect(write(tmp_path, "notes.md", "# Hi ☃\n".encode()), Limits())
    assert (notes.kind, notes.mime, notes.is_text) == ("document", "text/markdown", True)
    with pytest.raises(AttachmentError, match=r"^fake\.png: not a valid PNG file"):  # text named .png
        inspect(write(tmp_path, "fake.png", b"just text"), Limits())
    with pytest.raises(AttachmentError, match=r"^data\.csv: not UTF-8 text"):  # binary named .csv
        inspect(write(tmp_path, "data.csv", b"\xff\xfe\x00binary"), Limits())
    with pytest.raises(AttachmentError, match=r"^tool\.exe: "):
        inspect(write(tmp_path, "tool.exe", b"MZ\x90\x00"), Limits())


def test_each_limit_is_one_line_naming_the_file(tmp_path: Path) -> None:
    big = write(tmp_path, "big.png", png() + b"\x00" * 3000)
    with pytest.raises(AttachmentError) as caught:
        inspect(big, Limits(max_file_mb=0.001))
    assert str(caught.value).startswith("big.png: ") and "over the limit of 0.001 MiB" in str(caught.value)
    assert "\n" not in str(caught.value)
    with pytest.raises(AttachmentError, match=r"^empty\.txt: the file is empty"):
        inspect(write(tmp_path, "empty.txt", b""), Limits())
    with pytest.raises(AttachmentError, match=r"^gone\.png: could not be read"):
        inspect(tmp_path / "gone.png", Limits())
    with pytest.raises(AttachmentError, match=r"image/png files are not accepted here \(accepted: pdf\)"):
        inspect(write(tmp_path, "a.png", png()), Limits(types=("pdf",)))
    check_count(5, Limits())
    with pytest.raises(AttachmentError, match="6 files is over the limit of 5 per message"):
        check_count(6, Limits())


def test_the_config_sets_the_limits_and_refuses_bad_values() -> None:
    config = parse_config(BASE + "attachments:\n  max_file_mb: 2\n  max_files: 1\n  types: [png, jpg, pdf]\n")
    assert config.attachments == Limits(max_file_mb=2, max_files=1, types=("png", "jpeg", "pdf"))
    assert parse_config(BASE).attachments == Limits()
    for bad, message in [
        ("attachments: 3", "attachments: expected a mapping"),
        ("attachments:\n  types: [exe]", r"attachments.types\[0\]: expected one of"),
        ("attachments:\n  max_file_mb: -1", "attachments.max_file_mb: expected a number of at least 0"),
        ("attachments:\n  size: 3", "attachments.size: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config(BASE + bad + "\n")


def test_inline_text_round_trips_and_the_data_urls_are_elided(tmp_path: Path) -> None:
    text = 'a "quoted" </file> line\nand <b>more</b>'
    doc = classify(text.encode(), 'we"ird.txt', Limits(), path=write(tmp_path, "x.txt", text.encode()))
    assert parse_inline(inline_text(doc)) == ('we"ird.txt', "text/plain", text)
    assert parse_inline("plain words") is None
    image = classify(png(), "p.png", Limits())
    url = image.data_url()
    assert data_url_bytes(url) == png() and data_url_bytes("https://example.invalid/a.png") is None
    body = {"input": [{"content": [{"type": "input_image", "image_url": url}, {"type": "input_text", "text": "hi"}]}]}
    elided = elide_data_urls(body)
    assert elided["input"][0]["content"][1] == {"type": "input_text", "text": "hi"}
    assert elided["input"][0]["content"][0]["image_url"] == f"data:image/png;sha256={image.sha256};size={len(png())}"
    assert base64.b64encode(png()).decode() not in str(elided)


def test_the_multimodal_textbox_value_gives_text_and_named_files() -> None:
    assert from_message("hello") == ("hello", [])
    value = {"text": "look", "files": ["/tmp/g/a.png", {"path": "/tmp/g/b", "orig_name": "b.pdf"}]}
    assert from_message(value) == ("look", [("/tmp/g/a.png", "a.png"), ("/tmp/g/b", "b.pdf")])
    assert from_message({"text": None, "files": None}) == ("", [])
