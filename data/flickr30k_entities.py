"""Flickr30k Entities: which words of a Flickr30k caption name which boxes in the photo.

Plummer et al. 2015 ("Flickr30k Entities: Collecting Region-to-Phrase Correspondences for Richer Image-to-Sentence
Models", https://arxiv.org/abs/1505.04870) marked the noun phrases of Flickr30k's 158k captions, linked the phrases
that name the same thing into entities, and drew that entity's boxes. The annotations are public on GitHub
(https://github.com/BryanPlummer/flickr30k_entities: `annotations.zip`, and `train.txt` / `val.txt` / `test.txt`
listing the image ids of each split); the photos are Flickr30k's own (`data/flickr30k.py`). Unzipped:

    Sentences/1000092795.txt   the image's 5 captions, one a line, phrases marked [/EN#<entity>/<type>... words]:
        [/EN#1/people Two young guys] with [/EN#2/bodyparts shaggy hair] look at [/EN#3/bodyparts their hands] ...
    Annotations/1000092795.xml the boxes, PASCAL VOC style: <size><width>, <height>; each <object> has one or more
        <name> (entity ids) and a <bndbox> (xmin, ymin, xmax, ymax, 1-based pixels), or <nobndbox>1</nobndbox>
        (not visible) or <scene>1</scene> (the whole scene), and no box.
    UNRELATED_CAPTIONS         "<image id> <caption number, from 1>" a line: captions that do not describe their photo

The real files have these quirks, which the sample in `tests/test_explain.py` copies: one <object> may name several
entities (one box for both); one entity may have several boxes (each person of "two men"); `<scene>` and `<nobndbox>`
are both written, 0 or 1, and an entity can be both; the captions are Penn Treebank tokenised ("Two young , White
males", "does n't", "man 's", a final " .").

`read_entities(root, split=...)` turns that into `EntityImage`s: the captions' words with each phrase's word span,
entity id and types, and each entity's boxes in 0-based pixels, (x0, y0, x1, y1) with x1 and y1 excluded, as the
`<size>` of the XML measures them (a resized copy of the photos needs them rescaled: `explain/pointing/flickr.py` checks).
Entity 0 ("notvisual") has no box. `plain_text` gives a caption back as plain text (`data/detokenize.py`), with the
place of each tokenised word in it.

A phrase's *head noun* (`head_word`) is the word the pointing game maps. The phrases are short noun phrases that
annotators marked, so a few rules find it, in this order, without a part-of-speech tagger (NLTK's and spaCy's need
models that PyPI does not ship; docs/explain.md shows the rules on real phrases):

1. a quotation or a bracket at the end is dropped: 'the words " Happy Birthday "' -> words, "a man ( left )" -> man;
2. what trails the noun is dropped: punctuation, a possessive "'s", a number ("the number 4" -> number), an adverb
   ("a trampoline outside" -> trampoline; but "the outside" keeps it, a determiner makes it the noun);
3. before "of", a quantity is skipped and the noun after "of" taken ("a lot of people", "one of the dogs", "a kind
   of hat" -> people, dogs, hat), "full" looks back ("a basket full of apples" -> basket), and any other noun is the
   head ("a group of people" -> group, "a cup of coffee" -> cup: the noun that the article agrees with, as a
   parser would say);
4. otherwise the last word; and no head when that is not a noun ("of", "the two", "4"), so the phrase is skipped.

Read next: `explain/pointing/flickr.py` (the pointing game on these boxes), `data/detokenize.py`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from errors import UserError

from .detokenize import SPELLED, join_tokens, word_of_token

PHRASE = re.compile(r"\[/EN#(\d+)((?:/[^\s\]]+)+)\s+([^\]]*)\]")  # [/EN#12/people/other a man] -> 12, /people/.., a man
SPLITS = ("train", "val", "test")
UNRELATED_FILE = "UNRELATED_CAPTIONS"
NOT_VISUAL = "0"  # the entity id of every "notvisual" phrase: never annotated, never boxed


@dataclass(frozen=True)
class Phrase:
    """A marked noun phrase: its words [first, first + len(words)) in the caption, entity id and types."""

    text: str
    first_word: int
    entity: str
    types: tuple[str, ...]

    @property
    def words(self) -> list[str]:
        return self.text.split()


@dataclass
class EntitySentence:
    """One caption, unmarked (its Penn Treebank words joined by spaces), with its phrases."""

    text: str
    phrases: list[Phrase]
    unrelated: bool = False  # listed in UNRELATED_CAPTIONS: it does not describe the photo


@dataclass
class EntityImage:
    """One image's captions and boxes (see the module docstring)."""

    image_id: str
    width: int
    height: int
    sentences: list[EntitySentence]
    boxes: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    scene: set[str] = field(default_factory=set)  # entities that are the whole scene
    no_box: set[str] = field(default_factory=set)  # entities marked not visible


