"""Word counting: what a message costs is decided here and nowhere else.

The rule (also in docs/billing.md), applied by `count_words`:

1. The text is normalised with NFKC, so fullwidth, mathematical, circled, squared and parenthesized
   letters become plain letters. Negative circled/squared letters and regional-indicator letters,
   which NFKC leaves alone, are mapped to their letters too.
2. Whitespace (every Z* character, controls) is a word separator. So is every invisible character:
   format characters (Cf: zero-width space/joiners, bidi marks, word joiner, soft hyphen, tags...),
   every Default_Ignorable_Code_Point (variation selectors, U+034F, U+115F/U+1160/U+3164/U+FFA0
   hangul fillers, U+17B4/U+17B5, U+180B-U+180F...), and blanks such as U+2800 braille blank.
3. URLs are found on the visible text (invisible characters removed, so they can neither make nor
   break a URL). A URL is `scheme://host...` with scheme http, https, ftp, ftps, sftp, ws or wss,
   or a bare host whose last label is an ICANN public suffix (bundled Public Suffix List; no
   network). Free: the scheme, the port, one leading `www` label and the registrable domain
   (`bezhas.com`, `bbc.co.uk`), or an IP literal. Everything else in it is ordinary text that
   counts, after percent-decoding: user info, other host labels (`docs.` in `docs.bezhas.com`),
   the host of a scheme URL without a public suffix (`http://intranet`), path, query, fragment.
   `www.this` is not a URL (`this` is no public suffix), so it is two words.
4. A word is then a run of letters, digits and combining marks holding at least one letter or
   digit; any other character (punctuation, symbols, emoji, apostrophes, hyphens) ends it:
   `don't`, `e-mail` and `uno.dos` are two words; modifier letters that look like punctuation
   (U+02BC `ʼ`, U+02D0 `ː`, U+A4F8 `ꓸ`, ...) are punctuation. Braille cells count as letters. Digits joined
   by `. , : / ' -` with no letter on either side are one number (`1.000,50`, `23/10/2026`).
   Each Han ideograph and each kana counts as one word (those scripts write no spaces);
   other scripts written without spaces (Thai, Lao, Khmer, Myanmar) count per run.

So hiding separators, styling letters or wrapping words in URLs never makes text cheaper, and
inserting an invisible character anywhere never lowers a count.
"""

import bisect
import re
import unicodedata
from collections.abc import Callable, Iterator
from urllib.parse import unquote

from publicsuffixlist import PublicSuffixList

# Default_Ignorable_Code_Point (DerivedCoreProperties.txt) plus blanks that render as empty space.
_INVISIBLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x16FE4, 0x16FE4),
    (0x1BCA0, 0x1BCA3),
    (0x1D159, 0x1D159),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
# Modifier letters that look like apostrophes, primes, colons, dots or underscores.
_PUNCTUATION_LIKE_RANGES = (
    (0x02B9, 0x02BF),
    (0x02C6, 0x02D1),
    (0x02EC, 0x02EC),
    (0x02EE, 0x02EE),
    (0x0559, 0x0559),
    (0x07FA, 0x07FA),
    (0xA4F8, 0xA4FD),
    (0xA717, 0xA71F),
    (0xA788, 0xA788),
)
# Scripts written without spaces whose characters each count as a word: Han and kana.
_PER_CHARACTER_RANGES = (
    (0x3005, 0x3007),
    (0x3021, 0x3029),
    (0x3038, 0x303C),
    (0x3041, 0x309F),
    (0x30A1, 0x30FF),
    (0x31F0, 0x31FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x1AFF0, 0x1B16F),
    (0x20000, 0x2FA1F),
    (0x30000, 0x323AF),
)
_BRAILLE = ((0x2801, 0x28FF),)
_ENCLOSED_LETTER = re.compile(r"(?:LATIN (?:CAPITAL|SMALL) LETTER|REGIONAL INDICATOR SYMBOL LETTER) ([A-Z])$")

