"""Issue 12, "Words for free": the word counter must not be gameable.

One test per finding string, then properties (hypothesis) that hold for any input.
"""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.words import count_words

TEN = "uno dos tres cuatro cinco seis siete ocho nueve diez".split()

# Zero-width and blank characters that render as nothing or as a gap but are not ASCII spaces.
INVISIBLE = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\ufeff",
    "\u00ad",
    "\u034f",
    "\u180e",
    "\u2800",
    "\u3164",
    "\uffa0",
    "\u115f",
    "\u1160",
    "\u17b4",
    "\u17b5",
    "\u2061",
    "\u2062",
    "\u2063",
    "\u2064",
    "\u206a",
    "\ufe0f",
    "\ufe00",
    "\U000e0020",
    "\U000e0061",
    "\U000e0101",
    "\u061c",
    "\u200e",
    "\u202e",
    "\u2066",
    "\U0001d173",
    "\U0001bca0",
    "\u180b",
]
WHITESPACE = [
    " ",
    "\t",
    "\n",
    "\r",
    "\u00a0",
    "\u1680",
    "\u2002",
    "\u2009",
    "\u202f",
    "\u205f",
    "\u3000",
    "\u2028",
    "\u2029",
    "\u0085",
    "\x0b",
    "\x0c",
]


# --- the findings, exactly as reported --------------------------------------------------------------


@pytest.mark.parametrize("joiner", ["\u200b", "\u200d", "\u2800", "\u3164", "\u180e"])
def test_ten_words_joined_by_an_invisible_character_are_ten_words(joiner):
    assert count_words(joiner.join(TEN)) == 10


@pytest.mark.parametrize("joiner", INVISIBLE)
def test_every_invisible_character_separates_words(joiner):
    assert count_words(joiner.join(TEN)) == 10
    assert count_words(joiner + " ".join(TEN) + joiner) == 10


@pytest.mark.parametrize(
    "text, words",
    [
        ("ⓗⓔⓛⓛⓞ", 1),  # circled (NFKC folds them)
        ("ⓗⓔⓛⓛⓞ ⓦⓞⓡⓛⓓ", 2),
        ("🄷🄴🄻🄻🄾", 1),  # squared
        ("🄷🄴🄻🄻🄾 🅆🄾🅁🄻🄳", 2),
        ("⒣⒠⒧⒧⒪", 5),  # parenthesized: NFKC gives (h)(e)(l)(l)(o)
        ("🅗🅔🅛🅛🅞 🅦🅞🅡🅛🅓", 2),  # negative circled: NFKC leaves these alone
        ("🅷🅴🅻🅻🅾 🆆🅾🆁🅻🅳", 2),  # negative squared: likewise
        ("🇭🇪🇱🇱🇴 🇼🇴🇷🇱🇩", 2),  # regional-indicator letters (a flag is one word)
        ("ｈｅｌｌｏ ｗｏｒｌｄ", 2),  # fullwidth
        ("𝐡𝐞𝐥𝐥𝐨 𝔴𝔬𝔯𝔩𝔡", 2),  # mathematical alphanumerics
        ("①②③ ❶❷❸", 2),  # circled digits
    ],
)
def test_enclosed_and_styled_letters_are_letters(text, words):
    assert count_words(text) == words


def test_www_prefixed_words_are_words():
    assert count_words("www.this www.whole www.sentence") == 6  # not hosts: `this` is no public suffix
    assert count_words("WWW.THIS") == 2


def test_a_url_path_that_spells_a_sentence_is_charged():
    url = "https://bezhas.com/this/is/a/whole/sentence/that/should/cost/money"
    assert count_words(url) == 9
    assert count_words("https://bezhas.com/this-is_a.whole+sentence?that=should&cost=money#really") == 10
    assert count_words("bezhas.com/this/is/a/sentence") == 4
    assert count_words("https://bezhas.com/this%20is%20a%20sentence") == 4  # percent-decoded first
    assert count_words("https://bezhas.com/caf%C3%A9%E2%80%8Bcon%E2%80%8Bleche") == 3  # decoded ZWSP separates


def test_host_labels_left_of_the_registrable_domain_are_charged():
    assert count_words("https://this.is.a.whole.sentence.bezhas.com") == 5
    assert count_words("https://www.bezhas.com") == 0  # one leading www is free
    assert count_words("docs.bezhas.com") == 1


def test_only_well_formed_urls_are_free():
    assert count_words("https://bezhas.com") == 0
    assert count_words("Visita bezhas.com para más info") == 4  # a bare host with a real public suffix
    assert count_words("http://192.168.0.1:8080/") == 0  # an IP literal with a scheme
    assert count_words("https://user:secret@bezhas.com") == 2  # user info is not the host
    assert count_words("hola.mundo") == 2  # `mundo` is no public suffix
    assert count_words("http://intranet/inicio") == 2  # no public suffix: the host is words
    assert count_words("gopher://bezhas.com") == 1  # unknown scheme: a word before a free host


