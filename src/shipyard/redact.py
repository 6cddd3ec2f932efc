"""The one redactor every output of Shipyard goes through.

A `Redactor` knows the secret values of a run and, for each, the forms it takes in logs
(JSON-escaped, URL-encoded, base64 in every byte alignment, each line of a multi-line
value). `mask_bytes` replaces every occurrence of any of them in output by `***`, longest
first. Base64 wrapped across lines (`base64`, `openssl base64`, MIME) is masked too: in a run
of lines made only of base64 characters, each but the last of 16 to 128 of them, the lines
are read as one text, and every piece of a form found across them is masked on its own line.
`StreamMasker` does the same for output that arrives in arbitrary chunks, emitting whole
lines as soon as no secret can straddle them.

Masking works on bytes: a step's output is masked as it was printed, never decoded (the
forms are looked for as UTF-8, and a value that was not valid UTF-8 in the environment as
its own bytes). `mask` and `TextStreamMasker` do the same for text, through its UTF-8 bytes.

What is guaranteed: every occurrence of a pattern in the input is masked. Text that only
looks like a secret because a mask sits next to plain text (`ab` + `***` for a secret
`ab***`) is left alone: it cannot reveal anything, and chasing it would mask plain text.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import functools
import importlib
import importlib.util
import itertools
import json
import os
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
    "ENGINE_VARIABLE",
    "MASK",
    "MIN_DERIVED_LENGTH",
    "SECRET_NAME_PARTS",
    "STREAM_BUFFER_LIMIT",
    "WRAP_MAX",
    "WRAP_MIN",
    "Redactor",
    "StreamMasker",
    "TextStreamMasker",
]

ENGINE_VARIABLE = "SHIPYARD_MASKING_ENGINE"  # "hyperscan" or "screen": else the fastest
MASK = "***"
_MASK = MASK.encode()
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
STREAM_BUFFER_LIMIT = 64 * 1024  # bytes

_URLSAFE = str.maketrans("+/", "-_")
# Wrapped base64: a run of lines of these characters ("*" too, so a line keeps its place in
# its run once part of it is masked), each but the last of WRAP_MIN to WRAP_MAX of them.
_RUN_CHARS = rb"A-Za-z0-9+/=_*-"
WRAP_MIN, WRAP_MAX = 16, 128
_RUN_LINE = b"[%s]{%d,%d}" % (_RUN_CHARS, WRAP_MIN, WRAP_MAX)
_RUN = re.compile(rb"(?m)^(?:%s\r?\n)+[%s]{1,%d}\r?$" % (_RUN_LINE, _RUN_CHARS, WRAP_MAX))
# A run's first two lines, as a cheap test (about 1.4 GB/s: the search skips to each newline).
_RUN_START = re.compile(rb"%s\r?\n[%s]" % (_RUN_LINE, _RUN_CHARS))
_RUN_START_AFTER_NEWLINE = re.compile(b"\n" + _RUN_START.pattern)
_FULL_RUN_LINE = re.compile(rb"%s\r?\n" % _RUN_LINE)
_OPEN_RUN_LINE = re.compile(rb"[%s]{0,%d}\r?" % (_RUN_CHARS, WRAP_MAX))
_WRAPPABLE = re.compile(rb"[A-Za-z0-9+/=_-]+")
_PERCENT_ESCAPE = re.compile("%[0-9A-F]{2}")
_BASH_SPECIAL = re.compile(r"[ !\"$&'()*,;<>?\[\\\]^`{|}]")  # what `printf %q` escapes


class Redactor:
    def __init__(self, secrets: Iterable[str] = (), *, engine: str | None = None) -> None:
        """`engine`: the name of the one in `ENGINES` that finds which patterns a text holds
        (default: `default_engine()`)."""
        # Whitespace-only values are ignored, as the Actions runner does: masking them
        # would blank every space of the log.
        self._values = tuple(dict.fromkeys(value for value in secrets if value.strip()))
        forms = {form for value in self._values for form in (value, *_derived_patterns(value))}
        self._forms = tuple(sorted(forms, key=lambda form: (-len(form), form)))
        patterns = {
            pattern
            for form in self._forms
            for pattern in _encodings(form)
            if pattern not in _MASK  # "*" or "**" cannot be hidden behind "***"
        }
        self._patterns = tuple(sorted(patterns, key=lambda pattern: (-len(pattern), pattern)))
        self._multiline = tuple(pattern for pattern in self._patterns if b"\n" in pattern)
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
        return self._forms

    def mask(self, text: str) -> str:
        """`text` with every form masked (through its UTF-8 bytes: the same as output)."""
        if not self._patterns:
            return text
        return _decode(self.mask_bytes(_encode(text)))

    def mask_bytes(self, data: bytes) -> bytes:
        for pattern in self._multiline:  # first, so that a multi-line value becomes one mask
            if pattern in data:
                data = data.replace(pattern, _MASK)
        if self._wrappable and self._screen.may_hold_a_run(data):
            data = _RUN.sub(lambda run: self._mask_run(run.group()), data)
        # A loop of C-speed substring searches beats one big regex alternation by about
        # 5x (measured on 2 cores with 80 patterns); most patterns are absent from most text,
        # and the engine proves that of all it covers in one pass, sparing their searches.
        patterns: Sequence[bytes] = self._unscreened
        if suspects := self._screen.suspects(data):
            covered = self._screen.covered
            patterns = [p for p in self._patterns if p in suspects or p not in covered]
        for pattern in patterns:
            if pattern in data:
                data = data.replace(pattern, _MASK)
        return data

    def stream(self) -> TextStreamMasker:
        """A stream of text; a step's output is masked by `StreamMasker(redactor)`, as bytes."""
        return TextStreamMasker(self)

    def _mask_run(self, run: bytes, across: int | None = None, star: bool = False) -> bytes:
        """A run of wrapped lines with every piece of a form found across them masked, one
        mask per piece, so each line keeps its place. With `across`, only the forms that
        cross that offset of `run`, and with `star`, byte for byte by `*`."""
        lines = run.split(b"\n")
        contents = [line.removesuffix(b"\r") for line in lines]
        joined = b"".join(contents)
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
            pieces = bytearray()
            for flag, group in itertools.groupby(range(len(content)), key=flags.__getitem__):
                first, *rest = group
                end = first + 1 + len(rest)
                pieces += (b"*" * (end - first) if star else _MASK) if flag else content[first:end]
            masked.append(bytes(pieces) + line[len(content) :])
        return b"\n".join(masked)

    def _starred_across(self, text: bytes, cut: int) -> bytes:
        """`text` with each form that crosses `cut` (a line start) replaced by as many `*`:
        so `text[:cut]` and `text[cut:]` may be masked apart without leaking a piece."""
        starred = bytearray(text)
        for pattern in self._multiline:
            for start in _starts(text, pattern, cut - len(pattern) + 1, cut):
                for index in range(start, start + len(pattern)):
                    if starred[index] not in b"\r\n":
                        starred[index] = ord("*")
        text = bytes(starred)
        for run in _RUN.finditer(text):
            if run.start() < cut < run.end():
                masked = self._mask_run(run.group(), across=cut - run.start(), star=True)
                text = text[: run.start()] + masked + text[run.end() :]
        return text


