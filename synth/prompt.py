"""What we ask the teacher, and how its answer is checked before it becomes training data.

The teacher is asked for one JSON object per image:

    {"caption": "a detailed caption", "qa": [{"question": "...", "answer": "one to three words"}, ...]}

JSON because it is easy to check mechanically, and instruction-tuned models write it reliably when the prompt
shows the exact form. "Reliably" is not "always", so every answer goes through `parse_response`:

1. Find the object. Models wrap JSON in Markdown fences (```json ... ```) or add a sentence before or after it,
   so we start at the first "{" and let `json.JSONDecoder.raw_decode` read exactly one JSON value from there,
   ignoring whatever follows. An answer cut off by the token limit is "truncated JSON" (we can tell: the text
   ends while a string, object or list is still open), anything else that does not parse is "malformed JSON".
   Both fail the whole image; so does an empty caption, or no usable question when questions were asked.
2. Check each question-answer pair and drop (and count) the bad ones: an empty question or answer, an answer
   longer than `MAX_ANSWER_WORDS` words (we want VQA-style short answers, scored by exact match and token F1),
   a question asked twice, or questions beyond the number asked for.

Why so strict? A student model learns whatever it is shown, including a teacher's formatting slips; a smaller
clean dataset beats a larger noisy one (see e.g. the filtering steps of LLaVA's GPT-4 generated data, Liu et al.
2023, https://arxiv.org/abs/2304.08485, and of ShareGPT4V, Chen et al. 2023, https://arxiv.org/abs/2311.12793).

`PROMPT_VERSION` is stored with every record; change it whenever `PROMPT_TEMPLATE` changes, so data made with
different prompts is never mixed silently.

Read next: `synth/teacher.py` (the model that answers this prompt).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

PROMPT_VERSION = 1
MAX_ANSWER_WORDS = 5

PROMPT_TEMPLATE = (
    "Look at the image and reply with one JSON object and nothing else, in exactly this form:\n"
    '{{"caption": "...", "qa": [{{"question": "...", "answer": "..."}}]}}\n'
    "- caption: a detailed description of the image in one to three sentences: the main subjects, what they are "
    "doing, their clothes and colours, and the setting.\n"
    "- qa: {questions}"
)
QUESTIONS_WANTED = (
    "{n} different questions about things clearly visible in the image (objects, colours, counts, actions, "
    "places), each with a short answer of one to three words in lowercase; write numbers as words."
)

# Why a whole answer fails (the image is retried once, then rejected).
NO_JSON = "no JSON object"
TRUNCATED = "truncated JSON"
MALFORMED = "malformed JSON"
EMPTY_CAPTION = "empty caption"
NO_QUESTIONS = "no valid question"
# Why one question-answer pair is dropped (the rest of the answer is kept).
BAD_PAIR = "not a question-answer pair"
EMPTY_QUESTION = "empty question"
EMPTY_ANSWER = "empty answer"
LONG_ANSWER = "long answer"
REPEATED_QUESTION = "repeated question"
EXTRA_QUESTION = "extra question"


def build_prompt(n_questions: int) -> str:
    """The instruction sent with each image, asking for a caption and `n_questions` question-answer pairs."""
    questions = QUESTIONS_WANTED.format(n=n_questions) if n_questions > 0 else "an empty list."
    return PROMPT_TEMPLATE.format(questions=questions)


@dataclass
class ParsedResponse:
    """A teacher's answer after checking: `failure` is None when it is usable, else why it is not."""

    caption: str = ""
    qa: list[tuple[str, str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)  # dropped pairs, by reason
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _ends_inside_json(text: str) -> bool:
    """True when `text` (starting at a "{") ends before its outermost object is closed: a cut-off answer."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return False
    return True


def extract_json_object(text: str) -> dict | str:
    """The first JSON object in `text` (fences and surrounding prose ignored), or the reason there is none."""
    start = text.find("{")
    if start < 0:
        return NO_JSON
    try:
        value, _ = json.JSONDecoder().raw_decode(text, start)  # reads one value, ignores what follows
    except json.JSONDecodeError:
        return TRUNCATED if _ends_inside_json(text[start:]) else MALFORMED
    return value if isinstance(value, dict) else MALFORMED


def _text(value: object) -> str | None:
    """A JSON string, number or boolean as stripped text ("answer": 2 means "2"); None for anything else."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    return None


def _question_key(question: str) -> str:
    """Questions that differ only in case, spacing or the final "?" are the same question."""
    return " ".join(question.lower().rstrip("?").split())


def parse_response(text: str, n_questions: int) -> ParsedResponse:
    """Check a teacher's answer (see the module docstring); keep at most `n_questions` valid pairs."""
    obj = extract_json_object(text)
    if isinstance(obj, str):
        return ParsedResponse(failure=obj)
    result = ParsedResponse(caption=_text(obj.get("caption")) or "")
    if not result.caption:
        result.failure = EMPTY_CAPTION
        return result
    items = obj.get("qa", [])
    seen: set[str] = set()
    for item in items if isinstance(items, list) else []:
        question = _text(item.get("question")) if isinstance(item, dict) else None
        answer = _text(item.get("answer")) if isinstance(item, dict) else None
        if question is None or answer is None:
            reason = BAD_PAIR
        elif not question:
            reason = EMPTY_QUESTION
        elif not answer.rstrip("."):
            reason = EMPTY_ANSWER
        elif len(answer.split()) > MAX_ANSWER_WORDS:
            reason = LONG_ANSWER
        elif _question_key(question) in seen:
            reason = REPEATED_QUESTION
        elif len(result.qa) >= n_questions:
            reason = EXTRA_QUESTION
        else:
            seen.add(_question_key(question))
            result.qa.append((question, answer.rstrip(".")))  # "two." -> "two": answers are not sentences
            continue
        result.dropped[reason] += 1
    if n_questions > 0 and not result.qa:
        result.failure = NO_QUESTIONS
    return result
