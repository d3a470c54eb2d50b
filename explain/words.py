"""Words from tokens: the unit a map is drawn for.

The model writes tokens, and a reader reads words. A byte-level BPE tokenizer (Qwen3's, or the demo's) marks the start
of a word with the space in front of it: " a", " red", " circ" + "le", ",". So a word is a token that starts with
white space, plus the tokens after it that do not (a rare word's second piece, a comma). A map is drawn for each word,
from all of its tokens (`explain/attention.py` averages their maps, `explain/occlusion.py` adds their log-probability
drops: the word's probability is the product of its tokens').

Read next: `explain/attention.py`, `explain/occlusion.py`.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Protocol


class Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


@dataclass(frozen=True)
class Word:
    """One written word: its text and the tokens [start, end) of the output that spell it."""

    text: str
    start: int
    end: int

    @property
    def key(self) -> str:
        """The word to match against names ("Circle," -> "circle")."""
        return clean(self.text)


def clean(text: str) -> str:
    """Lower case, without the punctuation around it: the form words are compared in."""
    return text.strip().strip(string.punctuation).lower()


def split_words(tokenizer: Decoder, ids: list[int]) -> list[Word]:
    """The words of the output `ids` (without end-of-text), each with its token span.

    Each token's text is what it adds to the decoded prefix, so multi-byte characters split over tokens come out
    whole. A token with no visible text (a special token) joins the word before it.
    """
    words: list[Word] = []
    text, start = "", 0
    previous = ""
    for i in range(len(ids)):
        decoded = tokenizer.decode(ids[: i + 1])
        piece, previous = decoded[len(previous) :], decoded
        if i > 0 and piece[:1].isspace() and text.strip():  # a space starts the next word
            words.append(Word(text.strip(), start, i))
            text, start = "", i
        text += piece
    if text.strip():
        words.append(Word(text.strip(), start, len(ids)))
    elif words and len(ids) > words[-1].end:  # trailing tokens with no text belong to the last word
        words[-1] = Word(words[-1].text, words[-1].start, len(ids))
    return words