def parse_sentence(line: str) -> EntitySentence:
    """One line of a Sentences/*.txt file -> the caption without marks, and its phrases with word positions."""
    words: list[str] = []
    phrases: list[Phrase] = []
    position = 0
    for match in PHRASE.finditer(line):
        words.extend(line[position : match.start()].split())
        text = " ".join(match.group(3).split())
        types = tuple(t for t in match.group(2).split("/") if t)
        phrases.append(Phrase(text, len(words), match.group(1), types))
        words.extend(text.split())
        position = match.end()
    words.extend(line[position:].split())
    if "[/EN#" in PHRASE.sub("", line):
        raise ValueError(f"a phrase mark that is not [/EN#<id>/<type> words]: {line.strip()!r}")
    return EntitySentence(" ".join(words), phrases)


def plain_text(sentence: EntitySentence) -> tuple[str, list[int]]:
    """The caption as plain text ("does n't" -> "doesn't", "grass ." -> "grass.": `data/detokenize.py`), and for
    each of its tokenised words the index of the plain text's white-space word that holds it."""
    text, spans = join_tokens(sentence.text.split())
    return text, word_of_token(text, spans)


def parse_annotation(path: Path) -> tuple[int, int, dict[str, list[tuple[int, int, int, int]]], set[str], set[str]]:
    """One Annotations/*.xml file -> (width, height, boxes by entity id, scene ids, not-visible ids)."""
    root = ET.parse(path).getroot()
    width, height = (int(root.findtext(f"size/{key}", "0")) for key in ("width", "height"))
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    scene: set[str] = set()
    no_box: set[str] = set()
    for obj in root.iter("object"):
        names = [name.text.strip() for name in obj.findall("name") if name.text]
        box = obj.find("bndbox")
        if box is not None:
            # 1-based and inclusive in the file; 0-based with the far edge excluded here.
            x0, y0, x1, y1 = (int(float(box.findtext(key, "0"))) for key in ("xmin", "ymin", "xmax", "ymax"))
            for name in names:
                boxes.setdefault(name, []).append((x0 - 1, y0 - 1, x1, y1))
        else:
            if int(obj.findtext("scene", "0") or 0) > 0:
                scene.update(names)
            if int(obj.findtext("nobndbox", "0") or 0) > 0:
                no_box.update(names)
    return width, height, boxes, scene, no_box


def read_unrelated(path: Path) -> set[tuple[str, int]]:
    """UNRELATED_CAPTIONS -> {(image id, caption index from 0)}; the file numbers captions from 1, after a
    "# format: <imageID> <sentence number>" line."""
    unrelated = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) < 1:
            raise UserError(f"{path} line {number}: {line.strip()!r} is not '<image id> <caption number from 1>'")
        unrelated.add((fields[0], int(fields[1]) - 1))
    return unrelated


