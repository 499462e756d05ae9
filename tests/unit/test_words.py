import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from domain.words import count_words


def test_seed_examples():
    assert count_words("Hola mundo, esto es una prueba") == 6
    assert count_words("Visita https://bezhas.com para más info") == 4


def test_url_hosts_are_free_but_their_paths_count():
    # Issue 12: a URL's path, query and fragment are words; so is a host without a public suffix.
    assert count_words("mira www.bezhas.com/precios ahora") == 3
    assert count_words("HTTPS://EXAMPLE.COM http://a.b/c?d=e") == 5


def test_emoji_and_punctuation_alone_are_not_words():
    assert count_words("😀 🎉 !!! ... — ¿?") == 0
    assert count_words("hola😀mundo 👍") == 2  # issue 12: an emoji between words no longer joins them
    assert count_words("") == 0


def test_digits_and_non_latin_scripts_count():
    assert count_words("2026 año 新年 快乐 привет") == 7  # each Han character is a word (issue 12)


def test_html_is_counted_raw_not_escaped():
    # The original escaped before counting, so "&lt;b&gt;" leaked in as words (10 here).
    # Since issue 12 punctuation separates words, so the tag names count: b hola b a b.
    assert count_words("<b>hola</b> a & b") == 5


def _visible_letter(ch: str) -> bool:
    """Not a filler or modifier letter, and still a letter or digit after NFKC."""
    if unicodedata.category(ch) == "Lm" or "FILLER" in unicodedata.name(ch, ""):
        return False
    return any(unicodedata.category(c)[0] in "LN" for c in unicodedata.normalize("NFKC", ch))


words = st.text(alphabet=st.characters(categories=["L", "Nd"]).filter(_visible_letter), min_size=1, max_size=12)
noise = st.text(alphabet=st.sampled_from("!?.,;:-—…😀🎉👍 "), max_size=6)


@given(st.lists(words, max_size=40), noise)
def test_count_is_at_least_the_number_of_letter_tokens(tokens, junk):
    # At least: Han and kana count per character (exact counts: tests/unit/test_words_hostile.py).
    text = " ".join(tokens) + " " + " ".join(junk.split())
    assert count_words(text) >= len(tokens)


free_urls = st.sampled_from(["https://x.io", "www.b.org", "HTTPS://EXAMPLE.COM/", "http://10.0.0.1:8080", "bezhas.com"])


@given(st.lists(words, max_size=20), st.lists(free_urls, max_size=5))
def test_urls_without_a_path_never_change_the_count(tokens, urls):
    assert count_words(" ".join(tokens + urls)) == count_words(" ".join(tokens))
