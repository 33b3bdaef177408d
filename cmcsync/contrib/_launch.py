"""The start-once rules: should this process run the streaming client, and when?

A web application is imported by many processes that must not stream: ``manage.py migrate``,
``flask shell``, the autoreloader's watcher, a gunicorn master that forks its workers, a test
run. :func:`decide` is the whole policy, a pure function of what :func:`detect_launch` finds
out about the process (its command line, environment and server), so every rule is unit
tested on its own.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

import attrs

__all__ = ["Action", "Decision", "Launch", "decide", "detect_launch", "program_name"]

#: Django management commands that serve requests; every other command is a one-off.
DJANGO_SERVING_COMMANDS = frozenset({"runserver", "runserver_plus"})
#: Programs that import the application without serving it.
NOT_SERVING_PROGRAMS = frozenset({"pytest", "py.test", "celery", "sphinx-build"})
#: The ``flask`` command's global options that take a value (``flask --app hello run``).
_FLASK_VALUE_OPTIONS = frozenset({"--app", "-A", "--env-file", "-e"})
_DJANGO_PROGRAMS = frozenset({"manage.py", "django-admin", "django-admin.py", "django"})
_FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


class Action(str, enum.Enum):
    """What to do about the client in this process."""

    #: Start it now: this process serves requests.
    START = "start"
    #: Start it in each child this process forks (a pre-forking server's master), or at the
    #: first request this process itself serves.
    AFTER_FORK = "after_fork"
    #: Do not start it: this process does not serve requests.
    SKIP = "skip"


@attrs.frozen(kw_only=True)
class Decision:
    """The outcome of :func:`decide`.

    :param action: what to do.
    :param reason: why, in words fit for a log line.
    """

    action: Action
    reason: str


@attrs.frozen(kw_only=True)
class Launch:
    """What a process was started as: the inputs of :func:`decide`.

    :param argv: the command line (``sys.argv``).
    :param environ: the environment variables the rules read (``RUN_MAIN``,
        ``WERKZEUG_RUN_MAIN``, ``FLASK_DEBUG``).
    :param server: ``"gunicorn"`` or ``"uwsgi"`` when the process belongs to one of these
        pre-forking servers, else ``None``.
    :param worker: for such a server, whether this process is a worker (``False``: the
        master, which forks the workers and serves nothing).
    """

    argv: tuple[str, ...]
    environ: Mapping[str, str] = attrs.field(factory=dict)
    server: str | None = None
    worker: bool = False


def program_name(argv: Sequence[str]) -> str:
    """The name of the program that started the process.

    ``python -m pkg`` puts the path of ``pkg/__main__.py`` in ``argv[0]``; that counts as
    ``pkg``.

    :param argv: the command line.
    :returns: the program's base name, ``""`` when ``argv`` is empty.
    """
    if not argv or not argv[0]:
        return ""
    path = argv[0]
    base = os.path.basename(path)
    if base == "__main__.py":
        return os.path.basename(os.path.dirname(path))
    return base


def _first_command(args: Sequence[str], value_options: frozenset[str]) -> str | None:
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in value_options:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg
    return None


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() not in _FALSE_WORDS


def _flask_reloads(args: Sequence[str], environ: Mapping[str, str]) -> bool:
    # As in ``flask run``: the reloader follows --reload/--no-reload, else the debug mode,
    # which follows --debug/--no-debug, else FLASK_DEBUG.
    if "--no-reload" in args:
        return False
    if "--reload" in args:
        return True
    if "--no-debug" in args:
        return False
    return "--debug" in args or _flag(environ, "FLASK_DEBUG")


def decide(launch: Launch, *, autostart: bool = True) -> Decision:
    """Decide whether this process should start the client, following the start-once rules.

    In order, the first rule that applies:

    1. ``autostart`` off: never.
    2. A gunicorn or uWSGI worker: now. Their master: in each worker it forks.
    3. Under pytest, celery or sphinx-build: never (they import the app but serve nothing).
    4. ``manage.py``/``django-admin``: only for ``runserver`` (and ``runserver_plus``), and
       under the autoreloader only in the child it spawns (``RUN_MAIN=true``), not in the
       watcher; every other command (``migrate``, ``shell``, ``check``, ``test``,
       ``collectstatic``, ``cmcsync_run`` ...) never.
    5. ``flask``: only for ``flask run``, and with the reloader on only in its child
       (``WERKZEUG_RUN_MAIN=true``); every other command (``shell``, ``routes``,
       ``cmcsync run`` ...) never.
    6. Anything else (mod_wsgi, waitress, a script): now.

    :param launch: what the process was started as, see :func:`detect_launch`.
    :param autostart: the integration's ``AUTOSTART`` setting.
    :returns: the action and the reason for it.
    """
    if not autostart:
        return Decision(action=Action.SKIP, reason="autostart is off")
    if launch.server is not None:
        if launch.worker:
            return Decision(action=Action.START, reason=f"a {launch.server} worker")
        return Decision(
            action=Action.AFTER_FORK,
            reason=f"the {launch.server} master: the client starts in each worker it forks",
        )
    program = program_name(launch.argv)
    args = launch.argv[1:]
    env = launch.environ
    if program in NOT_SERVING_PROGRAMS:
        return Decision(action=Action.SKIP, reason=f"{program} does not serve requests")
    if program in _DJANGO_PROGRAMS:
        command = _first_command(args, frozenset())
        if command not in DJANGO_SERVING_COMMANDS:
            what = f"the management command {command!r}" if command else "no management command"
            return Decision(action=Action.SKIP, reason=f"{what} does not serve requests")
        if env.get("RUN_MAIN") == "true" or env.get("WERKZEUG_RUN_MAIN") == "true":
            return Decision(action=Action.START, reason=f"{command}, in the autoreloader's child")
        if "--noreload" in args:
            return Decision(action=Action.START, reason=f"{command} without the autoreloader")
        return Decision(
            action=Action.SKIP,
            reason=f"{command}'s autoreloader watcher: the client starts in the child it runs",
        )
    if program == "flask":
        command = _first_command(args, _FLASK_VALUE_OPTIONS)
        if command != "run":
            what = f"'flask {command}'" if command else "'flask' without a command"
            return Decision(action=Action.SKIP, reason=f"{what} does not serve requests")
        if env.get("WERKZEUG_RUN_MAIN") == "true":
            return Decision(action=Action.START, reason="flask run, in the reloader's child")
        if _flask_reloads(args, env):
            return Decision(
                action=Action.SKIP,
                reason="flask run's reloader watcher: the client starts in the child it runs",
            )
        return Decision(action=Action.START, reason="flask run without the reloader")
    return Decision(action=Action.START, reason=f"started as {program or 'python'}")


def detect_launch() -> Launch:
    """Describe the current process for :func:`decide`.

    :returns: the command line, the relevant environment variables, and whether the process
        is a gunicorn or uWSGI master or worker.
    """
    env = {
        name: os.environ[name]
        for name in ("RUN_MAIN", "WERKZEUG_RUN_MAIN", "FLASK_DEBUG")
        if name in os.environ
    }
    argv = tuple(sys.argv)
    server, worker = _detect_server(argv)
    return Launch(argv=argv, environ=env, server=server, worker=worker)


def _detect_server(argv: Sequence[str]) -> tuple[str | None, bool]:
    uwsgi = sys.modules.get("uwsgi")
    worker_id = getattr(uwsgi, "worker_id", None)
    if callable(worker_id):
        # uWSGI's embedded module: worker_id() is 0 in the master.
        return "uwsgi", bool(worker_id())
    if program_name(argv) == "gunicorn" or "gunicorn.arbiter" in sys.modules:
        return "gunicorn", _in_gunicorn_worker(sys._getframe())
    return None, False


def _in_gunicorn_worker(frame: FrameType | None) -> bool:
    # gunicorn loads the app either in the master (--preload, from the arbiter) or in each
    # worker after the fork (from the worker class); only the call stack tells which.
    marker = os.sep + os.path.join("gunicorn", "workers") + os.sep
    while frame is not None:
        if marker in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False