def read_entities(root: Path, split: str | None = "test", limit: int | None = None) -> list[EntityImage]:
    """The images of `split` (listed in root/{split}.txt; None: every Sentences/*.txt), up to `limit` of them.

    Captions listed in root/UNRELATED_CAPTIONS, when the file is there, are marked `unrelated`.
    Raises UserError when root has no Sentences/ or Annotations/ folder, a listed image lacks either file, or a
    file cannot be parsed (naming the file).
    """
    root = Path(root).expanduser()
    sentences_dir, annotations_dir = root / "Sentences", root / "Annotations"
    for folder in (sentences_dir, annotations_dir):
        if not folder.is_dir():
            raise UserError(
                f"{root} is not Flickr30k Entities: no {folder.name}/ folder (unzip annotations.zip from "
                "https://github.com/BryanPlummer/flickr30k_entities into it)"
            )
    if split is None:
        ids = sorted(p.stem for p in sentences_dir.glob("*.txt"))
        listed_in = "Sentences/"
    else:
        if split not in SPLITS:
            raise UserError(f"unknown Flickr30k Entities split {split!r}; accepted: {', '.join(SPLITS)}")
        listing = root / f"{split}.txt"
        if not listing.is_file():
            raise UserError(f"no {listing.name} in {root} (the list of the {split} split's image ids)")
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        listed_in = listing.name
    unrelated = read_unrelated(root / UNRELATED_FILE) if (root / UNRELATED_FILE).is_file() else set()
    images = []
    for image_id in ids[:limit]:
        sentence_file, annotation_file = sentences_dir / f"{image_id}.txt", annotations_dir / f"{image_id}.xml"
        for file in (sentence_file, annotation_file):
            if not file.is_file():
                raise UserError(f"image {image_id} (listed in {listed_in}) has no {file.parent.name}/{file.name}")
        try:
            lines = [line for line in sentence_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            sentences = [parse_sentence(line) for line in lines]
            width, height, boxes, scene, no_box = parse_annotation(annotation_file)
        except (ValueError, ET.ParseError) as e:
            raise UserError(f"cannot read Flickr30k Entities image {image_id}: {e}") from None
        for index, sentence in enumerate(sentences):
            sentence.unrelated = (image_id, index) in unrelated
        images.append(EntityImage(image_id, width, height, sentences, boxes, scene, no_box))
    return images


# ------------------------------------------------------------------------------------------------ the head noun

DETERMINERS = {"a", "an", "the", "this", "that", "these", "those", "my", "your", "his", "her", "its", "our", "their",
               "some", "any", "no", "each", "every", "another", "both", "all", "either", "neither"}  # fmt: skip
# Words that name a quantity or a kind, not a thing: before "of", the head is the noun after it.
QUANTITIES = {"type", "types", "kind", "kinds", "sort", "sorts", "lot", "lots", "one", "some", "all", "both", "each",
              "many", "most", "several", "few", "none", "any", "either", "neither", "couple", "number", "variety",
              "plenty", "rest", "majority"}  # fmt: skip
NUMBER_WORDS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve", "dozen", "hundred", "thousand"}  # fmt: skip
# Adverbs and particles that can trail a noun phrase ("a trampoline outside", "his hands up").
ADVERBS = {"outside", "inside", "outdoors", "indoors", "together", "nearby", "here", "there", "around", "away",
           "alone", "again", "too", "also", "ahead", "behind", "below", "above", "overhead", "underneath", "beneath",
           "upstairs", "downstairs", "aside", "apart", "now", "today", "up", "down", "out", "off", "on", "in", "over",
           "back"}  # fmt: skip
POSSESSIVES = {"'s", "'"}
CLOSING = {'"': '"', "(": ")", "[": "]", "{": "}"}  # an opening quote or bracket, and what closes it
NUMBER = re.compile(r"#?\d[\d,.:/-]*(?:st|nd|rd|th|s)?")  # 4, #23, 1,000, 3:30, 2nd, 1990s


def is_number(word: str) -> bool:
    return bool(NUMBER.fullmatch(word)) or word in NUMBER_WORDS


def is_noun_like(word: str) -> bool:
    """Whether `word` can be a head noun: it has a letter and is no determiner, number or "of"."""
    return any(c.isalpha() for c in word) and word not in DETERMINERS and not is_number(word) and word != "of"


def without_trailing_quotation(words: list[str]) -> list[str]:
    """Rule 1: the words before a quotation or a bracket that ends the phrase, when a noun stands before it."""
    opening = next((i for i, w in enumerate(words) if w in CLOSING), None)
    if opening is None or not any(is_noun_like(w) for w in words[:opening]):
        return words
    closing = next((j for j in range(opening + 1, len(words)) if words[j] == CLOSING[words[opening]]), None)
    return words[:opening] if closing is None or closing == len(words) - 1 else words


def without_trailing_extras(words: list[str]) -> list[str]:
    """Rule 2: drop what trails the noun (punctuation, "'s", a number, an adverb), while a noun stays before it."""
    words = list(words)
    while words:
        last, before = words[-1], words[:-1]
        noun_before = any(is_noun_like(w) for w in before)
        if not any(c.isalnum() for c in last) or last in POSSESSIVES:
            words = before  # punctuation, quotes and brackets
        elif noun_before and is_number(last):
            words = before  # "the number 4" -> number
        elif noun_before and last in ADVERBS and before[-1] not in DETERMINERS | POSSESSIVES:
            words = before  # "a trampoline outside"; but "the outside", "the man 's back" keep their noun
        else:
            break
    return words


def head_word(phrase: Phrase) -> int | None:
    """The position, within the phrase, of its head noun, or None when it has none (rules in the module
    docstring): "a group of people" -> group, "a lot of people" -> people, "a trampoline outside" -> trampoline."""
    words = [SPELLED.get(w, w).lower() for w in phrase.words]  # -LRB- -> (, `` -> "
    words = without_trailing_extras(without_trailing_quotation(words))
    start = 0
    while "of" in words[start:]:
        of = words.index("of", start)
        before = words[start:of]
        if before and before[-1] == "full":
            before = before[:-1]  # "a basket full of apples": the basket; "full of water": the water
        if not before or before[-1] in QUANTITIES or is_number(before[-1]) or before[-1] in DETERMINERS:
            start = of + 1  # "a lot of people", "one of the dogs", "two of them": the noun after "of"
            continue
        head = start + len(before) - 1
        return head if is_noun_like(words[head]) else None
    head = len(words) - 1
    return head if head >= start and is_noun_like(words[head]) else None
