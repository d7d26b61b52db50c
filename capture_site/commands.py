"""CLI: ``gazepref serve``, ``gazepref user add|grant|revoke|delete|list``, ``gazepref study check`` and
``gazepref study simulate``."""
from __future__ import annotations

import argparse
import getpass
import sys
from contextlib import contextmanager

from ..datasets.sources import add_database_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the study site (development server)",
                       description="Run the study site. Embedded defaults: SQLite in the instance "
                                   "folder, offline demo LLM. Production: see README (gunicorn).")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5000, help="TCP port (default 5000)")
    add_database_arguments(p)  # the instance folder also holds the site's secrets
    p.add_argument("--config", help="study configuration file (TOML; default $GAZEPREF_STUDY_CONFIG, else the embedded demo study)")
    p.set_defaults(func=_serve)

    user = sub.add_parser("user", help="manage researcher accounts for the dashboard")
    usub = user.add_subparsers(dest="user_command", metavar="SUBCOMMAND", required=True)
    add = usub.add_parser("add", help="create a researcher account (or reset its password)",
                          description="Create a dashboard account. The password is read from stdin "
                                      "(--password-stdin) or asked for on the terminal; it is stored hashed. "
                                      "A new account needs its studies: --all-studies, or --study SLUG "
                                      "(repeatable). For an existing account (a new password) they are "
                                      "optional and, when given, become its whole scope.")
    add.add_argument("username", help="the account's name (the dashboard's login)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _scope_arguments(add)
    add_database_arguments(add)
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(func=_user_add)

    grant = usub.add_parser("grant", help="let an account open a study (or every study)",
                            description="Let a researcher account open the studies SLUG on the dashboard "
                                        "(or every study, with --all-studies), from its next request.")
    grant.add_argument("username", help="the account to grant the studies to")
    grant.add_argument("slugs", nargs="*", metavar="SLUG", help="a study's slug")
    grant.add_argument("--all-studies", action="store_true", help="every study, also those made later")
    grant.add_argument("--allow-missing", action="store_true",
                       help="grant a slug no study has yet (its file not served yet): it opens that study "
                            "once the site serves it")
    add_database_arguments(grant)
    grant.add_argument("--json", action="store_true", help="print JSON")
    grant.set_defaults(func=_user_grant)

    revoke = usub.add_parser("revoke", help="take a study (or the all-studies grant) from an account",
                             description="Take the studies SLUG (or, with --all-studies, the grant of every "
                                         "study) from a researcher account, from its next request. Taking "
                                         "the last leaves the account no study, never all.")
    revoke.add_argument("username", help="the account to take the studies from")
    revoke.add_argument("slugs", nargs="*", metavar="SLUG", help="a study's slug")
    revoke.add_argument("--all-studies", action="store_true", help="the grant of every study")
    add_database_arguments(revoke)
    revoke.add_argument("--json", action="store_true", help="print JSON")
    revoke.set_defaults(func=_user_revoke)

    dele = usub.add_parser("delete", help="delete a researcher account with its study grants",
                           description="Delete the researcher account USERNAME, its study grants and its "
                                       "logged-in sessions (its open dashboard pages open nothing from their "
                                       "next request). The studies and participants' data are not touched. "
                                       "The last account granted all studies (--all-studies) is kept unless "
                                       "--force: without it no account opens a study nobody was granted "
                                       "(gazepref user add or grant makes one again).")
    dele.add_argument("username", help="the account to delete")
    dele.add_argument("--force", action="store_true",
                      help="delete it even when it is the last account granted all studies (default: refused, "
                           "exit status 2)")
    add_database_arguments(dele)
    dele.add_argument("--json", action="store_true", help="print JSON")
    dele.set_defaults(func=_user_delete)

    lst = usub.add_parser("list", help="the researcher accounts and the studies each may open")
    add_database_arguments(lst)
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=_user_list)

    register_study(sub)


