from __future__ import annotations

import base64
import itertools
import json
import random
import re
import secrets
from collections.abc import Iterator
from unittest import mock
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shipyard import redact
from shipyard.redact import (
    MASK,
    MIN_DERIVED_LENGTH,
    STREAM_BUFFER_LIMIT,
    WRAP_MAX,
    WRAP_MIN,
    Redactor,
)

TRICKY = ".^$*+?()[]{}|\\\"'%/&=:;,<> \t\r\n\x00éßΩ€中😀\u2028"
CHARS = st.one_of(st.sampled_from(TRICKY), st.characters(codec="utf-8"))
FILLER = st.text(CHARS, max_size=30)
BASE64_PREFIXES = st.one_of(
    st.sampled_from([b"", b"u", b"user:", b"deploy-bot:"]), st.binary(max_size=6)
)


def forgeable(secret: str) -> bool:
    """Plain text next to a mask could spell it (`ab` + `***` for a secret `ab***`): such
    output reveals nothing, and redact.py deliberately leaves it alone."""
    forms = [secret, *(line.strip() for line in secret.splitlines())]
    return any(form.startswith("*") or form.endswith("*") or MASK in form for form in forms)


SECRET_VALUES = st.text(CHARS, min_size=1, max_size=24).filter(
    lambda value: bool(value.strip()) and not forgeable(value)
)
SECRET_LISTS = st.lists(SECRET_VALUES, min_size=1, max_size=3, unique=True)
TOKENS = st.binary(min_size=12, max_size=32).map(
    lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("=")
)


def base64_printed(
    secret: str, prefix: bytes, suffix: bytes, *, urlsafe: bool
) -> tuple[str, list[str]]:
    """`base64(prefix + secret + suffix)`, and its characters that depend on the secret alone."""
    blob = base64.b64encode(prefix + secret.encode() + suffix).decode()
    if urlsafe:
        blob = blob.translate(str.maketrans("+/", "-_"))
    first = -(-8 * len(prefix) // 6)
    end = 8 * (len(prefix) + len(secret.encode())) // 6
    return blob, [blob[first:end]]


def wrapped_base64_printed(
    secret: str, prefix: bytes, suffix: bytes, *, urlsafe: bool, width: int, newline: str
) -> tuple[str, list[str]]:
    """`base64(prefix + secret + suffix)` on lines of `width` (GNU `base64`: 76, `openssl
    base64` and PEM: 64, MIME: 76 with CRLF); the forms to look for are in `wrapped_leaks`."""
    blob, _ = base64_printed(secret, prefix, suffix, urlsafe=urlsafe)
    lines = [blob[start : start + width] for start in range(0, len(blob), width)]
    return newline + newline.join(lines) + newline, []


def wrapped_leaks(output: str, secret_list: list[str]) -> list[str]:
    """The base64 cores of the secrets still in `output` once its line breaks are taken out."""
    unwrapped = output.replace("\r", "").replace("\n", "")
    cores = {
        base64_printed(secret, bytes(shift), b"", urlsafe=urlsafe)[1][0]
        for secret in secret_list
        for shift in range(3)
        for urlsafe in (False, True)
    }
    return [core for core in cores if len(core) >= MIN_DERIVED_LENGTH and core in unwrapped]


def known_forms(secret: str) -> list[str]:
    cores = [
        base64_printed(secret, bytes(shift), b"", urlsafe=urlsafe)[1][0]
        for shift in range(3)
        for urlsafe in (False, True)
    ]
    return [
        secret,
        *(line.strip() for line in secret.splitlines()),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
        *cores,
        *(form for _, forms in more_forms(secret) for form in forms),
    ]


def lower_escapes(text: str) -> str:
    return re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def more_forms(secret: str) -> list[tuple[str, list[str]]]:
    """How more everyday tools print `secret` (issue 13), each with the form that must go."""
    data = secret.encode()
    json_slashes = json.dumps(secret)[1:-1].replace("/", "\\/")
    set_x = secret.replace("'", "'\\''")
    forms = [
        (f"GET /?q={quote(secret)} HTTP/1.1", [quote(secret)]),  # Python's quote(): keeps "/"
        (f"?q={lower_escapes(quote(secret, safe=''))}", [lower_escapes(quote(secret, safe=""))]),
        (f"&q={lower_escapes(quote_plus(secret))}", [lower_escapes(quote_plus(secret))]),
        (f"u={quote(secret, safe=chr(33) + chr(39) + '()*')}", [quote(secret, safe="!'()*")]),
        (f'{{"token":"{json_slashes}"}}', [json_slashes]),
        (f"+ deploy --token '{set_x}'", [set_x]),
        (f"token={data.hex()}", [data.hex()]),
        (f"TOKEN={data.hex().upper()}", [data.hex().upper()]),
    ]
    if secret.isascii() and secret.isprintable():  # else bash prints $'...'
        quoted = re.sub(r"[ !\"$&'()*,;<>?\[\\\]^`{|}]", lambda m: "\\" + m.group(0), secret)
        forms.append((f"printf: {quoted}", [quoted]))
    return forms


def printed(secret: str) -> st.SearchStrategy[tuple[str, list[str]]]:
    """Ways a program prints `secret`, each with the derived forms that must not survive."""
    as_json, as_utf8_json = json.dumps(secret), json.dumps(secret, ensure_ascii=False)
    plain = [
        (secret, []),
        (f'{{"token": {as_json}}}', [as_json[1:-1]]),
        (as_utf8_json, [as_utf8_json[1:-1]]),
        (f"https://ci:{quote(secret, safe='')}@host/", [quote(secret, safe="")]),
        (f"?password={quote_plus(secret)}&x=1", [quote_plus(secret)]),
        *more_forms(secret),
    ]
    in_base64 = st.builds(
        base64_printed,
        st.just(secret),
        BASE64_PREFIXES,
        st.binary(max_size=3),
        urlsafe=st.booleans(),
    )
    in_wrapped_base64 = st.builds(
        wrapped_base64_printed,
        st.just(secret),
        BASE64_PREFIXES,
        st.binary(max_size=3),
        urlsafe=st.booleans(),
        width=st.sampled_from([16, 64, 76]),
        newline=st.sampled_from(["\n", "\r\n"]),
    )
    return st.one_of(st.sampled_from(plain), in_base64, in_wrapped_base64)


@st.composite
def logs_with_secrets(
    draw: st.DrawFn,
    secret_lists: st.SearchStrategy[list[str]] = SECRET_LISTS,
) -> tuple[list[str], str, list[str]]:
    """Secrets, a log printing them in many forms amid random text, and the derived forms."""
    secret_list = draw(secret_lists)
    pieces, derived = [], []
    for _ in range(draw(st.integers(1, 5))):
        text, forms = draw(printed(draw(st.sampled_from(secret_list))))
        pieces += [draw(FILLER), text]
        derived += forms
    pieces.append(draw(FILLER))
    return secret_list, "".join(pieces), derived


def cuts(text: str) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(text)), max_size=12)


