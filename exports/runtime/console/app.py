"""The console's web application (Starlette): pages, a server-sent event stream, controls, cues and runs.

State comes from the server as datagrams (:mod:`.bridge`) and goes to every open page as server-sent
events. Controls are POSTs answered with the server's own acknowledgement, so a page shows what the server
did, not what was clicked.

Only the operator's own page controls the rig. Every request must name this console's own host (the bound
address or a loopback name: a DNS-rebinding page names its own); every page and request must carry the
per-session secret (:mod:`.secret`; opened once as ``/?token=...``, then an HttpOnly, SameSite=Strict cookie,
or the ``X-BMI-Token`` header for scripts); and every control, cue and paradigm POST, the event stream and the
runs API must also prove the same origin (``Origin`` equal to the console's own, or ``Sec-Fetch-Site:
same-origin``; a request with neither is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from . import runs as run_records
from .guard import Guard, allowed_hosts

STATIC = Path(__file__).parent / "static"
MAX_QUEUE = 500  # messages a slow page may lag behind before the oldest are dropped


class Hub:
    """Latest state from the server and the pages listening to it."""

    def __init__(self, sock: socket.socket | None):
        self.sock = sock
        self.hello: dict[str, Any] | None = None
        self.status: dict[str, Any] | None = None
        self.decisions: deque[dict[str, Any]] = deque(maxlen=400)
        self.events: deque[dict[str, Any]] = deque(maxlen=300)
        self.unblinded: dict[str, Any] | None = None
        self.cue: dict[str, Any] | None = None
        self.paradigm: dict[str, Any] = {"kind": "paradigm", "running": False}
        self.server_gone = False
        self._listeners: set[asyncio.Queue] = set()
        self._acks: dict[int, asyncio.Future] = {}
        self._next_id = 0

    # -- from the server --------------------------------------------------------------------------------------
    def on_readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.server_gone = True
                return
            if not data:
                return
            try:
                self.receive(json.loads(data))
            except ValueError:
                continue

    def receive(self, msg: dict[str, Any]) -> None:
        kind = msg.get("kind")
        if kind == "hello":
            self.hello = msg
        elif kind == "status":
            self.status = msg
        elif kind == "decision":
            self.decisions.append(msg)
        elif kind == "safe":
            self.events.append({"t": msg["t"], "text": f"{msg['type']}: {msg['reason']}", "level": "safe"})
        elif kind == "event":
            self.events.append({"t": msg["t"], "text": msg["text"], "level": "info"})
        elif kind == "unblinded":
            self.unblinded = msg
            self.events.append({"t": msg["t"], "text": "session unblinded (logged)", "level": "info"})
        elif kind == "ack":
            future = self._acks.pop(msg.get("id"), None)
            if future is not None and not future.done():
                future.set_result(msg)
            self.events.append({"t": time.time(), "text": f"{msg['action']}: {'done' if msg['ok'] else 'refused'}"
                                + (f" ({msg['message']})" if msg.get("message") else ""), "level": "control"})
        elif kind == "bye":
            self.server_gone = True
        self.broadcast(msg)

    def broadcast(self, msg: dict[str, Any]) -> None:
        for queue in self._listeners:
            if queue.full():
                queue.get_nowait()  # a page that cannot keep up loses its oldest message
            queue.put_nowait(msg)

    def snapshot(self) -> dict[str, Any]:
        return {"kind": "snapshot", "hello": self.hello, "status": self.status, "decisions": list(self.decisions)[-100:],
                "events": list(self.events)[-100:], "unblinded": self.unblinded, "cue": self.cue,
                "paradigm": self.paradigm,
                "server_gone": self.server_gone}

    def listen(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(maxsize=MAX_QUEUE)
        self._listeners.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue) -> None:
        self._listeners.discard(queue)

    # -- to the server ----------------------------------------------------------------------------------------
    async def control(self, action: str, timeout: float = 2.0, **fields) -> dict[str, Any]:
        if self.sock is None or self.server_gone:
            return {"ok": False, "message": "no server is attached to this console"}
        self._next_id += 1
        ident = self._next_id  # this control's own: a second one sent while this waits takes the next
        future = asyncio.get_running_loop().create_future()
        self._acks[ident] = future
        try:
            self.sock.send(json.dumps({"kind": "control", "id": ident, "action": action, **fields}).encode())
            return await asyncio.wait_for(future, timeout)
        except (OSError, asyncio.TimeoutError) as err:
            return {"ok": False, "message": f"the server did not answer ({type(err).__name__})"}
        finally:
            self._acks.pop(ident, None)


class CueOutlet:
    """Cue onsets as LSL string markers, recorded in sync with the amplifier. Opened when the console starts,
    so a recorder can subscribe before the first cue."""

    def __init__(self, name: str):
        self.name, self._outlet = name, None

    def open(self) -> None:
        import pylsl

        info = pylsl.StreamInfo(self.name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", f"bmi-console-{self.name}")
        self._outlet = pylsl.StreamOutlet(info)

    def push(self, label: str) -> float:
        import pylsl

        if self._outlet is None:
            self.open()
        t = pylsl.local_clock()
        self._outlet.push_sample([label], t)
        return t


def paradigm_order(classes: list[str], trials: int, seed: int | None) -> list[str]:
    """``trials`` cues per class in a random order, balanced."""
    order = [c for c in classes for _ in range(trials)]
    random.Random(seed).shuffle(order)
    return order


class BadBody(ValueError):
    """A request body that is not the JSON object a route takes."""


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object ({} for an empty body), or :class:`BadBody` naming what was wrong."""
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as err:
        raise BadBody(f"the body must be JSON ({err})") from None
    if not isinstance(body, dict):
        raise BadBody(f"the body must be a JSON object, not {type(body).__name__}")
    return body


