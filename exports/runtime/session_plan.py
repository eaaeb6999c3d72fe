"""Blinded sessions: a randomised, balanced schedule whose conditions live only in a separate key file.

``bmi session plan --patients P01,P02 --sessions 6 --conditions real,sham --seed S`` writes

- ``plan.csv`` (for the operators and the rig): ``patient, session, code``, one row per session;
- ``plan.key.csv`` (for whoever may unblind; keep it apart): ``code, patient, session, condition``.

Each session's ``code`` is an opaque random identifier (``S-`` and 8 hex digits from :mod:`secrets`), drawn
independently for every session, so codes say nothing about the condition nor which sessions share one.
``bmi serve --session-plan plan.csv --patient P01 --session 3`` looks the code up in the key, runs that condition
without showing it (sham sessions look and time exactly like real ones), and writes the code, never the
condition, in the session log's ``condition_code`` column (its ``sham`` column stays empty). Only the key turns
codes back into conditions: ``bmi session unblind --key plan.key.csv session.csv ...``, or the console's
logged Unblind control during a session.

The schedule gives every patient each condition equally often, in a random order per patient drawn from
``--seed``: whoever has the seed can rebuild the schedule, so the seed is as secret as the key.
Light on purpose (standard library only): the rig reads plans.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from datasets import atomic

CONDITIONS = ("real", "sham")  # what bmi serve can run
PLAN_FIELDS = ["patient", "session", "code"]
KEY_FIELDS = ["code", "patient", "session", "condition"]


@dataclass
class PlannedSession:
    patient: str
    session: int
    code: str
    sham: bool


def make_plan(patients: list[str], sessions: int, conditions: list[str], seed: int | None) -> list[dict[str, str]]:
    """One row per (patient, session): each condition ``sessions / len(conditions)`` times per patient, shuffled."""
    if not patients or any(not p or not p.replace("-", "").replace("_", "").isalnum() for p in patients):
        raise ValueError(f"'--patients' ({','.join(patients)}) must list patient labels (letters, digits, - and _).")
    if len(set(patients)) != len(patients):
        raise ValueError(f"'--patients' ({','.join(patients)}) names a patient twice.")
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown or len(set(conditions)) != len(conditions) or len(conditions) < 2:
        raise ValueError(f"'--conditions' ({','.join(conditions)}) must be at least two different conditions among "
                         f"{', '.join(CONDITIONS)} (what bmi serve runs).")
    if sessions < len(conditions) or sessions % len(conditions):
        raise ValueError(f"'--sessions' ({sessions}) must be a positive multiple of the number of conditions "
                         f"({len(conditions)}) so that every patient gets each condition equally often.")
    rng = random.Random(seed)
    rows = []
    for patient in patients:
        order = [c for c in conditions for _ in range(sessions // len(conditions))]
        rng.shuffle(order)
        for number, condition in enumerate(order, start=1):
            rows.append({"patient": patient, "session": str(number), "code": f"S-{secrets.token_hex(4)}",
                         "condition": condition})
    return rows


def _csv(rows: list[dict[str, str]], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _write_new(path: Path, text: str) -> None:
    """Write atomically, never over an existing file (a schedule is made once)."""
    if path.exists():
        raise FileExistsError(f"{path} exists; a session plan is never overwritten (choose another --out / --key).")
    atomic.write_text(path, text)


def default_key_path(plan_path: Path) -> Path:
    return plan_path.with_name(plan_path.stem + ".key.csv")


def write_plan(rows: list[dict[str, str]], plan_path: Path, key_path: Path) -> None:
    if plan_path.resolve() == key_path.resolve():
        raise ValueError(f"'--key' ({key_path}) must be another file than the plan: the key is kept apart.")
    for path in (plan_path, key_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; a session plan is never overwritten (choose another --out / --key).")
    _write_new(key_path, _csv(rows, KEY_FIELDS))
    _write_new(plan_path, _csv(rows, PLAN_FIELDS))


def _read(path: Path, fields: list[str], what: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or any(f not in reader.fieldnames for f in fields):
            raise ValueError(f"{path} is not a {what.lower()} written by bmi session plan (columns {reader.fieldnames}; "
                             f"expected {', '.join(fields)}).")
        return list(reader)


def read_key(key_path: Path) -> dict[str, str]:
    """code -> condition."""
    return {row["code"]: row["condition"] for row in _read(key_path, KEY_FIELDS, "Session key")}


def planned_session(plan_path: Path, patient: str | None, session: int | None,
                    key_path: Path | None = None) -> PlannedSession:
    """The planned session's code and condition (from the key, which this reads without showing)."""
    if patient is None or session is None:
        raise ValueError("'--session-plan' needs '--patient' and '--session' (which planned session this is).")
    plan_path = Path(plan_path)
    rows = _read(plan_path, PLAN_FIELDS, "Session plan")
    if "condition" in (rows[0] if rows else {}):
        raise ValueError(f"{plan_path} holds the conditions: that is the key file; give the plan (--session-plan) and "
                         "keep the key apart.")
    mine = [r for r in rows if r["patient"] == patient]
    if not mine:
        raise ValueError(f"'--patient' ({patient!r}) is not in {plan_path}; patients: "
                         f"{', '.join(sorted({r['patient'] for r in rows}))}.")
    row = next((r for r in mine if r["session"] == str(session)), None)
    if row is None:
        raise ValueError(f"'--session' ({session}) is not planned for {patient} in {plan_path}; sessions: "
                         f"{', '.join(r['session'] for r in mine)}.")
    key_path = Path(key_path) if key_path is not None else default_key_path(plan_path)
    key = read_key(key_path)
    condition = key.get(row["code"])
    if condition is None:
        raise ValueError(f"The key {key_path} has no entry for session {patient}/{session} of {plan_path}: the plan "
                         "and the key were not written together.")
    if condition not in CONDITIONS:
        raise ValueError(f"The key {key_path} holds an unknown condition for session {patient}/{session}; known: "
                         f"{', '.join(CONDITIONS)}.")
    return PlannedSession(patient, int(session), row["code"], condition == "sham")