class StreamMasker:
    """Masks output fed in arbitrary chunks of bytes; a chunk boundary never lets a secret
    through.

    `feed` returns every complete line, masked, except lines that may be the start of a
    multi-line secret, or of a run of wrapped base64, still arriving. A tail without a newline
    is held back until it grows beyond `STREAM_BUFFER_LIMIT` bytes; then all of it is emitted
    masked but its last bytes, enough to complete any form cut there (the redactor's reach:
    the longest pattern, and for a wrapped one, the line breaks inside it and the line it
    starts in). A chunk that holds no secret costs a few scans of it in C, whatever its size.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending: list[bytes] = []
        self._pending_length = 0

    @property
    def buffered(self) -> int:
        """Bytes held back. Between calls it is at most
        max(STREAM_BUFFER_LIMIT, reach + WRAP_MAX + 2), whatever is fed."""
        return self._pending_length

    def feed(self, chunk: bytes) -> bytes:
        self._pending.append(chunk)
        self._pending_length += len(chunk)
        if b"\n" not in chunk and self._pending_length <= STREAM_BUFFER_LIMIT:
            return b""
        text = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        cut = self._line_cut(text)
        emitted, rest = self._redactor.mask_bytes(text[:cut]), text[cut:]
        if len(rest) > STREAM_BUFFER_LIMIT:
            overflow, rest = self._split_overflow(rest)
            emitted += overflow
        self._hold(rest)
        return emitted

    def flush(self) -> bytes:
        text = b"".join(self._pending)
        self._hold(b"")
        return self._redactor.mask_bytes(text)

    def _hold(self, text: bytes) -> None:
        self._pending = [text] if text else []
        self._pending_length = len(text)

    def _line_cut(self, text: bytes) -> int:
        """After the last newline, or earlier if a multi-line pattern or a run of wrapped
        lines may straddle that."""
        cut = text.rfind(b"\n") + 1
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
            cut = text.rfind(b"\n", 0, min(straddling)) + 1
        return 0

    def _split_overflow(self, text: bytes) -> tuple[bytes, bytes]:
        """`text`, longer than the limit, masked but for a tail held back: what a form cut at
        its end may need to be whole. Held lines are kept as they are, from a line start, so
        a wrapped run in them stays one."""
        reach = self._redactor._reach
        split = len(text) - reach
        if split <= 0:
            return b"", text
        start = text.rfind(b"\n", 0, split) + 1
        if split - start > WRAP_MAX + 1:  # inside a line too long to be part of a run
            start = text.find(b"\n", split) + 1
        if start == 0:  # no line to cut at: mask it all, hold the masked tail
            masked = self._redactor.mask_bytes(text)
            split = max(0, len(masked) - reach)
            return masked[:split], masked[split:]
        text = self._redactor._starred_across(text, start)
        return self._redactor.mask_bytes(text[:start]), text[start:]


class TextStreamMasker:
    """`StreamMasker` for text: each piece masked through its UTF-8 bytes, the output decoded
    as it comes (a character cut between two pieces of output is held until it is whole)."""

    def __init__(self, redactor: Redactor) -> None:
        self._bytes = StreamMasker(redactor)
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    @property
    def buffered(self) -> int:
        """Bytes held back (see `StreamMasker.buffered`), with a character's first bytes."""
        return self._bytes.buffered + len(self._decoder.getstate()[0])

    def feed(self, chunk: str) -> str:
        return self._decoder.decode(self._bytes.feed(_encode(chunk)))

    def flush(self) -> str:
        return self._decoder.decode(self._bytes.flush(), final=True)


