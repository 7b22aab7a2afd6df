"""Labels for several pictures: Qwen-VL chat templates' ``add_vision_id``.

With ``add_vision_id`` on, a Qwen-VL template writes "Picture 1: ", "Picture 2: " before each image and
"Video 1: " before each video, counted over the whole conversation, so that a question can name them ("is
Picture 2 newer than Picture 1?"). vlserve turns it on for a request with more than one image or video, on
every engine (an upstream vLLM gets it in ``chat_template_kwargs``; its renderer drops variables a template
does not read). One picture stays unlabelled, as Qwen's processors render it by default and as the models
mostly saw single images in training. A client's own ``add_vision_id`` wins.
"""

from __future__ import annotations

from typing import Any

from vlserve.engine.base import EngineRequest

ADD_VISION_ID = "add_vision_id"


def template_variables(request: EngineRequest) -> dict[str, Any]:
    """The chat template's variables for ``request``: the client's, over ``add_vision_id`` when it has several
    images or videos."""
    labels = {ADD_VISION_ID: True} if len(request.media) > 1 else {}
    return {**labels, **request.chat_template_kwargs}
