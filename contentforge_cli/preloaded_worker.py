"""A process worker whose flow runs start from an interpreter that has already imported them.

Why: Prefect's process worker starts every flow run as two fresh interpreters, its workspace
supervisor and then ``python -m prefect.engine``, and each imports Prefect and the flow's modules
again: ~4 s of CPU per batch, measured on a 2-core machine, and with three batches asked for together
most of distributed mode's gap to the bare loop (their first image came 8.4-9.1 s after they were
asked for, against a generation phase within 2.5 % of the loop). Here a multiprocessing fork server
imports Prefect's engine and every module under ``flows/`` once, when the worker starts, and each flow
run is a process forked from it: a few milliseconds instead of seconds.

Everything else is the process worker's: the pool, its queues and concurrency, the job's environment,
the deployment's pull steps (run in the child by ``load_flow``), states, cancellation (the child leads
a process group of its own, which cancellation signals as Prefect's own starter does), crash
detection from the exit code, and a job with a ``command`` of its own (started as Prefect does).

What a fork server cannot know is code changed after it started: like a warm GPU worker, this worker
runs the ContentForge it imported, so restart it after an upgrade. It builds on Prefect 3.8's runner
internals (the ``ProcessStarter`` protocol, ``FlowRunExecutorContext``), hence pyproject's ``<3.9``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing
import os
import pkgutil
import sys
import tempfile
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
import anyio.abc
from prefect.flows import load_flow_from_flow_run
from prefect.runner._flow_run_executor import FlowRunExecutionResult, FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle, create_isolated_termination_scope
from prefect.settings import get_current_settings
from prefect.utilities.processutils import sanitize_subprocess_env
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker, ProcessWorkerResult

from contentforge_cli.scheduled_run_wakeups import submit_when_scheduled

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext

    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import WorkerFlowRunResponse
    from prefect.runner._control_channel import ControlChannel

ENGINE_MODULES = (
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.deployments.steps",
    # Imported by Task.create_run for a background run's parameters: the GPU stage's first send to the
    # warm GPU workers imported it in every batch run (py-spy: 0.2 s of CPU each, while batches start).
    "prefect.task_worker",
)


def preloaded_modules() -> list[str]:
    """Prefect's engine and every flow module: what a flow run would otherwise import on each start.

    Also this module (a child unpickles its target, ``_run_flow_run``, from here) and ``__main__``:
    multiprocessing runs the worker's main script again in each child unless the fork server has.
    """
    import flows

    flow_modules = [f"flows.{module.name}" for module in pkgutil.iter_modules(flows.__path__)]
    return ["__main__", *ENGINE_MODULES, __name__, *flow_modules]


def fork_server(modules: list[str]) -> ForkServerContext:
    """A started fork server that has imported ``modules``. Only the fork server imports them (the
    worker never runs a flow itself); a module it could not import fails the worker's start."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(modules)
    probe = context.Process(target=_import_all, args=(modules,))  # the server imports before it forks
    probe.start()
    probe.join()
    if probe.exitcode != 0:
        raise RuntimeError(f"the fork server could not import the flows (exit code {probe.exitcode})")
    return context


def _import_all(modules: list[str]) -> None:
    """In the fork server's first child: nothing for a module the server imported; the real error,
    printed to the worker's log, for one it skipped (it skips an ``ImportError`` silently)."""
    for module in modules:
        importlib.import_module(module)


def _run_flow_run(flow_run_id: UUID, cwd: Path, environment: dict[str, str], started: Any) -> None:
    """The child: a process group of its own, the job's directory and environment, then what
    ``python -m prefect.engine`` does with a flow run id (load the run, run the deployment's pull steps
    and load the flow, run it), then the exit handlers a fresh interpreter would run."""
    os.setsid()
    started.send(True)
    started.close()
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environment)
    # What the interpreter read from the environment at its start: the job's PYTHONPATH comes first.
    sys.path[:0] = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    try:
        _run_engine(flow_run_id)
    finally:
        # The fork server ends its children with os._exit, which skips atexit: Prefect's log and event
        # flushes, the slot dispatchers' closing (tasks/dispatch.py), logging.shutdown.
        atexit._run_exitfuncs()