def test_words_joined_by_punctuation_or_emoji_are_separate_words():
    assert count_words("uno.dos.tres.cuatro") == 4
    assert count_words("uno😀dos😀tres") == 3
    assert count_words("uno_dos-tres/cuatro|cinco·seis") == 6
    assert count_words("uno\u02bcdos\ua4f8tres") == 3  # letters that look like punctuation


def test_numbers_with_separators_are_one_word():
    assert count_words("cuesta 1.000,50 € el 23/10/2026 a las 10:30") == 7


def test_scripts_without_spaces_count_each_ideograph_and_kana():
    assert count_words("日本語を勉強しています") == 11
    assert count_words("我爱你") == 3
    assert count_words("Tokyo東京") == 3


def test_marks_stay_inside_their_word():
    assert count_words("नमस्ते दुनिया") == 2  # Devanagari vowel signs and virama are marks
    assert count_words("e\u0301le\u0300ve") == 1
    assert count_words("\u0301\u0301 \u20dd") == 0  # marks alone are not words


# --- properties ---------------------------------------------------------------------------------------


def _visible_letter(ch: str) -> bool:
    """A letter or digit that shows as one: not a filler, not a modifier letter, and NFKC keeps a letter."""
    if unicodedata.category(ch) == "Lm" or "FILLER" in unicodedata.name(ch, ""):
        return False
    return any(unicodedata.category(c)[0] in "LN" for c in unicodedata.normalize("NFKC", ch))


letters = st.characters(categories=["L", "Nd"]).filter(_visible_letter)
LETTER_SCRIPTS = [
    "abcdefghijklmnopqrstuvwxyzñçé",
    "αβγδεζηθικλμνξοπρστυφχψω",
    "абвгдежзийклмнопрстуфхцчшщыэюя",
    "אבגדהוזחטיכלמנסעפצקרשת",
    "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह",
    "가나다라마바사아자차카타파하",
    "ⓐⓑⓒⓓⓔⓕⓖⓗⓘⓙⓚⓛⓜⓝⓞⓟⓠⓡⓢⓣⓤⓥⓦⓧⓨⓩ",
    "🅰🅱🅲🅳🅴🅵🅶🅷🅸🅹🅺🅻🅼🅽🅾🅿",
]
letter_words = st.sampled_from(LETTER_SCRIPTS).flatmap(lambda s: st.text(alphabet=s, min_size=1, max_size=10))
script_words = st.sampled_from([*LETTER_SCRIPTS, "0123456789"]).flatmap(
    lambda s: st.text(alphabet=s, min_size=1, max_size=10)
)
separators = st.text(alphabet=st.sampled_from(INVISIBLE + WHITESPACE), min_size=1, max_size=3)
host = st.sampled_from(
    ["bezhas.com", "www.bezhas.com", "example.co.uk", "10.0.0.1", "[::1]", "xn--caf-dma.es", "café.es"]
)


@settings(max_examples=300)
@given(st.lists(st.text(alphabet=letters, min_size=1, max_size=8), min_size=1, max_size=20), st.data())
def test_n_visible_letter_words_cost_at_least_n(words, data):
    joiners = [data.draw(separators) for _ in words]
    text = "".join(w + j for w, j in zip(words, joiners, strict=True))
    assert count_words(text) >= len(words)


@settings(max_examples=300)
@given(st.lists(script_words, min_size=1, max_size=20), st.data())
def test_n_words_of_any_script_cost_exactly_n(words, data):
    text = data.draw(separators) + "".join(w + data.draw(separators) for w in words)
    assert count_words(text) == len(words)


@settings(max_examples=500)
@given(
    st.lists(
        st.sampled_from([*"abcwxyzéñ019 .:/-_?&=#%@+😀日", "https://", "www.", ".com", ".es", "%20"]), max_size=30
    ),
    st.data(),
)
def test_inserting_invisible_characters_never_lowers_the_count(pieces, data):
    text = "".join(pieces)
    before = count_words(text)
    for _ in range(data.draw(st.integers(1, 5))):
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.sampled_from(INVISIBLE)) + text[at:]
    assert count_words(text) >= before


@settings(max_examples=300)
@given(
    host,
    st.lists(letter_words, min_size=1, max_size=12),
    st.sampled_from([*"/-_.+", "%20", "%2F"]),
    st.sampled_from(["https://", "http://", ""]),
)
def test_url_exemptions_never_swallow_the_path(host_name, words, sep, scheme):
    if not scheme and host_name in ("10.0.0.1", "[::1]"):
        scheme = "https://"  # without a scheme these are not URLs at all
    url = f"{scheme}{host_name}/{sep.join(words)}"
    assert count_words(url) == len(words)
    query = f"{scheme}{host_name}/?" + "&".join(f"{w}={w}" for w in words) + "#" + words[0]
    assert count_words(query) == 2 * len(words) + 1


any_text = st.lists(
    st.one_of(
        st.characters(), st.sampled_from(["https://", "www.", ".com", ".co.uk", "%E2%80%8B", "%", "@", ":80", "[::1]"])
    ),
    max_size=60,
).map("".join)


@settings(max_examples=500)
@given(any_text)
def test_any_text_is_counted_without_error(text):
    assert 0 <= count_words(text) <= len(unicodedata.normalize("NFKC", text))
