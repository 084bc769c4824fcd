"""Cancel the child runs a flow run started (its GPU stage on another worker).

Its own module because both the batch flow's planning (a takeover) and the state hooks need it, and
it needs nothing of theirs.
"""

from __future__ import annotations

from uuid import UUID


def cancel_child_runs(flow_run_id: UUID | str, message: str, *, parent_dead: bool = False) -> int:
    """Stop every unfinished child run of ``flow_run_id``; returns how many.

    Why: a batch's GPU stage is a deployment run on the gpu pool, and the batch's process cannot exit
    while it waits for that run; cancelling it lets the batch stop within a worker poll, and stops
    generating (and paying for) images nobody will keep.

    A child run by a worker (it has a deployment) is set ``Cancelling``: its worker stops the process
    and runs its hooks. An in-process subflow has nobody to act on ``Cancelling`` (it would stay there
    for ever), so it gets its end state directly: ``Crashed`` when its parent's process died
    (``parent_dead``), else ``Cancelled``.
    """
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Cancelled, Cancelling, Crashed

    from tasks.prefect_clients import api_client

    try:
        parent = UUID(str(flow_run_id))
    except ValueError:  # not a Prefect run id (a batch recorded outside Prefect): no children
        return 0
    stopped = 0
    with api_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])),
            sort=FlowRunSort.START_TIME_ASC,  # limit and sort spelled out: the server refuses null defaults
            limit=50,
        )
        for child in children:
            if child.state is not None and child.state.is_final():
                continue
            if child.deployment_id is not None:
                state = Cancelling(message=message)
            elif parent_dead:
                state = Crashed(message=message)
            else:
                state = Cancelled(message=message)
            client.set_flow_run_state(child.id, state, force=True)
            stopped += 1
    return stopped