def bad_request(message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "message": message}, 400)


def guarded(guard: Guard, handler, *, same_origin: bool = True):
    """``handler`` behind the guard: the secret, and (by default) the same-origin proof (:mod:`.guard`)."""
    async def checked(request: Request) -> Response:
        return guard.check(request, same_origin=same_origin) or await handler(request)
    return checked


def page_routes(guard: Guard, live: bool) -> list[Route]:
    """The pages (opening one with ``?token=`` sets the secret's cookie) and their static files."""
    def page(name: str):
        async def handler(request: Request) -> Response:
            refused = guard.page(request)
            return refused or FileResponse(STATIC / f"{name}.html", headers={"Cache-Control": "no-store"})
        return handler

    async def static(request: Request) -> Response:
        path = (STATIC / request.path_params["name"]).resolve()
        if path.parent != STATIC.resolve() or not path.is_file() or path.suffix not in (".js", ".css", ".svg"):
            return Response("not found", 404)
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    async def root(request: Request) -> Response:
        if not live:  # no server attached: the dashboard of finished runs
            return RedirectResponse("/runs" + (f"?{request.url.query}" if request.url.query else ""))
        return await page("live")(request)

    return [Route("/", root), Route("/cue", page("cue")), Route("/runs", page("runs")), Route("/static/{name}", static)]


def live_routes(hub: Hub, guard: Guard) -> list[Route]:
    """The live page's event stream and the operator's controls, answered by the server's acknowledgement."""
    async def events(request: Request) -> Response:
        queue = hub.listen()

        async def stream():
            try:
                yield f"data: {json.dumps(hub.snapshot())}\n\n"
                while True:
                    try:
                        msg = await asyncio.wait_for(queue.get(), 10.0)
                        yield f"data: {json.dumps(msg)}\n\n"
                    except asyncio.TimeoutError:
                        yield ": keep-alive\n\n"
            finally:
                hub.forget(queue)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def control(request: Request) -> Response:
        action = request.path_params["action"]
        if action not in ("estop", "resume", "log_start", "log_stop", "mark", "unblind"):
            return JSONResponse({"ok": False, "message": f"unknown control {action!r}"}, 404)
        try:
            body = await json_object(request)
        except BadBody as err:
            return bad_request(str(err))
        fields = {k: body[k] for k in ("confirm", "label") if k in body}
        ack = await hub.control(action, **fields)
        return JSONResponse(ack, 200 if ack.get("ok") else 409)

    return [Route("/events", guarded(guard, events)),
            Route("/api/control/{action}", guarded(guard, control), methods=["POST"])]


