"""Penn Treebank tokens back to plain text (data/detokenize.py): each rule on the forms Flickr30k's captions have, plain
text left alone, and the place of every token in the plain text (what the pointing game needs to find a word)."""

from __future__ import annotations

import pytest

from data.detokenize import detokenize, join_tokens, word_of_token


@pytest.mark.parametrize(
    ("tokenised", "plain"),
    [
        ("A dog runs across the grass .", "A dog runs across the grass."),  # the final " ." (Kaggle's results.csv)
        (
            "Two young , White males are outside near many bushes .",
            "Two young, White males are outside near many bushes.",
        ),  # fmt: skip
        ("A dog does n't swim ; it ca n't .", "A dog doesn't swim; it can't."),
        ("The man 's shirt and the dogs ' bones", "The man's shirt and the dogs' bones"),
        ("It 's a girl who 's sure they 're done , I 'm told", "It's a girl who's sure they're done, I'm told"),
        ('A sign that says " Stop " .', 'A sign that says "Stop".'),
        ("A sign that says `` Stop '' !", 'A sign that says "Stop"!'),
        ("A man ( left ) and a woman -LRB- right -RRB- ?", "A man (left) and a woman (right)?"),
        ("It costs $ 5 , or 50 % off ...", "It costs $5, or 50% off..."),
        ("HE DOES N'T", "HE DOESN'T"),
    ],
)
def test_each_rule(tokenised, plain):
    assert detokenize(tokenised) == plain


@pytest.mark.parametrize(
    "text",
    ["A dog doesn't swim, it runs. It's the dogs' \"ball\" (red), $5.", "Two people on a bench - one is asleep", ""],
)
def test_plain_text_is_left_alone(text):
    assert detokenize(text) == text


def test_every_token_is_found_in_its_plain_word():
    tokens = "The man 's shirt does n't hide his shadow , and the street is \" busy \" .".split()
    text, spans = join_tokens(tokens)
    assert text == "The man's shirt doesn't hide his shadow, and the street is \"busy\"."
    assert [text[a:b] for a, b in spans] == tokens  # each token is in the text as it was (brackets aside)
    words = text.split()
    holders = [words[i] for i in word_of_token(text, spans)]
    assert holders[:5] == ["The", "man's", "man's", "shirt", "doesn't"]
    assert holders[-5:] == ["is", '"busy".', '"busy".', '"busy".', '"busy".']
    spelled, spans = join_tokens(["-LRB-", "left", "-RRB-"])
    assert [spelled[a:b] for a, b in spans] == ["(", "left", ")"]


def test_plain_words_line_up_with_qwen3_tokens(qwen3_tokenizer_dir):
    """The pointing game finds a word's tokens by the spaces before them (explain/words.py): the plain text's words
    must be the real tokenizer's words, one for one."""
    from explain.words import split_words
    from weights_loader import load_tokenizer

    tokenizer = load_tokenizer(qwen3_tokenizer_dir)
    for tokenised in (
        "The man 's shirt does n't hide his shadow , and the street is \" busy \" .",
        "A girl wearing a `` Hello Kitty '' shirt ca n't see -LRB- left -RRB- .",
    ):
        text = detokenize(tokenised)
        words = split_words(tokenizer, tokenizer.encode(" " + text))
        assert [w.text for w in words] == text.split()