def _run_engine(flow_run_id: UUID) -> None:
    import prefect.context
    from prefect._internal.control_listener import configure_from_env
    from prefect._internal.metrics import RunMetrics
    from prefect.context import SettingsContext, refresh_global_settings_context
    from prefect.engine import _drive_run_flow_result, handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow
    from prefect.logging.configuration import setup_logging

    from tasks.prefect_clients import sync_client_context

    # Prefect's settings and logging were set up from the fork server's environment; redo both from
    # the job's: the global settings serve threads started without this context.
    refresh_global_settings_context()
    setup_logging(incremental=False)
    refreshed = prefect.context.GLOBAL_SETTINGS_CONTEXT  # built from the job's environment just above
    with SettingsContext(profile=refreshed.profile, settings=refreshed.settings):
        configure_from_env()
        # One client for loading the run and for its engine, instead of one each (tasks/prefect_clients.py);
        # inside the signal handling, so a server it cannot reach is reported as Prefect's engine reports it.
        with handle_engine_signals(flow_run_id), sync_client_context():
            flow_run = load_flow_run(flow_run_id=flow_run_id)
            run_logger = flow_run_logger(flow_run=flow_run)
            try:
                flow = load_flow(flow_run)
            except Exception:
                run_logger.error("Unexpected exception encountered when trying to load flow", exc_info=True)
                raise
            with RunMetrics(flow_run, flow):
                # The adapter, as prefect.engine passes it (its annotation says Logger).
                result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)  # type: ignore[arg-type]
                _drive_run_flow_result(flow, result)


class ForkedEngineStarter:
    """Starts a flow run as a child of the fork server (Prefect's ``ProcessStarter`` protocol)."""

    def __init__(
        self,
        *,
        context: ForkServerContext,
        cwd: Path,
        env: dict[str, str | None],
        control_channel: ControlChannel | None,
    ) -> None:
        self._context = context
        self._cwd = cwd
        self._env = env
        self._control_channel = control_channel

    def _environment(self, flow_run: FlowRun, control: dict[str, str]) -> dict[str, str]:
        """What Prefect's engine starter gives ``python -m prefect.engine``: the worker's environment, the
        job's, the settings, and the run's own keys."""
        environment: dict[str, str | None] = dict(os.environ)
        environment.update(get_current_settings().to_environment_variables(exclude_unset=True))
        environment.update(self._env)
        environment.update(
            {
                "PREFECT__FLOW_RUN_ID": str(flow_run.id),
                "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
                **control,
            }
        )
        environment.pop("PREFECT__FLOW_ENTRYPOINT", None)  # load_flow then runs the deployment's pull steps
        return {
            key: value for key, value in sanitize_subprocess_env(environment).items() if value is not None
        }

    async def start(
        self,
        flow_run: FlowRun,
        task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        control: dict[str, str] = {}
        registered = False
        if self._control_channel is not None:
            with contextlib.suppress(RuntimeError):  # no loopback listener: cancellation kills instead
                port, token = self._control_channel.register(flow_run.id)
                control = {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}
                registered = True
        handed_off = False
        receiver, sender = self._context.Pipe(duplex=False)
        try:
            process = self._context.Process(
                target=_run_flow_run,
                args=(flow_run.id, self._cwd, self._environment(flow_run, control), sender),
                name=f"flow-run-{flow_run.id}",
            )
            # Off the event loop: a fork server that died is started again here, importing for seconds.
            await anyio.to_thread.run_sync(process.start)
            sender.close()
            # The child leads its process group before anyone may signal the group.
            await _first_readable(receiver.fileno(), process.sentinel)
            handle = ProcessHandle(
                process,  # type: ignore[arg-type]  # a fork-server process has the spawn one's interface
                termination_scope=create_isolated_termination_scope(process.pid or 0),
            )
            task_status.started(handle)
            handed_off = True
            # Waited for without a thread: anyio's 40 would cap the runs a worker can follow at once.
            await anyio.wait_readable(process.sentinel)
            process.join()
            if process.exitcode == FORK_SERVER_LOST and process.pid is not None:
                await _until_group_ends(process.pid)
        finally:
            receiver.close()
            sender.close()
            if registered and not handed_off and self._control_channel is not None:
                self._control_channel.unregister(flow_run.id)


FORK_SERVER_LOST = 255
"""The exit code multiprocessing reports for a fork-server child once the fork server itself is gone."""


async def _first_readable(*descriptors: int) -> None:
    """Until one of ``descriptors`` is readable (a message, an end of file, or a process's end)."""
    async with anyio.create_task_group() as group:

        async def wait(descriptor: int) -> None:
            await anyio.wait_readable(descriptor)
            group.cancel_scope.cancel()

        for descriptor in descriptors:
            group.start_soon(wait, descriptor)


async def _until_group_ends(group: int) -> None:
    """A fork server that died leaves its children running, their exit codes unknowable: wait for the
    run's process group to end before the run is judged, rather than marking a live run Crashed (its
    crash hooks would free a batch that is still producing)."""
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        except PermissionError:
            pass
        await anyio.sleep(1.0)


class PreloadedProcessWorker(ProcessWorker):
    """Prefect's process worker, with flow runs forked from a preloaded interpreter (``process`` pools)."""

    @classmethod
    def __dispatch_key__(cls) -> str:
        """Prefect's registry keeps ``process`` for its own worker; this one serves the same pools."""
        return "contentforge-preloaded-process"

    def __init__(self, *args: Any, context: ForkServerContext, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fork_context = context

    async def _submit_scheduled_flow_runs(
        self, flow_run_response: list[WorkerFlowRunResponse]
    ) -> list[FlowRun]:
        """Prefect's submission, without the runs this worker already runs.

        An answer read just before a run's Pending state landed can still list the run once its
        process started and it left ``_submitting_flow_run_ids``; its id still holds a slot of the
        worker's limit, and taking a slot again for it raises ``RuntimeError`` (not ``WouldBlock``),
        which would end the worker. Asking on events as well as on the poll makes that likelier.
        """
        if self._limiter is not None:
            holding = set(self._limiter.statistics().borrowers)
            flow_run_response = [entry for entry in flow_run_response if entry.flow_run.id not in holding]
        return await super()._submit_scheduled_flow_runs(flow_run_response)

    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> ProcessWorkerResult:
        if configuration._command_configured:  # a job with a command of its own starts it as Prefect does
            return await super().run(flow_run, configuration, task_status)
        task_status = task_status or anyio.TASK_STATUS_IGNORED
        directory = (
            contextlib.nullcontext(configuration.working_dir)
            if configuration.working_dir
            else tempfile.TemporaryDirectory(suffix="prefect")
        )
        execution: FlowRunExecutionResult | None = None
        with directory as working_dir, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with FlowRunExecutorContext() as runs:
                starter = ForkedEngineStarter(
                    context=self._fork_context,
                    cwd=Path(working_dir).resolve(),
                    env=configuration.env,
                    control_channel=runs.control_channel,
                )
                executor = runs.create_executor(
                    flow_run, starter, resolve_flow=load_flow_from_flow_run, propose_submitting=False
                )

                async def execute(*, task_status: anyio.abc.TaskStatus[ProcessHandle]) -> None:
                    nonlocal execution
                    execution = await executor.submit(task_status=task_status)

                async with anyio.create_task_group() as group:
                    handle = await group.start(execute)
                    if handle.pid is None:
                        raise RuntimeError("Flow run process has no PID")
                    task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))


