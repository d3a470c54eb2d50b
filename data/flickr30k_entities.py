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

`read_entities(root, split=...)` turns that into `EntityImage`s: the captions as plain text with each phrase's word
span, entity id and types, and each entity's boxes in 0-based pixels, (x0, y0, x1, y1) with x1 and y1 excluded.
Entity 0 ("notvisual") has no box. A phrase's *head noun* (`head_word`) is what the pointing game maps
(`explain/games.py`).

Read next: `explain/games.py` (the pointing game on these boxes).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from errors import UserError

PHRASE = re.compile(r"\[/EN#(\d+)((?:/[^\s\]]+)+)\s+([^\]]*)\]")  # [/EN#12/people/other a man] -> 12, /people/.., a man
SPLITS = ("train", "val", "test")


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
    """One caption, unmarked, with its phrases."""

    text: str
    phrases: list[Phrase]


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


def read_entities(root: Path, split: str | None = "test", limit: int | None = None) -> list[EntityImage]:
    """The images of `split` (listed in root/{split}.txt; None: every Sentences/*.txt), up to `limit` of them.

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
    else:
        if split not in SPLITS:
            raise UserError(f"unknown Flickr30k Entities split {split!r}; accepted: {', '.join(SPLITS)}")
        listing = root / f"{split}.txt"
        if not listing.is_file():
            raise UserError(f"no {listing.name} in {root} (the list of the {split} split's image ids)")
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    images = []
    for image_id in ids[:limit]:
        sentence_file, annotation_file = sentences_dir / f"{image_id}.txt", annotations_dir / f"{image_id}.xml"
        for file in (sentence_file, annotation_file):
            if not file.is_file():
                raise UserError(f"image {image_id} of the {split} split has no {file.parent.name}/{file.name}")
        try:
            lines = [line for line in sentence_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            sentences = [parse_sentence(line) for line in lines]
            width, height, boxes, scene, no_box = parse_annotation(annotation_file)
        except (ValueError, ET.ParseError) as e:
            raise UserError(f"cannot read Flickr30k Entities image {image_id}: {e}") from None
        images.append(EntityImage(image_id, width, height, sentences, boxes, scene, no_box))
    return images


def head_word(phrase: Phrase) -> int:
    """The position, within the phrase, of its head noun: the last word, or the last before "of" ("a group of
    people" -> "group"; "a cup of coffee" -> "cup"). A heuristic without a parser; right for most of the short noun
    phrases Flickr30k Entities marks."""
    words = [w.lower() for w in phrase.words]
    end = next((i for i, w in enumerate(words) if w == "of" and i > 0), len(words))
    return end - 1