class _Finder(Protocol):
    """What proves patterns absent from output: `suspects` names, among the `covered`
    patterns, every one that may occur (the others surely do not); `may_hold_a_run` is
    false when no run of wrapped base64 lines can start in it."""

    name: str
    covered: frozenset[bytes]

    def suspects(self, data: bytes) -> frozenset[bytes]: ...
    def may_hold_a_run(self, data: bytes) -> bool: ...


class _Hyperscan:
    """Hyperscan, every pattern without a `*` as a literal in one database: one scan of the
    output names exactly the patterns it holds (about 2 to 4 GB/s here, against 0.15 to 0.56
    for the screen). Scratch space is per thread: parallel steps mask at once. Patterns with
    a `*` are never covered, as in the screen, nor those with a NUL."""

    name = "hyperscan"

    def __init__(self, patterns: Sequence[bytes]) -> None:
        # The binding passes patterns as C strings: one holding a NUL is searched as ever.
        self.covered = frozenset(p for p in patterns if b"*" not in p and b"\0" not in p)
        self._ordered = sorted(self.covered)
        self._database: Any = None
        if self._ordered:
            hyperscan = importlib.import_module("hyperscan")
            self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            self._database.compile(
                expressions=self._ordered,
                ids=list(range(len(self._ordered))),
                flags=hyperscan.HS_FLAG_SINGLEMATCH,
                literal=True,
            )
        self._local = threading.local()

    def suspects(self, data: bytes) -> frozenset[bytes]:
        if self._database is None or not data:
            return frozenset()
        found: list[int] = []
        scratch = self._scratch("patterns", self._database)
        self._database.scan(data, match_event_handler=_collect, context=found, scratch=scratch)
        return frozenset(self._ordered[index] for index in found)

    def may_hold_a_run(self, data: bytes) -> bool:
        """`_RUN_START` at a line start, in one scan (about 3.5 GB/s, against 1.3 for re)."""
        database = _run_database()
        found: list[int] = []
        scratch = self._scratch("runs", database)
        database.scan(data, match_event_handler=_collect, context=found, scratch=scratch)
        return bool(found)

    def _scratch(self, name: str, database: Any) -> Any:
        scratch = getattr(self._local, name, None)
        if scratch is None:
            scratch = importlib.import_module("hyperscan").Scratch(database)
            setattr(self._local, name, scratch)
        return scratch


