from hypothesis import given
from hypothesis import strategies as st

from domain.words import count_words


def test_seed_examples():
    assert count_words("Hola mundo, esto es una prueba") == 6
    assert count_words("Visita https://bezhas.com para más info") == 4


def test_www_links_and_urls_are_not_words():
    assert count_words("mira www.bezhas.com/precios ahora") == 2
    assert count_words("HTTPS://EXAMPLE.COM http://a.b/c?d=e") == 0


def test_emoji_and_punctuation_alone_are_not_words():
    assert count_words("😀 🎉 !!! ... — ¿?") == 0
    assert count_words("hola😀mundo 👍") == 1
    assert count_words("") == 0


def test_digits_and_non_latin_scripts_count():
    assert count_words("2026 año 新年 快乐 привет") == 5


def test_html_is_counted_raw_not_escaped():
    # The original escaped before counting, so "&lt;b&gt;" leaked in as words.
    assert count_words("<b>hola</b> a & b") == 3


words = st.text(alphabet=st.characters(categories=["L", "Nd"]), min_size=1, max_size=12)
noise = st.text(alphabet=st.sampled_from("!?.,;:-—…😀🎉👍 "), max_size=6)


@given(st.lists(words, max_size=40), noise)
def test_count_equals_number_of_letter_tokens(tokens, junk):
    text = " ".join(tokens) + " " + " ".join(junk.split())
    assert count_words(text) == len(tokens)


@given(st.lists(words, max_size=20), st.lists(st.sampled_from(["https://x.io/a", "www.b.org", "http://c"]), max_size=5))
def test_urls_never_change_the_count(tokens, urls):
    assert count_words(" ".join(tokens + urls)) == len(tokens)
