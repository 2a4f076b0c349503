"""How eccos uses LiteLLM's process-wide settings: offline price map, and no banners on handled failures.

LiteLLM prints "Give Feedback / Get Help" and "Provider List" banners to stdout on every provider error unless
``litellm.suppress_debug_info`` is set. eccos handles those errors itself (fallbacks, typed errors), so it
turns the banners off while its own calls run and restores the user's setting when the last one finishes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# LiteLLM tries to download Hugging Face tokenizers for some model ids; offline that stalls for ~20 s
os.environ.setdefault("HF_HUB_OFFLINE", "1")

_lock = threading.Lock()
_active = 0
_saved: bool | None = None


@contextlib.contextmanager
def quiet_litellm() -> Iterator[None]:
    """Silence LiteLLM's stdout banners for the duration; nested and concurrent uses share one restore."""
    import litellm

    global _active, _saved
    with _lock:
        if _active == 0:
            _saved = litellm.suppress_debug_info
            litellm.suppress_debug_info = True
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _saved is not None:
                litellm.suppress_debug_info = _saved