def pieces(text: str, positions: list[int]) -> Iterator[str]:
    for start, end in itertools.pairwise([0, *sorted(positions), len(text)]):
        yield text[start:end]


def streamed(redactor: Redactor, text: str, positions: list[int]) -> str:
    stream = redactor.stream()
    return "".join(stream.feed(piece) for piece in pieces(text, positions)) + stream.flush()


def assert_nothing_leaks(output: str, secret_list: list[str], derived: list[str]) -> None:
    for secret in secret_list:
        assert secret not in output
    for form in derived:
        if len(form) >= MIN_DERIVED_LENGTH:
            assert form not in output
    assert not wrapped_leaks(output, secret_list)


@pytest.fixture(
    scope="module",
    autouse=True,
    params=[  # the default engine in the quick suite, the others with the end-to-end tests
        pytest.param(name, marks=() if name == redact.default_engine() else pytest.mark.e2e)
        for name in redact.ENGINES
    ],
)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test of this module, on each engine installed (Hyperscan, the screen)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redact, "default_engine", lambda: request.param)
        yield request.param


@settings(max_examples=300, deadline=None)
@given(case=logs_with_secrets(), data=st.data())
def test_no_chunking_lets_a_secret_through_and_the_stream_is_the_mask_of_the_whole_text(
    case: tuple[list[str], str, list[str]], data: st.DataObject
) -> None:
    """Two properties of one example: no secret or encoded form comes out, whatever the
    chunking; and the streamed output is exactly what masking the whole text gives."""
    secret_list, text, derived = case
    redactor = Redactor(secret_list)
    output = streamed(redactor, text, data.draw(cuts(text)))
    assert_nothing_leaks(output, secret_list, derived)
    assert output == redactor.mask(text)


@settings(max_examples=200, deadline=None)
@given(secret_list=st.lists(TOKENS, max_size=3), text=st.text(CHARS), data=st.data())
def test_text_without_secrets_passes_byte_for_byte(
    secret_list: list[str], text: str, data: st.DataObject
) -> None:
    assume(not any(form in text for secret in secret_list for form in known_forms(secret)))
    redactor = Redactor(secret_list)
    assert redactor.mask(text) == text
    assert streamed(redactor, text, data.draw(cuts(text))) == text


