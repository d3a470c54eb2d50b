"""`serve`: the page (`captioning/page.py`) on an address and port until Ctrl-C, behind the login and within the
limits of its `PageAccess` (`captioning/access.py`), which become Gradio's login form, its upload size limit and its
queue. The page works offline: system fonts instead of the default theme's Google fonts, no usage reports to Gradio.

Read next: `caption.py` (the command line that starts it: `python caption.py --serve`).
"""

from __future__ import annotations

import sys

from errors import UserError

from .access import PageAccess, is_loopback
from .captioner import Captioner
from .page import build_app

DEFAULT_PORT = 7860  # Gradio's usual port


def serve(captioner: Captioner, host: str, port: int, access: PageAccess | None = None) -> None:
    """Serve the page until Ctrl-C. 127.0.0.1 (the default) is reachable from this machine only; another address
    opens it to the network, behind Gradio's login when `access.login` is set (see docs/reliability.md)."""
    access = access or PageAccess()
    app = build_app(captioner)
    import gradio as gr

    # At most `queue_size` requests wait and `concurrency` run; the rest are told the queue is full.
    app.queue(max_size=access.queue_size, default_concurrency_limit=access.concurrency)
    # System fonts: the default theme fetches its fonts from Google, and the page should work offline.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    login = f", login as {access.login[0]!r}" if access.login else ", no login"
    print(f"serving {captioner.summary()} on http://{host}:{port}{login}", flush=True)
    if access.login is None and not is_loopback(host):
        print(f"warning: --no-auth: anyone who can reach {host}:{port} can use the page", file=sys.stderr, flush=True)
    try:
        app.launch(
            server_name=host, server_port=port, share=False, footer_links=[], theme=theme,
            auth=access.login, auth_message="tiny-vlm: log in with the user and password the page was started with",
            max_file_size=access.max_upload_bytes,
        )  # fmt: skip
    except OSError as e:  # the port is taken
        raise UserError(f"cannot listen on {host}:{port} ({e}); pick another --port") from None