class Cues:
    """The cue page's cues: one at a time, or a paradigm (a shuffled order of cues, each followed by a jittered
    rest), each onset pushed as an LSL marker."""

    def __init__(self, hub: Hub, outlet: CueOutlet):
        self.hub, self.outlet = hub, outlet
        self.paradigm: asyncio.Task | None = None

    def show(self, label: str | None, seconds: float, index: int | None = None, total: int | None = None) -> None:
        t = self.outlet.push(label) if label else None
        self.hub.cue = {"kind": "cue", "label": label, "seconds": seconds, "t": time.time(), "lsl_time": t,
                        "index": index, "total": total}
        self.hub.broadcast(self.hub.cue)

    async def run(self, order: list[str], cue_s: float, rest_s: float, jitter_s: float, seed: int | None) -> None:
        rng = random.Random(seed)
        done = 0
        try:
            for i, label in enumerate(order):
                self.show(label, cue_s, i + 1, len(order))
                done = i + 1
                await asyncio.sleep(cue_s)
                pause = rest_s + rng.uniform(0, jitter_s)
                self.show(None, pause, i + 1, len(order))
                await asyncio.sleep(pause)
        finally:
            self.paradigm = None
            self.hub.paradigm = {"kind": "paradigm", "running": False, "cues_done": done, "total": len(order)}
            self.hub.broadcast(self.hub.paradigm)

    async def cue(self, request: Request) -> Response:
        try:
            body = await json_object(request)
            label, seconds = body.get("label"), float(body.get("seconds", 0) or 0)
        except BadBody as err:
            return bad_request(str(err))
        except (TypeError, ValueError):
            return bad_request(f"'seconds' ({body.get('seconds')!r}) must be a number")
        if label is not None and not isinstance(label, str):
            return bad_request("'label' must be a string or null")
        self.show(label, seconds)
        return JSONResponse({"ok": True, "cue": self.hub.cue})

    async def start(self, request: Request) -> Response:
        try:
            body = await json_object(request)
        except BadBody as err:
            return bad_request(str(err))
        try:
            classes = [str(c) for c in body["classes"]]
            trials, cue_s = int(body.get("trials", 10)), float(body.get("cue_s", 4.0))
            rest_s, jitter_s = float(body.get("rest_s", 2.0)), float(body.get("jitter_s", 0.5))
        except (KeyError, TypeError, ValueError) as err:
            return bad_request(f"a paradigm needs 'classes' and numbers ({err})")
        if not classes or trials < 1 or cue_s <= 0 or rest_s < 0 or jitter_s < 0:
            return bad_request("classes must be given; trials >= 1, cue_s > 0, rest_s and jitter_s >= 0")
        if self.paradigm is not None:
            return JSONResponse({"ok": False, "message": "a paradigm is already running"}, 409)
        order = paradigm_order(classes, trials, body.get("seed"))
        self.paradigm = asyncio.create_task(self.run(order, cue_s, rest_s, jitter_s, body.get("seed")))
        self.hub.paradigm = {"kind": "paradigm", "running": True, "order": order}
        self.hub.broadcast(self.hub.paradigm)
        return JSONResponse({"ok": True, "order": order})

    async def stop(self, request: Request) -> Response:
        """Stop the running paradigm: the cue page shows the fixation cross, no further cue marker is sent."""
        task = self.paradigm
        if task is None:
            return JSONResponse({"ok": False, "message": "no paradigm is running"}, 409)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        self.show(None, 0.0)
        return JSONResponse({"ok": True})

    def routes(self, guard: Guard) -> list[Route]:
        return [Route("/api/cue", guarded(guard, self.cue), methods=["POST"]),
                Route("/api/paradigm", guarded(guard, self.start), methods=["POST"]),
                Route("/api/paradigm/stop", guarded(guard, self.stop), methods=["POST"])]


def runs_routes(guard: Guard, runs_dir: Path | None) -> list[Route]:
    """The dashboard of finished runs: the list (with the sweep studies among its folders), each run's learning
    curves, its files, and a study's report."""
    async def runs_list(request: Request) -> Response:
        if runs_dir is None:
            return JSONResponse({"runs": [], "root": None})
        rows = run_records.list_runs(runs_dir)
        return JSONResponse({"runs": rows, "root": str(runs_dir), "studies": run_records.studies(runs_dir, rows)})

    async def run_curves(request: Request) -> Response:
        try:
            return JSONResponse(run_records.curves(runs_dir, request.path_params["run_id"]))
        except (FileNotFoundError, ValueError) as err:
            return JSONResponse({"message": str(err)}, 404)

    async def run_file(request: Request) -> Response:
        try:
            path = run_records.run_file(runs_dir, request.path_params["run_id"], request.path_params["path"])
        except (FileNotFoundError, ValueError) as err:
            return Response(str(err), 404)
        return FileResponse(path, filename=path.name)

    async def study_report(request: Request) -> Response:
        try:
            path = run_records.study_report(runs_dir, request.path_params["folder"])
        except (FileNotFoundError, ValueError) as err:
            return Response(str(err), 404)
        # shown, not downloaded: a page of text, tables and inline PNGs, allowed nothing else (no script, no request)
        return FileResponse(path, media_type="text/html", headers={
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"})

    return [Route("/api/runs", guarded(guard, runs_list)),
            Route("/api/runs/{run_id}/curves", guarded(guard, run_curves)),
            # a download link: the secret's SameSite cookie suffices
            Route("/runs/files/{run_id}/{path:path}", guarded(guard, run_file, same_origin=False)),
            # a sweep study's report (bmi compare --study-report), opened from its group's row in a new tab
            Route("/runs/report/{folder:path}", guarded(guard, study_report, same_origin=False))]


def build_app(hub: Hub, *, secret: str, host: str, port: int, runs_dir: Path | None, cue_outlet: str = "bmi-cues",
              live: bool = True) -> Starlette:
    """``secret``: the per-session secret (:mod:`.secret`); ``host``/``port``: where it listens (the host names it
    answers, the cookie's name). ``live``: a server is attached (else ``/`` goes to the runs page)."""
    outlet = CueOutlet(cue_outlet)
    guard = Guard(secret, port)
    routes = page_routes(guard, live) + live_routes(hub, guard) + Cues(hub, outlet).routes(guard) + \
        runs_routes(guard, runs_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        outlet.open()
        if hub.sock is not None:  # the server's datagrams are read by the event loop, as they come
            asyncio.get_running_loop().add_reader(hub.sock.fileno(), hub.on_readable)
        yield
        if hub.sock is not None:
            asyncio.get_running_loop().remove_reader(hub.sock.fileno())

    hosts = Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host), www_redirect=False)
    return Starlette(routes=routes, lifespan=lifespan, middleware=[hosts])