@contextmanager
def _one_line_database_errors(url: str | None):
    """A database that cannot be reached or opened (a wrong ``--db``, a server that is down) is a
    user's mistake: one line naming it, not a traceback."""
    from sqlalchemy.exc import DatabaseError

    from .. import store

    try:
        yield
    except DatabaseError as e:  # OperationalError (unreachable), or a file that is no database
        raise store.database_error(url, e) from None


def _serve(args: argparse.Namespace) -> int:
    from .. import UserError, store
    from .app import create_app
    from .serving import RedactingRequestHandler

    if not 0 < args.port < 65536:  # (werkzeug wraps a larger number: the banner named another port)
        raise UserError(f"--port must be from 1 to 65535 (got {args.port})")
    overrides = {}
    if args.config:
        overrides["STUDY_CONFIG"] = args.config
    if args.db:
        overrides["DATABASE_URL"] = store.database_url(args.db)
    app = create_app(instance_path=args.instance, overrides=overrides)  # a bad setting: one line (UserError)
    import socket

    from werkzeug.serving import select_address_family

    family = select_address_family(args.host, args.port)
    if family == getattr(socket, "AF_UNIX", None):  # --host unix://PATH
        _check_unix_socket(args.host.partition("unix://")[2])
        where = args.host.replace("unix://", "unix:", 1)
    else:
        try:  # a port in use: one line (werkzeug printed two and exit status 1); IPv4 or 6 as werkzeug picks
            socket.create_server((args.host, args.port), family=family).close()
        except OSError as e:
            raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
        where = f"http://{args.host}:{args.port}/"
    print(f"gazepref study site: {where}  (dashboard: /admin/)", flush=True)
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False,
            request_handler=RedactingRequestHandler, threaded=True)
    return 0


def _check_unix_socket(path: str) -> None:
    """Refuse (one line) a unix socket path ``serve`` must not take: werkzeug deletes whatever is
    there before it binds (a file of the same name, the socket of a server still running, which
    then gets no more requests); a socket left by a server that stopped is taken."""
    import os
    import socket
    import stat

    from .. import UserError

    folder = os.path.dirname(path) or "."
    if not path:
        raise UserError("cannot listen on unix:: no socket path given (--host unix:///PATH/site.sock)")
    if not os.path.isdir(folder):
        raise UserError(f"cannot listen on unix:{path}: no folder {folder!r}")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UserError(f"cannot listen on unix:{path}: something else is there (serve would delete it)")
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(2.0)  # (a server that listens but no longer accepts: connect would wait)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):  # nobody listens: a socket left behind, taken
            return
        except OSError:  # a full backlog (EAGAIN), a timeout: a server is there
            pass
    raise UserError(f"cannot listen on unix:{path}: a server listens there")


def _read_password(from_stdin: bool) -> str:
    from .. import UserError

    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:  # (a script without --password-stdin, input from /dev/null: no password at all)
            raise UserError("no password given: standard input is not a terminal and gave no line "
                            "(pipe the password in, e.g. with --password-stdin)" if not from_stdin else
                            "no password given on standard input (--password-stdin reads its first line)")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise UserError("the passwords differ")
    if len(password) < 8:
        raise UserError("the password must have at least 8 characters")
    return password


def _scope_arguments(p: argparse.ArgumentParser) -> None:
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--all-studies", action="store_true", help="the account opens every study, also later ones")
    scope.add_argument("--study", action="append", default=[], metavar="SLUG",
                       help="the account opens this study (repeat for several)")
    p.add_argument("--allow-missing", action="store_true",
                   help="accept a --study slug no study has yet (its file not served yet)")


def _open_accounts(args: argparse.Namespace, create: bool = False):
    """The session factory of the database the command names (``create``: a missing SQLite file
    is made, as the site would; else it is an error)."""
    from .. import store
    from .app import instance_folder

    if create:
        url = store.database_url(args.db, instance_folder(args.instance))  # the site creates it where missing
    else:
        url = store.database_url(args.db, args.instance, must_exist=True)
    with _one_line_database_errors(url):
        return store.init_db(store.make_engine(url))


