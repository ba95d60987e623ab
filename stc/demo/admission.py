"""One admission path for every tab: a request is checked, in this order, before any model or
GPU work, and its model is then loaded if needed.

1. what every request carries: a video and a question (`check_upload`);
2. the tab's own controls (``controls``: frames, new tokens, a budget, configs), so that a bad
   value is refused before the file is touched;
3. the video is an upload or one of the app's examples, nothing else on the server;
4. the model is one the page offers;
5. the video's header against the duration and frame-size limits (no frame decoded);
6. the model, loaded if needed, and what the tab asks of it (``fits``: K within its layers,
   no more frames than it may read here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gradio.utils import get_upload_folder

from ..models import VideoLLM
from .app_state import AppState
from .requests import check_model, check_upload, check_video_limits, check_video_path


@dataclass
class Admitted:
    """A request that passed: the video's real path, the upload's name as messages show it, the
    question, the tab's checked controls and the model that will answer."""

    path: str
    video_name: str
    question: str
    controls: Any
    llm: VideoLLM


def video_dirs(state: AppState) -> list[Path | str]:
    """Where a request's video may come from: Gradio's upload folder (uploads, and the copies of
    the examples it serves) and the examples folder. Read per request ($GRADIO_TEMP_DIR)."""
    return [get_upload_folder(), state.examples_dir]


def admit(state: AppState, video, question, model_id, *, controls: Callable[[], Any],
          fits: Callable[[VideoLLM, Any], None] = lambda llm, controls: None,
          progress: Callable = lambda fraction, desc=None: None) -> Admitted:
    """Check one request (see the module's docstring for the order); one-line ValueErrors."""
    path, question = check_upload(video, question)
    checked = controls()
    name = Path(path).name
    path = check_video_path(path, video_dirs(state))
    model_id = check_model(model_id, state.model_ids)
    check_video_limits(path, state.limits)
    progress(0.0, desc=f"loading {model_id}")
    llm = state.pool.get(model_id)
    fits(llm, checked)
    return Admitted(path, name, question, checked, llm)
