"""Flask integration: the ``CMCSync`` extension, ``CMCSYNC_*`` config keys, ``flask cmcsync run``.

::

    from flask import Flask
    from cmcsync.contrib.flask import CMCSync

    app = Flask(__name__)
    app.config["CMCSYNC_SUBSCRIPTIONS"] = [
        {"channel": "market@crypto_latest_price", "crypto_ids": [1, 1027]},
    ]
    cmc = CMCSync(app, plugins=[PriceBoard()])      # or CMCSync() + cmc.init_app(app)

    @app.get("/subscriptions")
    def subscriptions():
        client = cmc.client                         # None where no client runs
        ...

The client starts once per serving process: ``flask run`` (in the reloader's child when
reloading), each gunicorn or uWSGI worker, a plain WSGI server; never in ``flask shell``,
``flask routes`` or other commands, nor under pytest. ``flask cmcsync run`` runs it in the
foreground as a dedicated worker. ``GET /cmcsync/health`` reports it (``CMCSYNC_HEALTH_URL``).

Plugins run on the client's dispatcher thread, outside any application context: push one
(``with app.app_context():``) in a hook that needs ``current_app`` or an extension.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

import attrs
import click
from flask import Flask, Response, current_app, jsonify
from flask.cli import AppGroup

from cmcsync.client import Client
from cmcsync.contrib._foreground import exit_code_of, run_foreground
from cmcsync.contrib._launch import Action, Decision, decide, detect_launch
from cmcsync.contrib._runtime import Role, Runtime
from cmcsync.contrib._settings import IntegrationSettings, build_client, lock_path_of
from cmcsync.exceptions import CmcsyncError, ConfigError

__all__ = ["CONFIG_PREFIX", "DEFAULT_HEALTH_URL", "CMCSync", "cli"]

log = logging.getLogger("cmcsync.contrib.flask")

#: The prefix of the extension's config keys.
CONFIG_PREFIX = "CMCSYNC_"
#: Where the health check is served unless ``CMCSYNC_HEALTH_URL`` says otherwise.
DEFAULT_HEALTH_URL = "/cmcsync/health"
_EXTENSION = "cmcsync"
_FLASK_ONLY = ("HEALTH_URL",)


def _name_of(key: str) -> str:
    return f"{CONFIG_PREFIX}{key}"


@attrs.define(eq=False)
class _AppState:
    """What the extension keeps per application, in ``app.extensions["cmcsync"]``."""

    settings: IntegrationSettings
    plugins: list[object]
    runtime: Runtime
    decision: Decision

    def new_runtime(self, leader: bool | None = None) -> Runtime:
        """Replace the runtime by a new one (closing the old), leader mode as given."""
        self.runtime.close()
        self.runtime = _make_runtime(self.settings, self.plugins, leader)
        return self.runtime


def _make_runtime(
    settings: IntegrationSettings, plugins: list[object], leader: bool | None = None
) -> Runtime:
    use_leader = settings.leader if leader is None else leader
    make = functools.partial(build_client, settings, plugins, name_of=_name_of)
    return Runtime(make, lock_path=lock_path_of(settings) if use_leader else None)


class CMCSync:
    """The cmcsync extension: one client per serving process of each application.

    :param app: the application, or ``None`` to call :meth:`init_app` later.
    :param plugins: plugin objects for the client (besides ``CMCSYNC_PLUGINS``).
    """

    def __init__(self, app: Flask | None = None, *, plugins: Iterable[object] = ()) -> None:
        self._plugins = list(plugins)
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        return f"<cmcsync.contrib.flask.CMCSync plugins={len(self._plugins)}>"

    def init_app(self, app: Flask, *, plugins: Iterable[object] = ()) -> None:
        """Read the ``CMCSYNC_*`` config, add the command and the health route, and start
        the client if this process serves requests (the start-once rules).

        :param app: the application.
        :param plugins: more plugin objects for this application's client only.
        :raises ConfigError: for an invalid ``CMCSYNC_*`` key or value, a missing key when
            the client starts, or an application initialised twice.
        """
        if _EXTENSION in app.extensions:
            raise ConfigError(
                f"cmcsync is already initialised on the app {app.name!r}; call init_app once",
                param="app",
            )
        values = {
            key[len(CONFIG_PREFIX) :]: value
            for key, value in app.config.items()
            if key.startswith(CONFIG_PREFIX)
        }
        health_url = values.pop("HEALTH_URL", DEFAULT_HEALTH_URL)
        if health_url is not None and (
            not isinstance(health_url, str) or not health_url.startswith("/")
        ):
            raise ConfigError(
                f"{_name_of('HEALTH_URL')} must be a path starting with '/', or None for no "
                f"health route; got {health_url!r}",
                param="HEALTH_URL",
            )
        settings = IntegrationSettings.from_mapping(values, name_of=_name_of, extra=_FLASK_ONLY)
        decision = decide(detect_launch(), autostart=settings.autostart)
        app_plugins = [*self._plugins, *plugins]
        state = _AppState(
            settings=settings,
            plugins=app_plugins,
            runtime=_make_runtime(settings, app_plugins),
            decision=decision,
        )
        app.extensions[_EXTENSION] = state
        app.cli.add_command(cli)
        if health_url is not None:
            app.add_url_rule(health_url, endpoint="cmcsync_health", view_func=_health)
        app.before_request(functools.partial(_first_request, state))
        log.debug("cmcsync: %s (%s)", decision.action.value, decision.reason)
        if decision.action is Action.START:
            try:
                state.runtime.start()
            except ConfigError as exc:
                raise ConfigError(
                    f"{exc} (set {_name_of('AUTOSTART')} = False to start it yourself)",
                    param=exc.param,
                ) from exc
        elif decision.action is Action.AFTER_FORK:
            state.runtime.defer_until_fork()

    # --- per application ----------------------------------------------------------------

    @property
    def runtime(self) -> Runtime:
        """The runtime of the current application (inside an app or request context)."""
        return _state(current_app).runtime

    @property
    def client(self) -> Client | None:
        """The client of the current application in this process, or ``None`` where none runs
        (not started here, or a follower in leader mode)."""
        return _state(current_app).runtime.client

    def get_runtime(self, app: Flask | None = None) -> Runtime:
        """The runtime of ``app`` (default: the current application) in this process: its
        client, its role in leader mode, its health."""
        return _state(app or current_app).runtime

    def get_client(self, app: Flask | None = None) -> Client | None:
        """The client of ``app`` (default: the current application) in this process.

        :returns: ``None`` where none runs.
        """
        return _state(app or current_app).runtime.client

    def start(self, app: Flask | None = None) -> Runtime:
        """Start the client of ``app`` in this process now, whatever the start-once rules say.

        :param app: the application; default: the current one.
        :returns: its runtime.
        :raises ConfigError: for a missing key or a plugin that cannot be loaded.
        """
        state = _state(app or current_app)
        if state.runtime.role is Role.CLOSED:
            state.new_runtime()
        return state.runtime.start()

    def stop(self, app: Flask | None = None, timeout: float | None = None) -> None:
        """Close the client of ``app`` (and let go of the leader lock). Idempotent.

        :param app: the application; default: the current one.
        :param timeout: seconds to wait for its threads.
        """
        _state(app or current_app).runtime.close(timeout)


def _state(app: Flask) -> _AppState:
    state = app.extensions.get(_EXTENSION)
    if not isinstance(state, _AppState):
        raise ConfigError(
            f"cmcsync is not initialised on the app {app.name!r}: call CMCSync(app) or "
            "CMCSync().init_app(app)",
            param="app",
        )
    return state


def _first_request(state: _AppState) -> None:
    if state.runtime.role is not Role.WAITING:
        return
    try:
        state.runtime.ensure_started()
    except Exception:
        # A stream that cannot start must not fail the request that noticed it.
        log.exception("cmcsync: could not start the client")


def _health() -> Response:
    state = _state(current_app)
    status, body = state.runtime.health()
    if status != 200 and body["role"] in ("idle", "waiting"):
        body["reason"] = f"not started in this process: {state.decision.reason}"
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


#: The ``flask cmcsync`` command group, added to every initialised application.
cli = AppGroup("cmcsync", help="The cmcsync streaming client.")


@cli.command("run")
@click.option(
    "--duration", type=float, default=None, metavar="SECONDS", help="Stop after this many seconds."
)
@click.option(
    "--leader/--no-leader",
    default=None,
    help="Leader mode: among the processes of this host using the same lock, one streams "
    "and the others stand by (default: CMCSYNC_LEADER).",
)
def run_command(duration: float | None, leader: bool | None) -> None:
    """Run the client in the foreground until SIGTERM or Ctrl-C (a dedicated worker).

    Exit status: 0 stopped, 3 key or plan rejected, 4 gave up connecting, 1 other errors.
    """
    if duration is not None and duration <= 0:
        raise click.BadParameter(f"must be > 0, got {duration}", param_hint="--duration")
    state = _state(current_app)
    if state.runtime.role not in (Role.IDLE, Role.WAITING, Role.CLOSED):
        raise click.ClickException("a cmcsync client already runs in this process")
    state.new_runtime(leader)
    try:
        run_foreground(state.runtime, duration=duration, say=click.echo)
    except CmcsyncError as exc:
        error = click.ClickException(f"cmcsync: {exc}")
        # click declares exit_code on the class; this error carries the documented code.
        setattr(error, "exit_code", exit_code_of(exc))  # noqa: B010
        raise error from exc
