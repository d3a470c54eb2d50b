"""Penn Treebank tokens back to plain text: "A dog does n't swim , it runs ." -> "A dog doesn't swim, it runs."

Flickr30k's captions were released tokenised the way the Penn Treebank is (Marcus et al. 1993, "Building a Large
Annotated Corpus of English: The Penn Treebank", https://aclanthology.org/J93-2004/): every punctuation mark is a
word of its own (" ,", " ."), contractions are split ("does n't", "it 's", "dog 's"), and in some copies brackets are
spelled -LRB- / -RRB- and quotes `` and ''. Flickr30k Entities' Sentences files (`data/flickr30k_entities.py`) and
Kaggle's `results.csv` (`data/flickr30k.py`) carry that text; Karpathy's split file and the hub's CSV give plain text
("raw"). A language model pretrained on plain text and then teacher-forced on " ." and "n't" reads a style it never
saw, so such captions are turned back into plain text before they reach it, the way `sacremoses`' or NLTK's
Treebank detokenisers do it, in a few readable rules (no dependency):

- punctuation and closing brackets join the word before: "grass ." -> "grass.", "men , women" -> "men, women";
- clitics join the word before: "does n't" -> "doesn't", "ca n't" -> "can't", "dog 's" -> "dog's", "we 're";
- opening brackets and "$" join the word after: "( left )" -> "(left)", "$ 5" -> "$5";
- -LRB- -RRB- -LSB- -RSB- -LCB- -RCB- become ( ) [ ] { }; `` and '' become a double quote;
- a lone double quote opens (joins the word after) and then closes (joins the word before), in turns;
- a lone ' joins the word before (a plural's possessive, "the dogs ' toys", or a closing quote).

Plain text comes out unchanged (each rule needs a token that plain text does not have), so a caption may be
detokenised twice, or detokenised without knowing whether it was tokenised.

`detokenize(text)` gives the plain text; `join_tokens(tokens)` also says where each token landed, so that a word
marked in the tokenised caption (a Flickr30k Entities phrase) can be found in the plain one (`word_of_token`).

Read next: `data/flickr30k_entities.py` (its captions, detokenised for the pointing game), `data/flickr30k.py`.
"""

from __future__ import annotations

# Tokens that join the word before them (compared in lower case: "N'T" too), after -RRB- and the like are spelled out.
JOIN_LEFT = {",", ".", "!", "?", ":", ";", "%", "...", ")", "]", "}", "'", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"}
# Tokens that join the word after them.
JOIN_RIGHT = {"(", "[", "{", "$"}
# Penn Treebank's names for brackets and its directed quotes, and what they stand for.
SPELLED = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}", "``": '"', "''": '"'}


def join_tokens(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Plain text from Penn Treebank tokens, and each token's [start, end) in it (see the module docstring)."""
    text = ""
    spans: list[tuple[int, int]] = []
    glue_next = True  # no space before the first token, nor after an opening bracket or quote
    quote_open = False  # a lone " has opened a quotation that has not closed yet
    for token in tokens:
        shown = SPELLED.get(token, token)
        if token in ('"', "``", "''"):  # a quote: `` opens, '' closes, a lone " does what the last one did not
            opens = token == "``" or (token == '"' and not quote_open)
            quote_open = opens
            joins_left, joins_right = not opens, opens
        else:
            joins_left, joins_right = shown.lower() in JOIN_LEFT, shown in JOIN_RIGHT
        if not (glue_next or joins_left):
            text += " "
        spans.append((len(text), len(text) + len(shown)))
        text += shown
        glue_next = joins_right
    return text, spans


def detokenize(text: str) -> str:
    """`text` (a Penn Treebank tokenised caption, or plain text) as plain text: "grass ." -> "grass."."""
    return join_tokens(text.split())[0]


def word_of_token(text: str, spans: list[tuple[int, int]]) -> list[int]:
    """For each token's span in `text` (from `join_tokens`), the index of the white-space separated word of `text`
    that holds it: "does n't" -> "doesn't" puts both tokens in the same word."""
    return [text[:start].count(" ") for start, _ in spans]
