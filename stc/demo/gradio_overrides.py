"""The app's changes to Gradio's own request handling, each for a reason Gradio has no option
for (gradio is pinned: `sdk_version` in README.md, `requirements.txt`; these use its queue and
its preprocessing step).

- `FairQueue` replaces the class of the queue `Demo.queue` makes: Gradio caps the whole queue
  (``max_size``) but not one visitor's share of it, so one visitor could fill it; and Gradio
  answers an unknown ``fn_index`` with a bare HTTP 500. It also tells a running request whether
  its visitor is still there (`client_gone`), which Gradio knows but does not expose.
- `Demo.preprocess_data` checks every raw value of an event before Gradio reads it
  (`input_problem`): Gradio's own checks answer with the server's paths or its objects' reprs,
  and would fetch a video given as a link.
"""

from __future__ import annotations

import logging

import gradio as gr
from fastapi import HTTPException
from gradio import queueing, route_utils
from gradio.context import LocalContext
from gradio.utils import get_upload_folder
from gradio_client.utils import is_http_url_like

from ..messages import one_line
from .loading import on_space, on_zero_gpu
from .requests import check_choice, check_number, check_video_path, hide_folders, shown, visitor_address

log = logging.getLogger("stc.app")


def client_address(request) -> str:
    """Who sent a request: on a Space (behind its proxy) the rightmost public X-Forwarded-For
    address, the one the proxy wrote (`stc.demo.visitor_address` says why); elsewhere the
    connecting address."""
    peer = request.client.host if request.client else None
    if on_space():
        return visitor_address(request.headers.getlist("x-forwarded-for"), peer)
    return peer or "unknown"


class FairQueue(queueing.Queue):
    """Gradio's queue that refuses a visitor more than the app's ``max_waiting_per_client``
    waiting requests (HTTP 429, one line; read from the `Demo`'s state at each request), answers
    an unknown ``fn_index`` with HTTP 400 and a line, and tells a running request whether its
    visitor is still there. Gradio itself drops the waiting requests of a visitor whose
    connection closed."""

    async def push(self, body, request, username):
        if body.fn_index is not None:
            try:
                route_utils.get_fn(self.blocks, None, body)
            except KeyError:  # Gradio's own answer: a bare HTTP 500
                raise HTTPException(status_code=400, detail=(
                    f"this app has no function {shown(body.fn_index)} (fn_index); its API page lists "
                    "the ones it has")) from None
        if self.max_size is not None and len(self) >= self.max_size:
            return await super().push(body, request, username)  # a full queue: Gradio's own "busy" answer
        address = client_address(request)
        waiting = sum(client_address(event.request) == address
                      for events in self.event_queue_per_concurrency_id.values() for event in events.queue)
        cap = self.blocks.app_state.limits.max_waiting_per_client
        if waiting >= cap:
            raise HTTPException(status_code=429, detail=(
                f"you already have {waiting} request{'s' * (waiting != 1)} waiting; this app queues at most "
                f"{cap} per visitor: wait for them to finish"))
        return await super().push(body, request, username)

    def gone(self, event_id: str) -> bool:
        """Whether the running request ``event_id`` lost its visitor (Gradio marks it not alive)."""
        for job in self.active_jobs:
            for event in job or ():
                if event._id == event_id:
                    return not event.alive
        return False


def client_gone():
    """Inside a queued request: a function telling whether its visitor went away; None elsewhere
    and on ZeroGPU (the GPU work runs in another process, bounded by its slot instead)."""
    event_id = LocalContext.event_id.get(None)
    queue = getattr(LocalContext.blocks.get(None), "_queue", None)
    if event_id is None or not isinstance(queue, FairQueue) or on_zero_gpu():
        return None
    return lambda: queue.gone(event_id)


def input_problem(component, value, name: str) -> str | None:
    """What is wrong with one raw value sent for ``component`` (None: nothing), in the app's
    words (the same checks and messages as the handlers' own, `stc.demo.requests`)."""
    try:
        if isinstance(component, gr.Video):
            if value is None:
                return None
            path = value.get("path") if isinstance(value, dict) else None
            if not isinstance(path, str) or not path.strip() or value.get("meta") != {"_type": "gradio.FileData"}:
                return f"the {name} must be a file uploaded to this app (its FileData, as the upload returned it)"
            if is_http_url_like(path) or "://" in path:
                return f"the {name} must be uploaded: this app does not fetch videos from links"
            check_video_path(path, [get_upload_folder()])
        elif isinstance(component, (gr.Slider, gr.Number)):
            if value is None and isinstance(component, gr.Number):
                return None
            check_number(name, value, component.minimum, component.maximum, exact_type=True)
        elif isinstance(component, gr.Textbox):
            if value is not None and not isinstance(value, str):
                return f"the {name} must be text, got {shown(value)}"
        elif isinstance(component, (gr.Dropdown, gr.CheckboxGroup, gr.Radio)):
            offered = [choice[1] if isinstance(choice, tuple) else choice for choice in component.choices]
            many = isinstance(component, gr.CheckboxGroup)
            if many and not isinstance(value, list):
                return f"{name} must be a list of: {', '.join(map(str, offered))}"
            for item in value if many else [value]:
                check_choice(name, item, offered)
    except ValueError as err:
        return str(err)
    return None


class Demo(gr.Blocks):
    """The app's Blocks: Gradio's, with the overrides above. ``app_state`` is the app's `AppState`
    (its limits are read at each request); ``input_names`` names the controls in messages
    (default: their labels)."""

    def __init__(self, state, **kwargs):
        super().__init__(**kwargs)
        self.app_state = state
        self.input_names: dict = {}

    def queue(self, *args, **kwargs):
        super().queue(*args, **kwargs)
        self._queue.__class__ = FairQueue
        return self

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        if len(inputs) < len(block_fn.inputs):
            raise gr.Error(f"this request needs {len(block_fn.inputs)} values, got {len(inputs)}",
                           print_exception=False)
        for component, value in zip(block_fn.inputs, inputs):
            name = self.input_names.get(component._id) or str(getattr(component, "label", "") or "value")
            problem = input_problem(component, value, name)
            if problem:
                raise gr.Error(one_line(problem), print_exception=False)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as err:
            raise gr.Error(hide_folders(one_line(str(err.message))), print_exception=False) from None
        except Exception:  # noqa: BLE001 - Gradio's other messages show paths and reprs: logged, not shown
            log.exception("could not read a request's values")
            raise gr.Error("this request's values could not be read", print_exception=False) from None