def refuse_blinded_source(log_path: Path) -> None:
    """A sham copies a REAL session's log; a blinded log's condition is unknown here, so it cannot be one."""
    if not Path(log_path).is_file():
        return  # the sham decoder names the missing file itself
    with Path(log_path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("condition_code"):
                raise ValueError(f"'--sham-source' ({log_path}) is a blinded session's log (condition code "
                                 f"{row['condition_code']}): its condition is unknown here, so it cannot stand for a "
                                 "real session. Give the log of an unblinded real session.")
            return


def unblind_logs(key_path: Path, logs: list[Path]) -> list[dict[str, str]]:
    """For each session log: its condition code and the condition the key gives it."""
    key = read_key(Path(key_path))
    out = []
    for log in logs:
        codes = set()
        with Path(log).open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "condition_code" not in reader.fieldnames:
                raise ValueError(f"{log} has no condition_code column: it is not a blinded session's log.")
            codes = {row["condition_code"] for row in reader if row["condition_code"]}
        if len(codes) != 1:
            raise ValueError(f"{log} holds {len(codes)} condition codes ({', '.join(sorted(codes)) or 'none'}); a "
                             "blinded session's log holds one.")
        code = codes.pop()
        out.append({"log": str(log), "code": code, "condition": key.get(code, "not in this key")})
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    session = subparsers.add_parser("session", help="blinded sessions: plan a randomised schedule, unblind logs",
                                    description="Plan blinded real/sham sessions (the conditions go to a separate key "
                                                "file) and unblind session logs with the key.")
    sub = session.add_subparsers(dest="session_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("plan", help="a randomised, balanced schedule; conditions only in the key file",
                       description="Write plan.csv (patient, session, opaque code) and a separate key file (code -> "
                                   "condition). Every patient gets each condition equally often, in random order. "
                                   "Run a planned session with bmi serve --session-plan plan.csv --patient P --session N.")
    p.add_argument("--patients", required=True, help="patient labels, comma-separated, e.g. P01,P02")
    p.add_argument("--sessions", required=True, type=int, help="sessions per patient (a multiple of the conditions)")
    p.add_argument("--conditions", default="real,sham", help="conditions, comma-separated (default real,sham)")
    p.add_argument("--seed", type=int, help="seed of the order (it rebuilds the schedule: keep it as secret as the key)")
    p.add_argument("--out", type=Path, default=Path("plan.csv"), help="the plan (default plan.csv)")
    p.add_argument("--key", type=Path, help="the key file (default: PLAN.key.csv beside the plan)")
    p.set_defaults(func=_plan)
    p = sub.add_parser("unblind", help="the condition of blinded session logs, from the key",
                       description="Read each session log's condition code and print its condition from the key.")
    p.add_argument("logs", nargs="+", type=Path, help="session logs (bmi serve --log) of planned sessions")
    p.add_argument("--key", required=True, type=Path, help="the key file of the plan")
    p.set_defaults(func=_unblind)


def _split(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _plan(args: argparse.Namespace) -> int:
    key = args.key or default_key_path(args.out)
    rows = make_plan(_split(args.patients), args.sessions, _split(args.conditions), args.seed)
    write_plan(rows, args.out, key)
    print(f"bmi session: {len(rows)} sessions for {len(_split(args.patients))} patient(s) in {args.out}; conditions "
          f"only in {key} (keep it apart from the rig and the operators).")
    return 0


def _unblind(args: argparse.Namespace) -> int:
    for row in unblind_logs(args.key, args.logs):
        print(f"{row['log']}: {row['code']} -> {row['condition']}")
    return 0
