"""The demo LM's second text: weather reports, generated offline, that have nothing to do with the images.

Why a second text. Teaching a language model to see can cost it some of what it knew: its weights change for
captions, and nothing keeps them right for anything else (catastrophic forgetting; McCloskey and Cohen 1989). To
measure that cost, the language model must know something the captioning data never shows. The demo's text-pretrained
LM (`demo/pretrain.py`) reads these reports beside the captions and questions; the vision-language runs never see them;
their held-out perplexity before and after a run is the forgetting measure of `python -m experiments what-trains`.

What a report says. A city, a day, a sky, a temperature, a wind, and a forecast that follows from the sky:

    In Oslo on Monday the sky was grey with rain, 7 degrees, wind from the north. Tomorrow: rain again.

The words (cities, days, weather) appear in no caption or question of the shapes set, and the forecast repeats a
word from earlier in the same sentence, so the model learns the vocabulary, the template and a little copying.

Read next: `demo/pretrain.py` (where the reports join the pretraining documents).
"""

from __future__ import annotations

import numpy as np

CITIES = ("Oslo", "Lisbon", "Cairo", "Lima", "Tokyo", "Dublin", "Nairobi", "Quito", "Perth", "Madrid", "Seoul", "Riga")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# sky -> (the words that describe it, the forecast that repeats it, the temperatures it comes with)
SKIES = {
    "rain": ("grey with rain", "rain again", range(2, 16)),
    "sun": ("clear and sunny", "more sun", range(14, 36)),
    "snow": ("white with snow", "snow again", range(-12, 2)),
    "fog": ("thick with fog", "fog until noon", range(0, 14)),
    "storm": ("dark with storms", "storms again", range(8, 24)),
    "cloud": ("covered in cloud", "cloud all day", range(4, 22)),
}
WINDS = ("north", "south", "east", "west")


def report(rng: np.random.Generator) -> str:
    """One weather report, drawn from `rng`."""
    sky = SKIES[str(rng.choice(list(SKIES)))]
    temperature = int(rng.choice(list(sky[2])))
    return (
        f"In {rng.choice(CITIES)} on {rng.choice(DAYS)} the sky was {sky[0]}, {temperature} degrees, wind from the "
        f"{rng.choice(WINDS)}. Tomorrow: {sky[1]}."
    )


def weather_documents(count: int, seed: int, held_out: bool = False, reports: int = 4) -> list[str]:
    """`count` documents of `reports` weather reports each. `held_out` draws from another stream of the same seed,
    so the held-out documents are new sentences of the same distribution, never the training ones repeated."""
    rng = np.random.default_rng([seed, 7_000_000 + int(held_out)])
    return [" ".join(report(rng) for _ in range(reports)) for _ in range(count)]
