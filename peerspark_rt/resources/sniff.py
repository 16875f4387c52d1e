"""Content sniffing: does a file's first bytes match the type the client declared?

Pure Python, from each format's magic numbers. Only types the product accepts are known; a
declared type is accepted when the bytes are consistent with it, so a PNG cannot arrive as
text/plain and an HTML page cannot arrive as image/png.
"""

from __future__ import annotations

from collections.abc import Callable

SNIFF_BYTES = 4096

# Accepted upload types and the extension their stored key gets.
EXTENSIONS: dict[str, str] = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "application/pdf": ".pdf",
    "text/plain": ".txt",
    "text/markdown": ".md",
    "text/csv": ".csv",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "application/zip": ".zip",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
}
# Names browsers and tools also use for the same formats.
ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "audio/mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/x-m4a": "audio/mp4",
    "text/x-markdown": "text/markdown",
    "application/x-zip-compressed": "application/zip",
}
_TEXT_CONTROL_OK = {0x09, 0x0A, 0x0C, 0x0D}


def normalize(declared: str | None) -> str:
    """'Image/JPG; charset=x' -> 'image/jpeg'; '' when nothing was declared."""
    if not declared:
        return ""
    base = declared.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def _is_text(head: bytes) -> bool:
    if not head:
        return True
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The sniffed prefix may end inside a multi-byte character; only that is forgivable.
        if exc.start < len(head) - 3 or exc.reason != "unexpected end of data":
            return False
        text = head[: exc.start].decode("utf-8")
    return not any(ord(ch) < 0x20 and ord(ch) not in _TEXT_CONTROL_OK for ch in text)


def _mp3(head: bytes) -> bool:
    return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)


def _riff(kind: bytes) -> Callable[[bytes], bool]:
    return lambda head: head[:4] == b"RIFF" and head[8:12] == kind


def _zip(head: bytes) -> bool:
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def _mp4(head: bytes) -> bool:
    return head[4:8] == b"ftyp"


_CHECKS: dict[str, Callable[[bytes], bool]] = {
    "image/png": lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda h: h.startswith(b"\xff\xd8\xff"),
    "image/gif": lambda h: h.startswith((b"GIF87a", b"GIF89a")),
    "image/webp": _riff(b"WEBP"),
    "application/pdf": lambda h: h.startswith(b"%PDF-"),
    "text/plain": _is_text,
    "text/markdown": _is_text,
    "text/csv": _is_text,
    "audio/mpeg": _mp3,
    "audio/wav": _riff(b"WAVE"),
    "audio/ogg": lambda h: h.startswith(b"OggS"),
    "audio/mp4": _mp4,
    "video/mp4": _mp4,
    "video/webm": lambda h: h.startswith(b"\x1a\x45\xdf\xa3"),
    "application/zip": _zip,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": _zip,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": _zip,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _zip,
}
if set(_CHECKS) != set(EXTENSIONS):
    raise RuntimeError("every extension needs its content check")


def matches(declared: str, head: bytes) -> bool:
    """True when `head` (the first bytes of the file) is consistent with `declared`."""
    check = _CHECKS.get(declared)
    return check is not None and check(head)


def describe(head: bytes) -> str:
    """A short name for what the bytes look like, for the error message."""
    for mime, check in _CHECKS.items():
        if mime.startswith("text/"):
            continue
        if check(head):
            return mime
    return "text" if _is_text(head) else "unrecognised binary data"