# Step 1 maps invisible characters to _SENTINEL and whitespace (controls included) to a space, so
# the low control codes are free to stand for character classes in step 2.
_SENTINEL = "\x00"
_IDEOGRAPH, _MARK, _OTHER = "\x02", "\x03", "\x04"  # per-character word, combining mark, non-word


def _within(ranges: tuple[tuple[int, int], ...]) -> Callable[[int], bool]:
    return lambda cp: any(lo <= cp <= hi for lo, hi in ranges)


_invisible, _punctuation_like = _within(_INVISIBLE_RANGES), _within(_PUNCTUATION_LIKE_RANGES)
_per_character, _braille = _within(_PER_CHARACTER_RANGES), _within(_BRAILLE)


def _prepared(cp: int) -> str:
    """Step 1, after NFKC: separators, enclosed letters and punctuation-like letters."""
    ch = chr(cp)
    category = unicodedata.category(ch)
    if _invisible(cp) or category == "Cf":
        return _SENTINEL
    if category[0] == "Z" or category == "Cc" or ch.isspace():
        return " "
    if _punctuation_like(cp):
        return "'"
    if category == "So" and (m := _ENCLOSED_LETTER.search(unicodedata.name(ch, ""))):
        return m.group(1)  # negative circled/squared and regional-indicator letters: NFKC keeps them
    return ch


def _classified(cp: int) -> str:
    """Step 2, for non-ASCII characters: a one-character class, so the patterns below stay ASCII."""
    category = unicodedata.category(chr(cp))
    if _per_character(cp) and category[0] in "LN":
        return _IDEOGRAPH
    if category == "Nd":
        return "0"
    if category[0] in "LN" or _braille(cp):
        return "a"
    return _MARK if category[0] == "M" else _OTHER


class _Table(dict[int, str | int]):
    """A str.translate table filled on first sight of each code point (bounded, then uncached)."""

    def __init__(self, rule: Callable[[int], str], ascii_rule: Callable[[int], str | int]):
        super().__init__((cp, ascii_rule(cp)) for cp in range(128))
        self._rule = rule

    def __missing__(self, cp: int) -> str:
        value = self._rule(cp)
        if len(self) < 65_536:
            self[cp] = value
        return value


_PREPARE = _Table(_prepared, lambda cp: " " if cp < 32 or cp == 127 else cp)
_CLASSIFY = _Table(_classified, lambda cp: cp)

_WORDISH = "A-Za-z0-9" + _IDEOGRAPH + _MARK
_WORD = re.compile(  # an ideograph or kana; a number with separators; a run of letters/digits/marks
    rf"{_IDEOGRAPH}"
    rf"|(?<![A-Za-z0-9{_MARK}])[0-9]+(?:[.,:/'\-][0-9]+)+(?![A-Za-z0-9{_MARK}])"
    rf"|[A-Za-z0-9][A-Za-z0-9{_MARK}]*"  # marks before the first letter change nothing: not matched
)
_LABEL = rf"[{_WORDISH}](?:[{_WORDISH}\-]*[{_WORDISH}])?"
_URL = re.compile(
    rf"(?<![{_WORDISH}])(?P<scheme>(?:https?|ftps?|sftp|wss?)://)"
    rf"(?:(?P<userinfo>[^\s/?#@]*)@)?"
    rf"(?P<host>\[[0-9a-f:.]*\]|{_LABEL}(?:\.{_LABEL})*)?"
    rf"(?::[0-9]{{1,5}}(?![0-9]))?"
    rf"|(?<![{_WORDISH}.\-])(?P<bare>{_LABEL}(?:\.{_LABEL})+)(?::[0-9]{{1,5}}(?![0-9]))?",
    re.IGNORECASE,
)
_ANCHOR = re.compile(rf"[{_WORDISH}]\.[{_WORDISH}]|://")  # every URL has one of these
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_PSL = PublicSuffixList(only_icann=True, accept_unknown=False)  # the bundled list; never fetched


