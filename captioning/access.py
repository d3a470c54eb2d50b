"""Who may open the page, and how much it takes at once: its login and limits (`PageAccess`), decided from the command
line and the environment before the model loads (`page_access`).

On 127.0.0.1 (the default) the page is reachable from this machine only and needs no login. On any other address
(`--host 0.0.0.0`) it asks for one, from $CAPTION_AUTH=USER:PASSWORD (or `--auth USER:PASSWORD`), and refuses to
start without one unless `--no-auth` is given on purpose; the password is never printed, not even in a `repr`.
Uploads above `--max-upload-mb` are refused, at most `--queue-size` requests wait and `--concurrency` run at once.
See docs/reliability.md, "The page on a network".

Read next: `captioning/page.py` (the page these limits guard), `captioning/server.py` (where Gradio gets them).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from errors import UserError

AUTH_ENV = "CAPTION_AUTH"  # USER:PASSWORD for the page's login, kept out of the shell history and `ps`
DEFAULT_MAX_UPLOAD_MB = 20  # a phone photo is 2-12 MB; larger uploads are refused by Gradio (413)
MB = 1024**2  # Gradio counts upload sizes in units of 1024 bytes
DEFAULT_QUEUE_SIZE = 16  # requests that may wait for the model; more are told the queue is full
DEFAULT_CONCURRENCY = 1  # requests that run at once (the model answers one at a time: Captioner.lock)


@dataclass(frozen=True)
class PageAccess:
    """Who may open the page, and how much it takes at once (checked by `page_access` before the model loads).

    `login`: (user, password) for Gradio's login form, or None for no login (loopback, or --no-auth on purpose);
    `max_upload_bytes`: the largest file an upload may be (Gradio answers 413 above it);
    `queue_size`: how many requests may wait; beyond it a browser is told the queue is full;
    `concurrency`: how many requests run at once (the model answers one at a time anyway, see Captioner.lock).
    """

    login: tuple[str, str] | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * MB
    queue_size: int = DEFAULT_QUEUE_SIZE
    concurrency: int = DEFAULT_CONCURRENCY

    def __repr__(self) -> str:  # never show the password, even in a traceback or a debugger
        user = f"{self.login[0]!r} (password hidden)" if self.login else None
        return (
            f"PageAccess(login={user}, max_upload_bytes={self.max_upload_bytes}, queue_size={self.queue_size}, "
            f"concurrency={self.concurrency})"
        )


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: localhost, 127.0.0.0/8 or ::1 (not 0.0.0.0, which is
    every address of the machine, nor a host name or an address of a network interface)."""
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to a network interface
        return False


def parse_login(value: str, where: str) -> tuple[str, str]:
    """USER:PASSWORD (the password may itself hold ':') -> (user, password); `where` names it in the error line,
    which never repeats the value."""
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise UserError(f"{where} must be USER:PASSWORD, both non-empty")
    return user.strip(), password


def page_access(args: argparse.Namespace, environ: dict[str, str] | None = None) -> PageAccess:
    """The page's login and limits from --auth / $CAPTION_AUTH / --no-auth, --max-upload-mb, --queue-size and
    --concurrency. A page on an address other than loopback needs a login, or --no-auth said on purpose."""
    environ = dict(os.environ) if environ is None else environ
    if args.max_upload_mb <= 0:
        raise UserError(f"--max-upload-mb {args.max_upload_mb:g} is invalid; expected a number > 0")
    for flag, value in (("--queue-size", args.queue_size), ("--concurrency", args.concurrency)):
        if value < 1:
            raise UserError(f"{flag} {value} is invalid; expected an integer >= 1")
    if args.auth is not None and args.no_auth:
        raise UserError("--auth and --no-auth exclude each other; pick one")
    login = None
    if args.auth is not None:
        login = parse_login(args.auth, "--auth")
    elif environ.get(AUTH_ENV) and not args.no_auth:
        login = parse_login(environ[AUTH_ENV], f"${AUTH_ENV}")
    if login is None and not args.no_auth and not is_loopback(args.host):
        raise UserError(
            f"--host {args.host} opens the page to the network: set a login with {AUTH_ENV}=USER:PASSWORD in the "
            "environment (or --auth USER:PASSWORD), or add --no-auth to serve it to anyone who can reach it"
        )
    return PageAccess(login, int(args.max_upload_mb * MB), args.queue_size, args.concurrency)
