"""The one redactor every output of Shipyard goes through.

A `Redactor` knows the secret values of a run and, for each, the forms it takes in logs
(JSON-escaped, URL-encoded, base64 in every byte alignment, each line of a multi-line
value). `mask` replaces every occurrence of any of them in a text by `***`, longest first.
Base64 wrapped across lines (`base64`, `openssl base64`, MIME) is masked too: in a run of
lines made only of base64 characters, each but the last of 16 to 128 of them, the lines are
read as one text, and every piece of a form found across them is masked on its own line.
`StreamMasker` does the same for output that arrives in arbitrary chunks, emitting whole
lines as soon as no secret can straddle them.

What is guaranteed: every occurrence of a pattern in the input is masked. Text that only
looks like a secret because a mask sits next to plain text (`ab` + `***` for a secret
`ab***`) is left alone: it cannot reveal anything, and chasing it would mask plain text.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import itertools
import json
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote_from_bytes, quote_plus

# The many-literal engine, where it installs (`pip install 'shipyard[fast]'`): imported by
# the first Redactor that has patterns to find (22 ms: not at every start-up).
_HYPERSCAN = importlib.util.find_spec("hyperscan") is not None

__all__ = [
    "ENGINES",
    "MASK",
    "MIN_DERIVED_LENGTH",
    "SECRET_NAME_PARTS",
    "STREAM_BUFFER_LIMIT",
    "WRAP_MAX",
    "WRAP_MIN",
    "Redactor",
    "StreamMasker",
]

MASK = "***"
SECRET_NAME_PARTS = (
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
)
MIN_DERIVED_LENGTH = 6
STREAM_BUFFER_LIMIT = 64 * 1024

_URLSAFE = str.maketrans("+/", "-_")
# Wrapped base64: a run of lines of these characters ("*" too, so a line keeps its place in
# its run once part of it is masked), each but the last of WRAP_MIN to WRAP_MAX of them.
_RUN_CHARS = "A-Za-z0-9+/=_*-"
WRAP_MIN, WRAP_MAX = 16, 128
_RUN = re.compile(
    rf"(?m)^(?:[{_RUN_CHARS}]{{{WRAP_MIN},{WRAP_MAX}}}\r?\n)+[{_RUN_CHARS}]{{1,{WRAP_MAX}}}\r?$"
)
# A run's first two lines, as a cheap test (about 1 GB/s: the search skips to each newline).
_RUN_START = re.compile(rf"[{_RUN_CHARS}]{{{WRAP_MIN},{WRAP_MAX}}}\r?\n[{_RUN_CHARS}]")
_RUN_START_AFTER_NEWLINE = re.compile("\n" + _RUN_START.pattern)
_FULL_RUN_LINE = re.compile(rf"[{_RUN_CHARS}]{{{WRAP_MIN},{WRAP_MAX}}}\r?\n")
_OPEN_RUN_LINE = re.compile(rf"[{_RUN_CHARS}]{{0,{WRAP_MAX}}}\r?")
_WRAPPABLE = re.compile(r"[A-Za-z0-9+/=_-]+")
_PERCENT_ESCAPE = re.compile("%[0-9A-F]{2}")
_BASH_SPECIAL = re.compile(r"[ !\"$&'()*,;<>?\[\\\]^`{|}]")  # what `printf %q` escapes


class Redactor:
    def __init__(self, secrets: Iterable[str] = (), *, engine: str | None = None) -> None:
        """`engine`: the name of the one in `ENGINES` that finds which patterns a text holds
        (default: `default_engine()`)."""
        # Whitespace-only values are ignored, as the Actions runner does: masking them
        # would blank every space of the log.
        self._values = tuple(dict.fromkeys(value for value in secrets if value.strip()))
        patterns = {
            pattern
            for value in self._values
            for pattern in (value, *_derived_patterns(value))
            if pattern not in MASK  # "*" or "**" cannot be hidden behind "***"
        }
        self._patterns = tuple(sorted(patterns, key=lambda pattern: (-len(pattern), pattern)))
        self._multiline = tuple(pattern for pattern in self._patterns if "\n" in pattern)
        self._wrappable = tuple(p for p in self._patterns if _WRAPPABLE.fullmatch(p))
        self._longest = len(self._patterns[0]) if self._patterns else 0
        # What a stream holds back so that a form cut at the end of a read is still whole
        # after the next: its start, with the line breaks of a wrapped run inside it.
        wrapped = max(map(len, self._wrappable), default=0)
        breaks = 2 * (wrapped // WRAP_MIN + 1)  # at most one "\r\n" per WRAP_MIN characters
        self._reach = max(self._longest - 1, wrapped + breaks + WRAP_MIN if wrapped else 0)
        self._screen = ENGINES[engine or default_engine()](self._patterns)
        self._unscreened = tuple(
            pattern for pattern in self._patterns if pattern not in self._screen.covered
        )

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        names: Iterable[str] = (),
        *,
        also: Iterable[Mapping[str, str]] = (),
    ) -> Redactor:
        """Values of the variables in `names` (any non-empty value), plus values of 6+
        characters of every variable whose name contains one of `SECRET_NAME_PARTS`: in
        `environ` and in each mapping of `also` (a config's `env:` mappings, which steps and
        servers are given)."""
        listed = tuple(names)
        values: list[str] = []
        for mapping in (environ, *also):
            values += [mapping.get(name, "") for name in listed]
            values += [
                value
                for name, value in mapping.items()
                if _names_a_secret(name) and len(value) >= MIN_DERIVED_LENGTH
            ]
        return cls(values)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        return Redactor([*self._values, *secrets], engine=self._screen.name)

    @property
    def values(self) -> tuple[str, ...]:
        """The raw secret values, for `::add-mask::`. Never print them."""
        return self._values

    @property
    def patterns(self) -> tuple[str, ...]:
        """Every form masked (the values and their derived forms), longest first, for
        `::add-mask::`. Never print them."""
        return self._patterns

    def mask(self, text: str) -> str:
        for pattern in self._multiline:  # first, so that a multi-line value becomes one mask
            if pattern in text:
                text = text.replace(pattern, MASK)
        if self._wrappable and _may_hold_a_run(text):
            text = _RUN.sub(lambda run: self._mask_run(run.group()), text)
        # A loop of C-speed substring searches beats one big regex alternation by about
        # 5x (measured on 2 cores with 80 patterns); most patterns are absent from most text,
        # and the screen proves that of most long ones in one pass, sparing their searches.
        patterns: Sequence[str] = self._unscreened
        if suspects := self._screen.suspects(text):
            covered = self._screen.covered
            patterns = [p for p in self._patterns if p in suspects or p not in covered]
        for pattern in patterns:
            if pattern in text:
                text = text.replace(pattern, MASK)
        return text

    def stream(self) -> StreamMasker:
        return StreamMasker(self)

    def _mask_run(self, run: str, across: int | None = None, star: bool = False) -> str:
        """A run of wrapped lines with every piece of a form found across them masked, one
        mask per piece, so each line keeps its place. With `across`, only the forms that
        cross that offset of `run`, and with `star`, character for character by `*`."""
        lines = run.split("\n")
        contents = [line.removesuffix("\r") for line in lines]
        joined = "".join(contents)
        if across is not None:  # the same offset in `joined`: less the line ends before it
            across -= sum(len(line) + 1 - len(content) for line, content in _before(lines, across))
        hidden = bytearray(len(joined))  # 1 where a form occurs
        for pattern in self._wrappable:
            start = joined.find(pattern)
            while start != -1:
                if across is None or start < across < start + len(pattern):
                    hidden[start : start + len(pattern)] = b"\1" * len(pattern)
                start = joined.find(pattern, start + 1)
        if not any(hidden):
            return run
        masked, offset = [], 0
        for line, content in zip(lines, contents, strict=True):
            flags = hidden[offset : offset + len(content)]
            offset += len(content)
            if not any(flags):
                masked.append(line)
                continue
            pieces = itertools.groupby(zip(content, flags, strict=True), key=lambda pair: pair[1])
            masked.append(
                "".join(
                    ("*" * len(chars) if star else MASK) if flag else "".join(c for c, _ in chars)
                    for flag, group in pieces
                    for chars in [list(group)]
                )
                + line[len(content) :]
            )
        return "\n".join(masked)

    def _starred_across(self, text: str, cut: int) -> str:
        """`text` with each form that crosses `cut` (a line start) replaced by as many `*`:
        so `text[:cut]` and `text[cut:]` may be masked apart without leaking a piece."""
        spans = [
            (start, start + len(pattern))
            for pattern in self._multiline
            for start in _starts(text, pattern, cut - len(pattern) + 1, cut)
            if start + len(pattern) > cut
        ]
        chars = list(text)
        for start, end in spans:
            chars[start:end] = [c if c in "\r\n" else "*" for c in chars[start:end]]
        text = "".join(chars)
        for run in _RUN.finditer(text):
            if run.start() < cut < run.end():
                starred = self._mask_run(run.group(), across=cut - run.start(), star=True)
                text = text[: run.start()] + starred + text[run.end() :]
        return text


class StreamMasker:
    """Masks output fed in arbitrary chunks; a chunk boundary never lets a secret through.

    `feed` returns every complete line, masked, except lines that may be the start of a
    multi-line secret, or of a run of wrapped base64, still arriving. A tail without a newline
    is held back until it grows beyond `STREAM_BUFFER_LIMIT`; then all of it is emitted masked
    but its last characters, enough to complete any form cut there (the redactor's reach: the
    longest pattern, and for a wrapped one, the line breaks inside it and the line it starts
    in).
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending: list[str] = []
        self._pending_length = 0

    @property
    def buffered(self) -> int:
        """Characters held back. Between calls it is at most
        max(STREAM_BUFFER_LIMIT, reach + WRAP_MAX + 2), whatever is fed."""
        return self._pending_length

    def feed(self, chunk: str) -> str:
        self._pending.append(chunk)
        self._pending_length += len(chunk)
        if "\n" not in chunk and self._pending_length <= STREAM_BUFFER_LIMIT:
            return ""
        text = "".join(self._pending)
        cut = self._line_cut(text)
        emitted, rest = self._redactor.mask(text[:cut]), text[cut:]
        if len(rest) > STREAM_BUFFER_LIMIT:
            overflow, rest = self._split_overflow(rest)
            emitted += overflow
        self._hold(rest)
        return emitted

    def flush(self) -> str:
        text = "".join(self._pending)
        self._hold("")
        return self._redactor.mask(text)

    def _hold(self, text: str) -> None:
        self._pending = [text] if text else []
        self._pending_length = len(text)

    def _line_cut(self, text: str) -> int:
        """After the last newline, or earlier if a multi-line pattern or a run of wrapped
        lines may straddle that."""
        cut = text.rfind("\n") + 1
        while cut:
            straddling = [
                start
                for pattern in self._redactor._multiline
                if (start := _straddle_start(pattern, text, cut)) is not None
            ]
            if self._redactor._wrappable and (start := _run_across(text, cut)) is not None:
                straddling.append(start)
            if not straddling:
                return cut
            cut = text.rfind("\n", 0, min(straddling)) + 1
        return 0

    def _split_overflow(self, text: str) -> tuple[str, str]:
        """`text`, longer than the limit, masked but for a tail held back: what a form cut at
        its end may need to be whole. Held lines are kept as they are, from a line start, so
        a wrapped run in them stays one."""
        reach = self._redactor._reach
        split = len(text) - reach
        if split <= 0:
            return "", text
        start = text.rfind("\n", 0, split) + 1
        if split - start > WRAP_MAX + 1:  # inside a line too long to be part of a run
            start = text.find("\n", split) + 1
        if start == 0:  # no line to cut at: mask it all, hold the masked tail
            masked = self._redactor.mask(text)
            split = max(0, len(masked) - reach)
            return masked[:split], masked[split:]
        text = self._redactor._starred_across(text, start)
        return self._redactor.mask(text[:start]), text[start:]


