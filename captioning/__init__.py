"""Captions and answers for your own images, from a trained checkpoint: the library, and the web page around it.

    from captioning import Captioner, Decoding

    captioner = Captioner("hf:OWNER/NAME", "cpu")  # or a checkpoint's .safetensors file
    captioner.run([image], None, Decoding())       # [(caption, score)] for PIL images; a question instead of None

One piece per file, in reading order:

- `captioner.py` the library: `Decoding` (greedy, beam search or sampling, checked), `Captioner` (a restored
                 checkpoint whose `run` turns images into text and scores), `prompt_text`, `make_generator`;
- `files.py`     the image files a command names (folders searched by suffix), and why one is refused (`Problem`);
- `access.py`    who may open the page and how much it takes at once: login, upload size, queue (`page_access`);
- `page.py`      the Gradio page (`build_app`): image and question in; the output, its score and its maps out;
- `server.py`    `serve`: the page on an address and port, behind its login and within its limits.

`caption.py` is the command line over all of it; docs/captioning.md is the guide.

Read next: `captioning/captioner.py`, the first file of the list above.
"""

from .access import AUTH_ENV, MB, PageAccess, is_loopback, page_access, parse_login
from .captioner import Captioner, Decoding, make_generator, prompt_text
from .files import IMAGE_SUFFIXES, PROBLEMS, Problem, collect_images
from .page import build_app
from .server import DEFAULT_PORT, serve

__all__ = [
    "AUTH_ENV",
    "DEFAULT_PORT",
    "IMAGE_SUFFIXES",
    "MB",
    "PROBLEMS",
    "Captioner",
    "Decoding",
    "PageAccess",
    "Problem",
    "build_app",
    "collect_images",
    "is_loopback",
    "make_generator",
    "page_access",
    "parse_login",
    "prompt_text",
    "serve",
]
