"""``python -m exports.runtime.console``: the console process (started by ``bmi serve --console`` or ``bmi console``)."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bmi-console")
    parser.add_argument("--fd", type=int, help="datagram socket to the server (bmi serve passes it)")
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--token-file", help="the console's secret (else $BMI_CONSOLE_TOKEN, else drawn at random)")
    parser.add_argument("--allow-remote", action="store_true")
    parser.add_argument("--runs", type=Path)
    parser.add_argument("--cue-outlet", default="bmi-cues")
    args = parser.parse_args(argv)

    import uvicorn

    from datasets.lsl_quiet import quiet_liblsl

    quiet_liblsl()  # before the cue outlet loads liblsl
    from ..inputs import check_bind_address
    from .app import Hub, build_app
    from .bridge import parse_listen

    from .secret import console_secret, console_url

    host, port = parse_listen(args.listen)
    secret, drawn = console_secret(args.token_file)  # bmi serve hands it over in the environment
    check_bind_address(host, args.allow_remote, secret, "The console")
    if drawn:  # only this process knows it: the one place it is shown
        sys.stderr.write(f"bmi console: open {console_url(host, port, secret, drawn)}\n")
    sock = None
    if args.fd is not None:
        sock = socket.socket(fileno=args.fd)
        sock.setblocking(False)
    hub = Hub(sock)
    app = build_app(hub, secret=secret, host=host, port=port, runs_dir=args.runs, cue_outlet=args.cue_outlet,
                    live=sock is not None)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
