"""The console's per-session secret: it always exists and never travels on a command line.

It comes from a file (``--console-token-file``), else the environment variable ``BMI_CONSOLE_TOKEN``, else it
is drawn at random and shown once, as the URL to open (as Jupyter does). A process that starts the console
hands it over in the child's environment, which only the same user can read (``ps`` shows arguments to
everyone). It is separate from the TCP inputs' token: a sender of samples cannot control the rig.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV = "BMI_CONSOLE_TOKEN"
MIN_LENGTH = 16  # characters: a guessable secret protects nothing


def console_secret(token_file: str | Path | None = None) -> tuple[str, bool]:
    """(secret, drawn): from ``token_file``, else ``$BMI_CONSOLE_TOKEN``, else a random one (drawn=True)."""
    if token_file is not None:
        path = Path(token_file)
        if not path.is_file():
            raise FileNotFoundError(f"Console token file not found: {path}")
        secret, where = path.read_text().strip(), f"the console token file {path}"
    elif os.environ.get(ENV):
        secret, where = os.environ[ENV].strip(), f"${ENV}"
    else:
        return secrets.token_urlsafe(24), True
    if len(secret) < MIN_LENGTH or any(c.isspace() for c in secret):
        raise ValueError(f"{where} must hold one secret of at least {MIN_LENGTH} characters without spaces "
                         f"(got {len(secret)} characters); e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'.")
    return secret, False


def child_environment(secret: str) -> dict[str, str]:
    """The environment for a console child process: ours, with the secret."""
    return dict(os.environ, **{ENV: secret})


def console_url(host: str, port: int, secret: str, drawn: bool, path: str = "/") -> str:
    """The address to open: with the secret when it was drawn here (nobody else knows it), else without."""
    netloc = f"[{host}]" if ":" in host else host
    return f"http://{netloc}:{port}{path}" + (f"?token={secret}" if drawn else "")