DEFAULT_POLL_S = 2.0
"""How often the worker asks for runs unless Prefect's ``worker.query_seconds`` is set: Prefect's
own default, 10 s, is on average 5 s between a batch asked for and its start; one small read every
2 s per worker costs the server nothing worth that."""


def serve(pool: str, name: str, limit: int | None = None, poll_s: float | None = None) -> None:
    """Preload, then serve ``pool`` until stopped; signals as ``prefect worker start`` handles them (the
    first SIGTERM or Ctrl-C stops taking runs, a second kills)."""
    from prefect.settings import (
        PREFECT_WORKER_HEARTBEAT_SECONDS,
        PREFECT_WORKER_PREFETCH_SECONDS,
        PREFECT_WORKER_QUERY_SECONDS,
        temporary_settings,
    )
    from prefect.utilities.processutils import setup_signal_handlers_worker

    if poll_s is None and "query_seconds" not in get_current_settings().worker.model_fields_set:
        poll_s = DEFAULT_POLL_S  # neither the environment nor a profile nor prefect.toml set it

    context = fork_server(preloaded_modules())
    setup_signal_handlers_worker(os.getpid(), "the cpu worker", print)

    async def work() -> None:
        worker = PreloadedProcessWorker(
            name=name,
            work_pool_name=pool,
            limit=limit,
            prefetch_seconds=PREFECT_WORKER_PREFETCH_SECONDS.value(),
            heartbeat_interval_seconds=int(PREFECT_WORKER_HEARTBEAT_SECONDS.value()),
            context=context,
        )
        try:
            async with anyio.create_task_group() as wakeups:
                wakeups.start_soon(partial(submit_when_scheduled, worker, pool))
                await worker.start(with_healthcheck=False, printer=print)
                wakeups.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the worker's own error, as it raised it without the wakeups
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    polling = (
        temporary_settings({PREFECT_WORKER_QUERY_SECONDS: poll_s}) if poll_s else contextlib.nullcontext()
    )
    with polling:
        anyio.run(work)