def _user(s, name: str):
    from sqlalchemy import select

    from .. import UserError, store

    user = s.scalar(select(store.User).where(store.User.username == name))
    if user is None:
        raise UserError(f"no user {name!r} (gazepref user list shows the accounts)")
    return user


def _check_slugs(s, slugs: list[str], allow_missing: bool) -> None:
    """Every slug has a study's form and, unless ``allow_missing``, names a study of the database."""
    from sqlalchemy import select

    from .. import UserError, store
    from .config import is_study_slug

    for slug in slugs:
        if slug == store.ALL_STUDIES:  # how every study is stored: granted by name only (--all-studies)
            raise UserError(f"not a study slug: {slug!r} (every study: --all-studies)")
        if not is_study_slug(slug):
            raise UserError(f"not a study slug: {slug!r} (letters, digits, '-' or '_')")
    known = set(s.scalars(select(store.Study.slug).where(store.Study.slug.in_(slugs))))
    missing = [slug for slug in dict.fromkeys(slugs) if slug not in known]
    if missing and not allow_missing:
        raise UserError(f"no study {missing[0]!r} in the database (the site makes a study when it first serves "
                        f"its file; --allow-missing grants it before)")


def _scope_text(r: dict) -> str:
    from .accounts import describe_scope

    return describe_scope(r["all_studies"], r["studies"])


