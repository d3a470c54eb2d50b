"""The web page (`build_app`, a `gradio.Blocks`): an image and a question in; the caption or answer, what produced it
(prompt, decoding, score) and where the model looked for each word (`explain/render.py`) out. It calls the same
`Captioner.run` as the command line, so the page and `caption.py IMAGE` give the same output for the same options.

Gradio Blocks lays components out in rows and columns and attaches Python functions to their events
(https://www.gradio.app/guides/blocks-and-event-listeners). Gradio is imported inside `build_app`, not at the top:
the command line does not need it and it takes seconds to import.

Read next: `captioning/server.py` (the page served, behind its login and limits).
"""

from __future__ import annotations

import os

from data.images import image_problem, load_image
from errors import UserError

from .captioner import Captioner, Decoding, make_generator, prompt_text
from .files import PROBLEMS


def build_app(captioner: Captioner):
    """The page (a `gradio.Blocks`): image and question on the left, the output and what produced it on the right.

    Uploading an image captions it at once; the button (or Enter in the question box) runs again with the question
    and the decoding options. Under the output, each word shows its map over the image on hover or click
    (`explain/render.py`).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports to Gradio's servers
    import gradio as gr

    def respond(image_path, question, beams, length_penalty, temperature, top_k, top_p, seed, max_new_tokens):
        if not image_path:
            raise gr.Error("Upload an image first.")
        image = load_image(image_path)  # the same safe decoding as the command line
        if image is None:
            raise gr.Error(PROBLEMS.get(image_problem(image_path) or "", "unreadable image"))
        try:
            decoding = Decoding(
                max_new_tokens=int(max_new_tokens),
                num_beams=int(beams),
                length_penalty=float(length_penalty),
                temperature=float(temperature) if temperature > 0 else None,
                top_k=int(top_k) if top_k > 0 else None,
                top_p=float(top_p) if top_p < 1 else None,
                seed=int(seed),
            )
        except UserError as e:
            raise gr.Error(str(e)) from None
        ((text, score),) = captioner.run([image], question, decoding, make_generator(decoding, captioner.device))
        details = (
            f"**prompt** `{prompt_text(question)}` · **decoding** {decoding.describe()} · "
            f"**score** {score:.3f} (mean log-probability per token)"
        )
        from explain.render import page_view  # where it looked, word by word (explain/)

        with captioner.lock, captioner.autocast():  # as the caption was made (bf16 autocast on a GPU)
            maps = page_view(captioner.model, captioner.tokenizer, image, prompt_text(question), text)
        return text, details, maps

    with gr.Blocks(title="tiny-vlm: caption and ask") as app:
        gr.Markdown(f"## Caption an image, or ask about it\nCheckpoint {captioner.summary()}")
        with gr.Row():
            with gr.Column():
                image = gr.Image(
                    type="filepath", label="Image", sources=["upload", "clipboard"], height=320, elem_id="image"
                )
                question = gr.Textbox(
                    label="Question (empty: a caption)", placeholder="what colour is the circle?", elem_id="question"
                )
                with gr.Accordion("Decoding options", open=False):
                    beams = gr.Slider(1, 8, value=1, step=1, label="Beams (1: greedy, or sampling)")
                    length_penalty = gr.Slider(0.0, 2.0, value=1.0, step=0.1, label="Length penalty (beam search)")
                    temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0: no sampling)")
                    top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k (0: off)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (1: off)")
                    seed = gr.Number(value=0, precision=0, label="Seed (sampling)")
                    max_new_tokens = gr.Slider(
                        1, 64, value=captioner.default_max_new_tokens, step=1, label="Max new tokens"
                    )
                run = gr.Button("Caption / answer", variant="primary", elem_id="run")
            with gr.Column():
                output = gr.Textbox(label="Caption or answer", interactive=False, elem_id="output")
                details = gr.Markdown(elem_id="details")
                maps = gr.HTML(elem_id="explain")
        inputs = [image, question, beams, length_penalty, temperature, top_k, top_p, seed, max_new_tokens]
        for event in (image.upload, run.click, question.submit):
            event(respond, inputs, [output, details, maps])
    return app