@settings(max_examples=200, deadline=None)
@given(case=logs_with_secrets(), limit=st.integers(1, 40), data=st.data())
def test_long_lines_stream_in_overlapping_windows_without_leaking(
    case: tuple[list[str], str, list[str]], limit: int, data: st.DataObject
) -> None:
    """With the 64 KiB limit lowered to a few characters, every chunk takes the overflow path."""
    secret_list, text, derived = case
    longest = max(len(form) for secret in secret_list for form in known_forms(secret))
    stream = Redactor(secret_list).stream()
    emitted = []
    with mock.patch.object(redact, "STREAM_BUFFER_LIMIT", limit):
        for piece in pieces(text, data.draw(cuts(text))):
            emitted.append(stream.feed(piece))
            # the start of any form cut at the end, and the line that start is in
            assert stream.buffered <= max(limit, 2 * longest + WRAP_MIN + WRAP_MAX)
        emitted.append(stream.flush())
    assert_nothing_leaks("".join(emitted), secret_list, derived)


def test_a_megabyte_line_keeps_the_buffer_bounded_and_masks_across_the_window_edge() -> None:
    secret = secrets.token_urlsafe(32)
    basic_auth = base64.b64encode(f"deploy-bot:{secret}".encode()).decode()
    # Fed in 100-character chunks, with a secret across every multiple of 100: whichever
    # chunk takes the buffer past 64 KiB, a secret is cut where that chunk ends.
    units = [f"{secret} compiled module_{n:05d}.o [ok]".ljust(100, ".") for n in range(10_000)]
    line = "." * (100 - len(secret) // 2) + "".join(units) + f" Basic {basic_auth}"
    stream = Redactor([secret]).stream()
    emitted = []
    for start in range(0, len(line), 100):
        emitted.append(stream.feed(line[start : start + 100]))
        assert stream.buffered <= STREAM_BUFFER_LIMIT
    before_flush = "".join(emitted)
    output = before_flush + stream.flush()
    assert len(before_flush) > len(output) - STREAM_BUFFER_LIMIT  # it streamed, not hoarded
    assert secret not in output
    assert base64_printed(secret, b"deploy-bot:", b"", urlsafe=False)[1][0] not in output
    assert output.count(MASK) == len(units) + 1


def pem_like() -> str:
    body = base64.b64encode(secrets.token_bytes(300)).decode()
    lines = [body[start : start + 64] for start in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN TEST KEY-----", *lines, "-----END TEST KEY-----"])


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_a_multiline_secret_is_masked_whole_and_line_by_line(data: st.DataObject) -> None:
    pem = pem_like()
    indented = "\n".join(f"    {line}" for line in pem.splitlines())
    text = f"key:\n{pem}\nindented:\n{indented}\njson: {json.dumps({'key': pem})}\n"
    redactor = Redactor([pem])
    for output in (redactor.mask(text), streamed(redactor, text, data.draw(cuts(text)))):
        assert output.startswith(f"key:\n{MASK}\nindented:\n")
        assert f"    {MASK}\n" * len(pem.splitlines()) in output
        assert output.endswith(f'json: {{"key": "{MASK}"}}\n')
        assert not any(line in output for line in pem.splitlines())


def test_stream_emits_each_complete_line_at_once() -> None:
    token = secrets.token_urlsafe(16)
    stream = Redactor([token]).stream()
    assert stream.feed(f"deploying with {token}\npart") == f"deploying with {MASK}\n"
    assert stream.buffered == len("part")
    assert stream.feed("ial") == ""
    assert stream.feed(" line\nnext") == "partial line\n"
    assert stream.flush() == "next"
    assert stream.buffered == 0


def test_lines_that_may_start_a_multiline_secret_wait_for_the_rest() -> None:
    first, second = secrets.token_hex(2), secrets.token_hex(2)  # lines too short to mask alone
    redactor = Redactor([f"{first}\n{second}"])
    stream = redactor.stream()
    assert stream.feed(f"key: {first}\n") == ""
    assert stream.feed(f"{second} done\n") == f"key: {MASK} done\n"
    other = redactor.stream()
    assert other.feed(f"key: {first}\n") == ""
    assert other.feed("unrelated\n") == f"key: {first}\nunrelated\n"


@pytest.mark.parametrize(
    "name",
    [
        "MY_API_KEY",
        "db_password",
        "GitHub_Token",
        "AWS_SECRET_ACCESS_KEY",
        "PGPASSWD",
        "GCP_CREDENTIALS",
        "SSH_PRIVATE_KEY",
    ],
)
def test_from_environ_takes_secret_looking_names_from_six_characters(name: str) -> None:
    six, five = secrets.token_hex(3), secrets.token_hex(3)[:5]
    redactor = Redactor.from_environ({name: six, "HOME": "/home/ci"})
    assert redactor.values == (six,)
    assert redactor.mask(f"login {six} ok") == f"login {MASK} ok"
    assert Redactor.from_environ({name: five}).values == ()


def test_from_environ_takes_listed_names_at_any_length() -> None:
    short = secrets.token_hex(1)
    environ = {"DEPLOY_PIN": short, "EMPTY": "", "TOKENIZERS_PARALLELISM": "false", "CI": "true"}
    redactor = Redactor.from_environ(environ, names=["DEPLOY_PIN", "EMPTY", "NOT_SET"])
    assert redactor.values == (short,)
    assert redactor.mask(f"pin={short}; CI=true") == f"pin={MASK}; CI=true"


def test_derived_forms_shorter_than_the_minimum_are_left_alone() -> None:
    short = secrets.token_hex(2)[:3]
    as_base64 = base64.b64encode(short.encode()).decode()  # 4 characters
    assert Redactor([short]).mask(f"{short} {as_base64}") == f"{MASK} {as_base64}"


def test_blank_values_are_ignored() -> None:
    redactor = Redactor(["", "  ", "\n"])
    assert redactor.values == ()
    assert redactor.mask("a  b\n") == "a  b\n"


def test_with_secrets_returns_a_new_redactor() -> None:
    first, second = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    original = Redactor([first])
    extended = original.with_secrets([second])
    assert extended.values == (first, second)
    assert extended.mask(f"{first} {second}") == f"{MASK} {MASK}"
    assert original.mask(second) == second


def test_twenty_secrets_in_a_build_log_are_each_masked() -> None:
    rng = random.Random(7)
    tokens = [secrets.token_urlsafe(rng.randint(16, 40)) for _ in range(20)]
    log = "".join(f"[{n}] step {n % 7}: ok {rng.choice(tokens)}\n" for n in range(2_000))
    masked = Redactor(tokens).mask(log)
    assert not any(token in masked for token in tokens)
    assert masked.count(MASK) == 2_000


LONG_SECRETS = st.lists(
    st.text(CHARS, min_size=31, max_size=48).filter(
        lambda value: bool(value.strip()) and not forgeable(value)
    ),
    min_size=5,
    max_size=8,
    unique=True,
)


@st.composite
def logs_with_many_long_secrets(draw: st.DrawFn) -> tuple[list[str], str, list[str]]:
    """Enough long secrets that the redactor screens text before searching it."""
    secret_list = draw(LONG_SECRETS)
    pieces, derived = [], []
    for _ in range(draw(st.integers(0, 4))):
        text, forms = draw(printed(draw(st.sampled_from(secret_list))))
        pieces += [draw(FILLER), text]
        derived += forms
    pieces.append(draw(FILLER))
    return secret_list, "".join(pieces), derived


@settings(max_examples=150, deadline=None)  # each example builds a redactor of 8 long secrets
@given(case=logs_with_many_long_secrets(), data=st.data())
def test_the_screen_of_long_patterns_changes_no_output(
    case: tuple[list[str], str, list[str]], data: st.DataObject
) -> None:
    secret_list, text, derived = case
    redactor = Redactor(secret_list)
    assert redactor._screen.covered, "these secrets are meant to be screened"
    screened = redactor.mask(text)
    output = streamed(redactor, text, data.draw(cuts(text)))
    engine = type(redactor._screen)  # every covered pattern searched: as with no engine
    with mock.patch.object(engine, "suspects", return_value=redactor._screen.covered):
        assert screened == redactor.mask(text)
    assert output == screened
    assert_nothing_leaks(output, secret_list, derived)


def test_a_long_secret_is_masked_at_every_offset_and_in_a_long_text() -> None:
    tokens = [secrets.token_urlsafe(24) for _ in range(20)]
    redactor = Redactor(tokens)
    assert redactor._screen.covered  # twenty 32-character tokens are screened
    filler = "é build ok 中 " * 10
    for offset in range(40):
        token = tokens[offset % 20]
        text = f"{filler[:offset]}{token}{filler[offset:]}"
        assert redactor.mask(text) == f"{filler[:offset]}{MASK}{filler[offset:]}"
    assert redactor.mask(filler * 1000) == filler * 1000


def test_a_mask_that_completes_a_long_secret_is_handled_as_without_the_screen() -> None:
    """Replacing `first` by `***` spells the other secret, whose own characters in the text
    are placed to hold none of the screen's words: it must still be searched, as before."""
    tokens = [secrets.token_urlsafe(24) for _ in range(6)]
    first, rest = secrets.token_urlsafe(40), secrets.token_urlsafe(21)
    redactor = Redactor([*tokens, first, f"{MASK}{rest}"], engine="screen")
    stride = redactor._screen.stride  # type: ignore[attr-defined]
    assert stride and len(MASK + rest) >= stride + 7
    padding = "." * ((1 - len(first)) % stride)  # `rest` starts 1 byte past a word
    text = f"{padding}{first}{rest} b {tokens[0]}"
    screened = redactor.mask(text)
    with mock.patch.object(redact._Screen, "suspects", return_value=redactor._screen.covered):
        assert screened == redactor.mask(text) == f"{padding}{MASK} b {MASK}"