def _user_add(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .. import UserError, store
    from ..cli import emit
    from .accounts import scope, set_password, set_scope

    name = args.username.strip()
    if not name or len(name) > 64:
        raise UserError("the user name must have 1 to 64 characters")
    slugs = [store.ALL_STUDIES] if args.all_studies else list(dict.fromkeys(args.study))
    sessions = _open_accounts(args, create=True)
    with sessions() as s:  # the mistakes a password prompt would come too early for
        exists = s.scalar(select(store.User.id).where(store.User.username == name)) is not None
        if not exists and not slugs:
            raise UserError("a new account needs its studies: --all-studies, or --study SLUG (repeatable)")
        _check_slugs(s, [] if args.all_studies else slugs, args.allow_missing)  # ("*" typed is no slug)
    password = _read_password(args.password_stdin)
    with sessions() as s, s.begin():
        user = s.scalar(select(store.User).where(store.User.username == name))
        created = user is None
        if created:
            user = store.User(username=name, password_hash="")
            s.add(user)
        set_password(s, user, password)  # a changed password ends the account's sessions
        s.flush()
        if slugs:
            set_scope(s, user, slugs)
        every, have = scope(s, user.id)
    emit({"username": name, "created": created, "all_studies": every, "studies": have}, args.json,
         lambda r: f"{'created' if r['created'] else 'updated password of'} user {r['username']} "
                   f"(studies: {_scope_text(r)})")
    return 0


def _slugs_of(args: argparse.Namespace) -> list[str]:
    from .. import UserError, store

    if args.all_studies == bool(args.slugs):
        raise UserError("name the studies: SLUG ... or --all-studies (not both)")
    return [store.ALL_STUDIES] if args.all_studies else list(dict.fromkeys(args.slugs))


def _user_grant(args: argparse.Namespace) -> int:
    from .accounts import grant

    slugs = _slugs_of(args)
    with _open_accounts(args)() as s, s.begin():
        user = _user(s, args.username)
        _check_slugs(s, [] if args.all_studies else slugs, args.allow_missing)  # ("*" typed is no slug)
        grant(s, user, slugs)
        result = _scope_result(s, user)
    return _emit_scope(result, args)


def _scope_result(s, user) -> dict:
    """What ``user grant`` and ``user revoke`` print: the account's scope after the change."""
    from .accounts import scope

    every, have = scope(s, user.id)
    return {"username": user.username, "all_studies": every, "studies": have}


def _emit_scope(result: dict, args: argparse.Namespace) -> int:
    from ..cli import emit

    emit(result, args.json, lambda r: f"user {r['username']} may open: {_scope_text(r)}")
    return 0


def _user_revoke(args: argparse.Namespace) -> int:
    from .accounts import revoke

    slugs = _slugs_of(args)
    with _open_accounts(args)() as s, s.begin():
        user = _user(s, args.username)
        revoke(s, user, slugs)
        result = _scope_result(s, user)
    return _emit_scope(result, args)


def _user_delete(args: argparse.Namespace) -> int:
    from .. import UserError
    from ..cli import emit
    from .accounts import delete_account, scope

    with _open_accounts(args)() as s, s.begin():
        user = _user(s, args.username)
        every, have = scope(s, user.id)
        if every and not args.force and not _others_with_all_studies(s, user.id):
            raise UserError(f"user {user.username} is the last account granted all studies: give another "
                            "account --all-studies first (gazepref user grant NAME --all-studies), or --force")
        sessions = delete_account(s, user)
    emit({"username": args.username, "deleted": True, "all_studies": every, "studies": have,
          "sessions_ended": sessions}, args.json,
         lambda r: f"deleted user {r['username']} (it could open: {_scope_text(r)}; "
                   f"{r['sessions_ended']} logged-in session(s) ended)")
    return 0


def _others_with_all_studies(s, user_id: int) -> int:
    """How many accounts other than ``user_id`` are granted all studies."""
    from sqlalchemy import func, select

    from .. import store

    A = store.StudyAccess
    return s.scalar(select(func.count()).where(A.study_slug == store.ALL_STUDIES, A.user_id != user_id)) or 0


def _user_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .. import store
    from ..cli import emit
    from .accounts import scope

    rows = []
    with _open_accounts(args)() as s:
        served = set(s.scalars(select(store.Study.slug)))
        for user in s.scalars(select(store.User).order_by(store.User.username)):
            every, have = scope(s, user.id)
            rows.append({"username": user.username, "all_studies": every, "studies": have,
                         "not_served_yet": [x for x in have if x not in served]})

    def text(rows: list[dict]) -> str:
        if not rows:
            return "no researcher accounts (gazepref user add NAME --study SLUG)"
        width = max(len(r["username"]) for r in rows)
        lines = []
        for r in rows:
            note = f"  (not served yet: {', '.join(r['not_served_yet'])})" if r["not_served_yet"] else ""
            lines.append(f"{r['username']:<{width}}  {_scope_text(r)}{note}")
        return "\n".join(lines)

    emit(rows, args.json, text)
    return 0


def register_study(sub: argparse._SubParsersAction) -> None:
    from ..datasets.sources import add_database_arguments

    study = sub.add_parser("study", help="study files and synthetic studies (check, simulate)")
    ssub = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    chk = ssub.add_parser(
        "check", help="validate a study file (TOML) as the site's start does, without starting it",
        description="Read and validate a study configuration file exactly as `gazepref serve` and "
                    "create_app() do (unknown keys, the [gaze] table with the webcam on, demo models' "
                    "variant/rank): an error is one line naming the file and the key (exit status 2), "
                    "else a short summary. Neither a database nor an LLM is touched.")
    chk.add_argument("file", metavar="FILE", help="the study configuration file")
    chk.add_argument("--json", action="store_true", help="print JSON")
    chk.set_defaults(func=_study_check)
    find = ssub.add_parser(
        "find-participant", help="the pseudonym of a participant given their platform id (a deletion request)",
        description="A participant who asks for their data to be deleted names their platform id (their "
                    "Prolific or MTurk worker id); the site stores only a pseudonym of it (HMAC with the "
                    "study's salt). This prints that participant's pseudonym and where they are, so their "
                    "row can be found on the dashboard (its Pseudonym column shows the first 12 "
                    "characters) and deleted there. The id is "
                    "neither stored nor logged. Exit status 1 when nobody of the study has that id.")
    find.add_argument("study", metavar="SLUG", help="the study's slug")
    ids = find.add_mutually_exclusive_group(required=True)
    ids.add_argument("--prolific", metavar="ID", help="the participant's Prolific id (PROLIFIC_PID)")
    ids.add_argument("--mturk", metavar="ID", help="the worker's MTurk id (workerId)")
    ids.add_argument("--pid", metavar="ID", help="the id of another platform's link (pid or participant)")
    add_database_arguments(find)
    find.add_argument("--json", action="store_true", help="print JSON")
    find.set_defaults(func=_study_find_participant)
    sim = ssub.add_parser(
        "simulate", help="simulated participants with a known implicit signal, through the site's ingest path",
        description="Simulated participants chat, read and choose through the study site's own routes "
                    "(telemetry batches with gaze rows, as the page sends them) and dwell longer on the "
                    "answer they prefer. EFFECT D is Cohen's d_z of the within-turn difference in log gaze "
                    "dwell per character between the preferred and the other answer (an ideal observer "
                    "of that difference picks the preferred answer with probability Phi(D)); answer "
                    "lengths carry no information. See docs/simulation.md.")
    sim.add_argument("--participants", type=int, required=True, help="number of simulated participants")
    sim.add_argument("--effect", type=float, required=True, help="effect size D (0: no implicit signal)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.add_argument("--tasks", type=int, default=2, help="pairwise tasks per participant (default 2)")
    sim.add_argument("--turns", type=int, default=4, help="turns per task (default 4)")
    sim.add_argument("--batch-ms", type=float, default=1000.0, metavar="MS",
                     help="page time per telemetry batch (default 1000: one a second, as the page sends "
                          "them); a larger one sends the same rows in fewer, larger batches: a faster "
                          "simulation of the same study (100-60000)")
    where = sim.add_mutually_exclusive_group(required=True)
    where.add_argument("--study", metavar="SLUG", help="write into the site's database as this (new) study")
    where.add_argument("--out", metavar="DIR", help="write a Parquet export here (a temporary database is used)")
    add_database_arguments(sim)
    sim.add_argument("--json", action="store_true", help="print JSON")
    sim.set_defaults(func=_study_simulate)


def study_summary(cfg) -> dict:
    """What a checked study file sets up, in a few fields (``gazepref study check``)."""
    from .gaze_settings import calibration_warnings, gaze_settings

    summary = {
        "slug": cfg.slug, "name": cfg.name, "webcam": cfg.webcam,
        "pairwise_tasks": cfg.pairwise_tasks, "pointwise_tasks": cfg.pointwise_tasks,
        "min_turns": cfg.min_turns, "max_turns": cfg.max_turns, "order": cfg.order, "topics": len(cfg.topics),
        "models": {name: spec.backend for name, spec in cfg.models.items()},
        "pairs": [list(p) for p in cfg.pairs], "pointwise_models": list(cfg.pointwise_models),
        "platform": cfg.platform.name,
        "questions": {"demographics": len(cfg.demographics_questions) if cfg.demographics else 0,
                      "pre_task": len(cfg.pre_task_questions), "post_task": len(cfg.post_task_questions)},
        "gaze": None, "warnings": [],
    }
    if cfg.calibration:  # already checked by load_config (strict); read again for what it sets
        g = gaze_settings(cfg)
        summary["gaze"] = {"compute": g.compute, "calibration_points": g.calibration_points,
                           "keep_frames": g.keep_frames, "recalibrate_every": g.recalibrate_every}
        summary["warnings"] = calibration_warnings(g)
    return summary


def _study_check_text(r: dict) -> str:
    tasks = f"{r['pairwise_tasks']} pairwise + {r['pointwise_tasks']} pointwise task(s), " \
            f"{r['min_turns']}-{r['max_turns']} turns"
    models = ", ".join(f"{n} ({b})" for n, b in r["models"].items())
    gaze = "" if r["gaze"] is None else (f"; gaze: compute={r['gaze']['compute']}, "
                                         f"{r['gaze']['calibration_points']} calibration points")
    return (f"{r['file']}: ok - study {r['slug']!r}: {tasks}, {r['topics']} topic(s); models: {models}; "
            f"webcam {r['webcam']}{gaze}; platform {r['platform']}"
            + "".join(f"\n{r['file']}: warning: {w}" for w in r["warnings"]))


def _study_check(args: argparse.Namespace) -> int:
    from ..cli import emit
    from .config import load_config

    cfg = load_config(args.file)  # the function create_app() uses: strict, [gaze] and demo models included
    emit({"file": args.file, "ok": True, **study_summary(cfg)}, args.json, _study_check_text)
    return 0


def _study_find_participant(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from .. import UserError, store
    from ..cli import emit
    from ..datasets.store_recording import StoreRecording
    from .identity import arrival_from_args
    from .plan import step_at
    from .platforms import screened_out
    from .purge import deletion_of, withdrawal_of
    from .security import pseudonymise

    raw = {"PROLIFIC_PID": args.prolific, "workerId": args.mturk, "pid": args.pid}
    arrival = arrival_from_args({k: v for k, v in raw.items() if v})
    if arrival.platform == "direct":
        raise UserError("the platform id is empty")
    rec = StoreRecording.open(args.study, db_url=args.db, instance=args.instance)
    try:
        pseudonym = pseudonymise(rec.study.salt, arrival.platform, arrival.raw_id)  # as the site's arrival does
        p = rec.db.scalar(select(store.Participant).where(store.Participant.study_id == rec.study.id,
                                                          store.Participant.pseudonym == pseudonym))
        found = None
        if p is not None:
            state = p.state or {}
            status = ("withdrawn" if withdrawal_of(p) else "deleted" if deletion_of(p)
                      else "declined" if p.consent is False
                      else "finished" if state.get("finished_at")
                      else "screened out" if screened_out(p) else "started")
            found = {"pseudonym": p.pseudonym, "dashboard": p.pseudonym[:12], "status": status,
                     "step": step_at(state, "-") if p.consent else "-",
                     "started": p.created_at.isoformat(timespec="seconds") if p.created_at else None}
    finally:
        rec.close()
    what = {"withdrawn": "their data went when they withdrew: nothing to delete",
            "deleted": "their data is deleted; 'Allow to start again' there lets them take part anew",
            "declined": "they declined: nothing of theirs was recorded"}

    emit({"study": args.study, "platform": arrival.platform, "participant": found}, args.json,
         lambda r: (f"{r['platform']} participant of study {r['study']}: pseudonym {found['pseudonym']} "
                    f"({found['status']}, step {found['step']}): the row {found['dashboard']} of the "
                    f"dashboard's study page, "
                    + what.get(found["status"], "where 'Delete data' deletes their data")
                    if found else f"no {r['platform']} participant of study {r['study']} with that id"))
    return 0 if found else 1


def _study_simulate(args: argparse.Namespace) -> int:
    from .. import UserError
    from ..cli import emit
    from .simulate import simulate

    if args.tasks < 1 or args.turns < 1:
        raise UserError("--tasks and --turns must be at least 1")
    if args.out is not None and (args.db or args.instance):
        raise UserError("--db and --instance locate the database for --study; --out uses a temporary one")
    summary = simulate(args.participants, args.effect, seed=args.seed, study=args.study, out=args.out,
                       db=args.db, instance=args.instance, tasks=args.tasks, turns=args.turns, progress=True,
                       batch_ms=args.batch_ms)
    emit(summary, args.json)
    return 0