class _Finder(Protocol):
    """What proves patterns absent from a text: `suspects` names, among the `covered`
    patterns, every one that may occur (the others surely do not)."""

    name: str
    covered: frozenset[str]

    def suspects(self, text: str) -> frozenset[str]: ...


class _Hyperscan:
    """Hyperscan, every pattern without a `*` as a literal in one database: one scan of a
    text's UTF-8 bytes names exactly the patterns it holds (about 2 to 4 GB/s here, against
    0.15 to 0.56 for the screen). Scratch space is per thread: parallel steps mask at once.
    Patterns with a `*` are never covered, as in the screen, nor those with a NUL."""

    name = "hyperscan"

    def __init__(self, patterns: Sequence[str]) -> None:
        # The binding passes patterns as C strings: one holding a NUL is searched as ever.
        self.covered = frozenset(p for p in patterns if "*" not in p and "\0" not in p)
        self._ordered = sorted(self.covered)
        self._database: Any = None
        self._module: Any = None
        if self._ordered:
            self._module = hyperscan = importlib.import_module("hyperscan")
            self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._database.compile(
                expressions=[_raw(pattern) for pattern in self._ordered],
                ids=list(range(len(self._ordered))),
                flags=hyperscan.HS_FLAG_SINGLEMATCH,
                literal=True,
            )
        self._local = threading.local()

    def suspects(self, text: str) -> frozenset[str]:
        if self._database is None or not text:
            return frozenset()
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._module.Scratch(self._database)
        found: list[int] = []
        self._database.scan(
            _raw(text), match_event_handler=_collect, context=found, scratch=scratch
        )
        return frozenset(self._ordered[index] for index in found)


