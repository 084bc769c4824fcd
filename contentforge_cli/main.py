"""``contentforge``: the command line, assembled from one module per command group.

============================  =====================================================================
module                        commands
============================  =====================================================================
``batch``                     demo, produce, templates, pieces, stats, verify, costs
``stack``                     bootstrap, deploy, up, down
``cpu_worker``                cpu-worker (the cpu pool's worker, flow runs forked from preloaded code)
``gpu_worker``                gpu-worker (a warm GPU process for distributed mode)
``personas``                  personas add, list, random
``server``                    server start, stop
``publish``                   publish schedule, plan, due, list
``review``                    review list, approve, reject
``api``                       api serve
``strategy``                  brand research, show; topics plan; blog write; social derive
``jobs``                      jobs list, show, cancel, watch
``models``                    models search, install, list, verify, remove, prune
``regenerate``                regenerate, variations, generate (one image, per-request parameters)
``chat``                      chat list, show, takeover, reply, handback
============================  =====================================================================

Shared construction (console, settings, repository, stores) is in ``context``. Errors
a user can act on (``ContentForgeError``, a record that does not exist, a bad ``CONTENTFORGE_*``
setting) print as one ``error: …`` line and exit with code 2, here and nowhere else; a command
handles an error itself only to say something different.
"""

from __future__ import annotations

import os
import sys

# transformers warns at import about optional torchvision image processors nobody here uses; set
# before anything imports it (validation may load the image backend before `connect`). Errors show.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
from typing import Any

import click
import typer
from pydantic import ValidationError
from typer.core import TyperGroup

from contentforge.config import Settings
from contentforge.errors import ContentForgeError
from contentforge.validation import settings_problem
from contentforge_cli import (
    analytics,
    api,
    batch,
    chat,
    cpu_worker,
    gpu_worker,
    jobs,
    models,
    personas,
    publish,
    regenerate,
    review,
    server,
    stack,
    strategy,
)
from contentforge_cli.context import fail


class OneLineErrors(TyperGroup):
    """The root command: what any command raises for the user to fix becomes one line, exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ContentForgeError as exc:
            fail(str(exc))
        except LookupError as exc:
            from contentforge.db import RecordNotFound  # SQLAlchemy stays unloaded for --help

            if not isinstance(exc, RecordNotFound):
                raise
            fail(str(exc))
        except ValidationError as exc:
            if exc.title != Settings.__name__:  # only settings read outside context.settings()
                raise
            fail(settings_problem(exc))


app = typer.Typer(
    cls=OneLineErrors,
    help="ContentForge: social-media content batches for AI personas, on Prefect.",
    no_args_is_help=True,
)
app.add_typer(batch.app)
app.add_typer(regenerate.app)
app.add_typer(stack.app)
app.add_typer(gpu_worker.app)
app.add_typer(cpu_worker.app)
app.add_typer(personas.app, name="personas")
app.add_typer(server.app, name="server")
app.add_typer(publish.app, name="publish")
app.add_typer(review.app, name="review")
app.add_typer(api.app, name="api")
app.add_typer(strategy.brand_app, name="brand")
app.add_typer(strategy.topics_app, name="topics")
app.add_typer(strategy.blog_app, name="blog")
app.add_typer(strategy.social_app, name="social")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.add_typer(chat.app, name="chat")
app.add_typer(analytics.app, name="analytics")

if __name__ == "__main__":
    sys.exit(app())