def _collect(index: int, start: int, end: int, flags: int, found: list[int]) -> bool:
    found.append(index)
    return False  # go on: one match of each pattern is reported (HS_FLAG_SINGLEMATCH)


@functools.cache
def _run_database() -> Any:
    hyperscan = importlib.import_module("hyperscan")
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[b"^" + _RUN_START.pattern],
        flags=hyperscan.HS_FLAG_MULTILINE | hyperscan.HS_FLAG_SINGLEMATCH,
    )
    return database


class _Screen:
    """One C-speed pass that proves most long patterns absent from output.

    The output is read as 8-byte words at offsets that are multiples of `stride`. Any
    occurrence of a pattern of at least `stride + 7` bytes contains one of those words whole,
    and that word is one of the pattern's 8-byte substrings: only the patterns holding one of
    the output's words may occur. Twenty secrets give about eighty patterns, whose searches
    cost 80 passes over the output; the screen costs about as much as a dozen (90 -> 560
    MB/s, bench/output.py). Patterns with a `*` are never covered: a replacement by `***`
    could make them appear in the output after it was screened. The engine where Hyperscan
    does not install.
    """

    name = "screen"

    def __init__(self, patterns: Sequence[bytes], stride: int) -> None:
        self.stride = stride
        self.covered = frozenset(
            pattern
            for pattern in patterns
            if stride and _screenable_length(pattern) >= stride + _WORD - 1
        )
        self._holders: dict[int, set[bytes]] = {}  # word -> the covered patterns holding it
        for pattern in self.covered:
            for start in range(len(pattern) - _WORD + 1):
                word = int.from_bytes(pattern[start : start + _WORD], sys.byteorder)
                self._holders.setdefault(word, set()).add(pattern)
        self._words = frozenset(self._holders)

    @classmethod
    def for_patterns(cls, patterns: Sequence[bytes]) -> _Finder:
        """The stride that costs least for these patterns (stride 0: no screen at all)."""
        lengths = [_screenable_length(pattern) for pattern in patterns]

        def cost(stride: int) -> float:
            if not stride:
                return len(lengths)
            unscreened = sum(length < stride + _WORD - 1 for length in lengths)
            return unscreened + _SCREEN_COST * _WORD / stride

        return cls(patterns, min(_STRIDES, key=cost))

    @staticmethod
    def may_hold_a_run(data: bytes) -> bool:
        return bool(_RUN_START.match(data) or _RUN_START_AFTER_NEWLINE.search(data))

    def suspects(self, data: bytes) -> frozenset[bytes]:
        """The covered patterns that may occur in `data`; the others surely do not."""
        if not self._words:
            return frozenset()
        whole = len(data) - len(data) % _WORD
        words = memoryview(data)[:whole].cast("Q")[:: self.stride // _WORD]
        if self._words.isdisjoint(words):
            return frozenset()
        found = self._words.intersection(words)
        return frozenset().union(*(self._holders[word] for word in found))


# The engines, by name: Hyperscan where it installs, the screen everywhere.
ENGINES: dict[str, Callable[[Sequence[bytes]], _Finder]] = {
    **({"hyperscan": _Hyperscan} if _HYPERSCAN else {}),
    "screen": _Screen.for_patterns,
}


def default_engine() -> str:
    """The engine a Redactor uses unless told: the one `SHIPYARD_MASKING_ENGINE` names, if it
    is installed; else the fastest one installed."""
    chosen = os.environ.get(ENGINE_VARIABLE, "")
    return chosen if chosen in ENGINES else next(iter(ENGINES))


def engine_problem() -> str | None:
    """Why `SHIPYARD_MASKING_ENGINE` is not obeyed, or None when it is (or is not set)."""
    chosen = os.environ.get(ENGINE_VARIABLE, "")
    if not chosen or chosen in ENGINES:
        return None
    return f"{ENGINE_VARIABLE}={chosen!r} names no engine installed here ({', '.join(ENGINES)})"


def engine_description() -> str:
    """What masks this run's output, for `inv doctor` and the run record."""
    name = default_engine()
    if name == "hyperscan":
        from importlib.metadata import version

        described = f"hyperscan {version('hyperscan')}"
    elif _HYPERSCAN:
        described = f"screen (chosen by {ENGINE_VARIABLE})"
    else:
        described = "screen (Hyperscan is not installed: pip install 'shipyard[fast]')"
    problem = engine_problem()
    return f"{described}; {problem}" if problem else described


_WORD = 8  # bytes in one word of the screen ("Q")
_STRIDES = (0, 8, 16, 24, 32)
_SCREEN_COST = 38.0  # one word read every 8 bytes, in substring searches over the same text


def _screenable_length(pattern: bytes) -> int:
    return 0 if b"*" in pattern else len(pattern)


def _encode(text: str) -> bytes:
    """The bytes `text` stands for: UTF-8, with a byte that was not (an environment value's,
    surrogate-escaped by Python) as itself; other lone surrogates as UTF-8 would write them."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes) -> str:
    """The text `_encode` made `data` from (a mask may have cut into a stray byte's
    neighbours: such bytes come back surrogate-escaped)."""
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return data.decode("utf-8", "surrogateescape")


def _encodings(form: str) -> set[bytes]:
    """The bytes a form may be printed as: those `_encode` gives, and for a form with a
    surrogate-escaped byte, its UTF-8 with surrogates too (as a text holding it beside
    another lone surrogate is encoded)."""
    encoded = {_encode(form)}
    with contextlib.suppress(UnicodeEncodeError):
        encoded.add(form.encode("utf-8", "surrogatepass"))
    return encoded


def _before(lines: list[bytes], offset: int) -> Iterator[tuple[bytes, bytes]]:
    """The (line, content) pairs of `lines` (split at "\\n") that end before `offset`."""
    position = 0
    for line in lines:
        position += len(line) + 1
        if position > offset:
            return
        yield line, line.removesuffix(b"\r")


def _starts(text: bytes, pattern: bytes, low: int, high: int) -> Iterator[int]:
    """Where `pattern` occurs in `text` starting in [low, high)."""
    start = text.find(pattern, max(0, low))
    while start != -1 and start < high:
        yield start
        start = text.find(pattern, start + 1)


def _run_across(text: bytes, cut: int) -> int | None:
    """The start of a run of wrapped lines that may go on across `cut` (a line start): the
    line before it is a full run line and the one after may be one; else None."""
    start = text.rfind(b"\n", 0, cut - 1) + 1
    if not _FULL_RUN_LINE.fullmatch(text, start, cut):
        return None
    end = text.find(b"\n", cut)
    after = text[cut:] if end == -1 else text[cut:end]
    if not _OPEN_RUN_LINE.fullmatch(after) or (end != -1 and not after.strip(b"\r")):
        return None
    while start and _FULL_RUN_LINE.fullmatch(
        text, previous := text.rfind(b"\n", 0, start - 1) + 1, start
    ):
        start = previous
    return start


def _names_a_secret(name: str) -> bool:
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def _derived_patterns(secret: str) -> set[str]:
    """The forms everyday tools print `secret` in (see docs/evidence.md for the table)."""
    data = _encode(secret)
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


def _straddle_start(pattern: bytes, text: bytes, cut: int) -> int | None:
    """Start of an occurrence of `pattern` in `text` that crosses `cut`, or of a tail of
    `text` that crosses `cut` and may still grow into `pattern`."""
    start = text.find(pattern[0], max(0, cut - len(pattern) + 1), cut)
    while start != -1:
        if pattern.startswith(text[start : start + len(pattern)]):
            return start
        start = text.find(pattern[0], start + 1, cut)
    return None