def _collect(index: int, start: int, end: int, flags: int, found: list[int]) -> None:
    found.append(index)


class _Screen:
    """One C-speed pass that proves most long patterns absent from a text.

    The text's UTF-8 bytes are read as 8-byte words at offsets that are multiples of
    `stride`. Any occurrence of a pattern of at least `stride + 7` bytes contains one of
    those words whole, and that word is one of the pattern's 8-byte substrings: only the
    patterns holding one of the text's words may occur. Twenty secrets give about eighty
    patterns, whose searches cost 80 passes over the text; the screen costs about as much as
    a dozen (90 -> 560 MB/s, bench/output.py). Patterns with a `*` are never covered: a
    replacement by `***` could make them appear in the text after it was screened. The
    engine where Hyperscan does not install.
    """

    name = "screen"

    def __init__(self, patterns: Sequence[str], stride: int) -> None:
        self.stride = stride
        self.covered = frozenset(
            pattern
            for pattern in patterns
            if stride and _screenable_length(pattern) >= stride + _WORD - 1
        )
        self._holders: dict[int, set[str]] = {}  # word -> the covered patterns holding it
        for pattern in self.covered:
            data = _raw(pattern)
            for start in range(len(data) - _WORD + 1):
                word = int.from_bytes(data[start : start + _WORD], sys.byteorder)
                self._holders.setdefault(word, set()).add(pattern)
        self._words = frozenset(self._holders)

    @classmethod
    def for_patterns(cls, patterns: Sequence[str]) -> _Finder:
        """The stride that costs least for these patterns (stride 0: no screen at all)."""
        lengths = [_screenable_length(pattern) for pattern in patterns]

        def cost(stride: int) -> float:
            if not stride:
                return len(lengths)
            unscreened = sum(length < stride + _WORD - 1 for length in lengths)
            return unscreened + _SCREEN_COST * _WORD / stride

        return cls(patterns, min(_STRIDES, key=cost))

    def suspects(self, text: str) -> frozenset[str]:
        """The covered patterns that may occur in `text`; the others surely do not."""
        if not self._words:
            return frozenset()
        data = _raw(text)
        words = memoryview(data)[: len(data) - len(data) % _WORD].cast("Q")[:: self.stride // _WORD]
        if self._words.isdisjoint(words):
            return frozenset()
        found = self._words.intersection(words)
        return frozenset().union(*(self._holders[word] for word in found))


# The engines, by name: Hyperscan where it installs, the screen everywhere.
ENGINES: dict[str, Callable[[Sequence[str]], _Finder]] = {
    **({"hyperscan": _Hyperscan} if _HYPERSCAN else {}),
    "screen": _Screen.for_patterns,
}


def default_engine() -> str:
    """The engine a Redactor uses unless told: the fastest one installed."""
    return next(iter(ENGINES))


def engine_description() -> str:
    """What masks this run's output, for `inv doctor` and the run record."""
    if _HYPERSCAN:
        from importlib.metadata import version

        return f"hyperscan {version('hyperscan')}"
    return "screen (Hyperscan is not installed: pip install 'shipyard[fast]')"


_WORD = 8  # bytes in one word of the screen ("Q")
_STRIDES = (0, 8, 16, 24, 32)
_SCREEN_COST = 38.0  # one word read every 8 bytes, in substring searches over the same text


def _screenable_length(pattern: str) -> int:
    return 0 if "*" in pattern else len(_raw(pattern))


def _raw(text: str) -> bytes:
    """The UTF-8 bytes of any str, lone surrogates included: the same for text and patterns."""
    return text.encode("utf-8", "surrogatepass")


def _before(lines: list[str], offset: int) -> Iterator[tuple[str, str]]:
    """The (line, content) pairs of `lines` (split at "\\n") that end before `offset`."""
    position = 0
    for line in lines:
        position += len(line) + 1
        if position > offset:
            return
        yield line, line.removesuffix("\r")


def _starts(text: str, pattern: str, low: int, high: int) -> Iterator[int]:
    """Where `pattern` occurs in `text` starting in [low, high)."""
    start = text.find(pattern, max(0, low))
    while start != -1 and start < high:
        yield start
        start = text.find(pattern, start + 1)


def _run_across(text: str, cut: int) -> int | None:
    """The start of a run of wrapped lines that may go on across `cut` (a line start): the
    line before it is a full run line and the one after may be one; else None."""
    start = text.rfind("\n", 0, cut - 1) + 1
    if not _FULL_RUN_LINE.fullmatch(text, start, cut):
        return None
    end = text.find("\n", cut)
    after = text[cut:] if end == -1 else text[cut:end]
    if not _OPEN_RUN_LINE.fullmatch(after) or (end != -1 and not after.strip("\r")):
        return None
    while start and _FULL_RUN_LINE.fullmatch(
        text, previous := text.rfind("\n", 0, start - 1) + 1, start
    ):
        start = previous
    return start


def _may_hold_a_run(text: str) -> bool:
    return bool(_RUN_START.match(text) or _RUN_START_AFTER_NEWLINE.search(text))


def _names_a_secret(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def _derived_patterns(secret: str) -> set[str]:
    """The forms everyday tools print `secret` in (see docs/evidence.md for the table)."""
    data = _utf8(secret)
    as_json = (json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])
    percent = (
        quote_from_bytes(data, safe=""),  # curl --data-urlencode, quote(safe="")
        quote_from_bytes(data),  # Python's quote(): keeps "/"
        quote_from_bytes(data, safe="!'()*"),  # JavaScript's encodeURIComponent
        quote_plus(data),  # form encoding
    )
    candidates = {
        *(line.strip() for line in secret.splitlines()),
        *as_json,
        *(form.replace("/", "\\/") for form in as_json),  # JSON that escapes "/" (PHP, Go)
        *percent,
        *(_PERCENT_ESCAPE.sub(lambda m: m.group(0).lower(), form) for form in percent),
        *_base64_cores(data),
        secret.replace("'", "'\\''"),  # inside single quotes, as bash `set -x` prints it
        _BASH_SPECIAL.sub(r"\\\g<0>", secret),  # bash `printf %q`
        data.hex(),
        data.hex().upper(),
    }
    return {pattern for pattern in candidates if len(pattern) >= MIN_DERIVED_LENGTH}


def _utf8(text: str) -> bytes:
    # Environment values that were not valid UTF-8 arrive surrogate-escaped: recover the bytes.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _base64_cores(data: bytes) -> Iterator[str]:
    """The base64 characters that depend on `data` alone, for data preceded by 0, 1 or 2
    bytes: so `base64(b"user:" + data)` is caught whatever the prefix is."""
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + data).decode("ascii")
        first_pure = (8 * shift + 5) // 6  # first 6-bit group after the prefix's bits
        end_pure = 8 * (shift + len(data)) // 6  # the next group mixes in what follows
        core = encoded[first_pure:end_pure]
        yield core
        yield core.translate(_URLSAFE)


def _straddle_start(pattern: str, text: str, cut: int) -> int | None:
    """Start of an occurrence of `pattern` in `text` that crosses `cut`, or of a tail of
    `text` that crosses `cut` and may still grow into `pattern`."""
    start = text.find(pattern[0], max(0, cut - len(pattern) + 1), cut)
    while start != -1:
        if pattern.startswith(text[start : start + len(pattern)]):
            return start
        start = text.find(pattern[0], start + 1, cut)
    return None