def _prepare(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_PREPARE)


def _classify(prepared: str) -> str:
    return prepared if prepared.isascii() else prepared.translate(_CLASSIFY)


def _charged_host(host: str) -> tuple[int, int] | None:
    """The span of `host` that counts as words; None when `host` is no domain with a public suffix."""
    if host.startswith("[") or _IPV4.fullmatch(host):
        return 0, 0
    if host[host.rfind(".") + 1 :].isdigit():
        return None  # no top-level domain is numeric: `1.250` is a number
    registrable = _PSL.privatesuffix(host.lower())
    if registrable is None:
        return None
    start, end = 0, max(0, len(host) - len(registrable) - 1)  # the labels left of the registrable domain
    if end >= 3 and host[:3].lower() == "www" and host[3] == ".":
        start = min(4, end)  # one leading `www` label is free
    return start, end


def _url_matches(classes: str) -> Iterator[re.Match[str]]:
    """`_URL` matches, looked for only in the space-delimited tokens that hold an anchor."""
    token_end = 0
    for anchor in _ANCHOR.finditer(classes):
        if anchor.start() < token_end:
            continue
        token_start = classes.rfind(" ", 0, anchor.start()) + 1
        space = classes.find(" ", anchor.end())
        token_end = len(classes) if space < 0 else space
        yield from _URL.finditer(classes, token_start, token_end)


def _urls(classes: str, visible: str) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Each URL as (start, end, charged spans): all of [start, end) is free but those spans.

    `classes` is `visible` in character classes (ASCII as is), position for position.
    """
    urls: list[tuple[int, int, list[tuple[int, int]]]] = []
    skip_until = 0
    for m in _url_matches(classes):
        if m.start() < skip_until:
            continue  # inside the path of the previous URL: that is text
        charged: list[tuple[int, int]] = []
        if m.group("bare") is not None:
            host_start = m.start("bare")
            labels = _charged_host(visible[host_start : m.end("bare")])
            if labels is None:
                continue  # no public suffix: not a URL, plain text
        else:
            host_start, host_end = m.span("host")
            host = visible[host_start:host_end] if host_start >= 0 else ""
            if m.group("userinfo") is not None:
                charged.append(m.span("userinfo"))
            labels = (_charged_host(host) or (0, len(host))) if host else (0, 0)
        charged.append((host_start + labels[0], host_start + labels[1]))
        space = classes.find(" ", m.end())
        end = len(classes) if space < 0 else space
        charged.append((m.end(), end))  # path, query and fragment
        urls.append((m.start(), end, charged))
        skip_until = end
    return urls


def count_words(text: str) -> int:
    """The number of billable words in `text`, by the rule in this module's docstring."""
    prepared = _prepare(text)
    classes = _classify(prepared)
    if _SENTINEL in prepared:  # find URLs on the visible text, then map their spans back
        pieces = prepared.split(_SENTINEL)
        visible, visible_classes = "".join(pieces), classes.replace(_SENTINEL, "")
        starts = [0]
        for piece in pieces[:-1]:
            starts.append(starts[-1] + len(piece))
    else:
        visible, visible_classes, starts = prepared, classes, [0]
    if "." not in visible and "/" not in visible:
        return len(_WORD.findall(classes))  # no URL possible

    def original(pos: int) -> int:
        """The index in `prepared` of `visible[pos]`."""
        return pos + bisect.bisect_right(starts, pos) - 1

    out: list[str] = []
    cursor = 0
    for start, end, charged in _urls(visible_classes, visible):
        out.append(classes[cursor : original(start)])
        for a, b in charged:
            if b > a:  # percent-decoded, then prepared and classified like any text
                out.append(" " + _classify(_prepare(unquote(prepared[original(a) : original(b - 1) + 1]))) + " ")
        out.append(" ")
        cursor = original(end - 1) + 1
    out.append(classes[cursor:])
    return len(_WORD.findall("".join(out)))
