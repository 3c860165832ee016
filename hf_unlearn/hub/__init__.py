"""Hub publishing: generated model cards with evaluation metadata, safe pushes, loading saved folders back
(``hf_unlearn.load_unlearned`` loads any published result, continual ones included)."""

from .cards import BUNDLED_HUB_ID, build_model_card
from .push import (
    ALLOWED_FILES,
    HubLoginRequiredError,
    HubPushError,
    hub_private,
    load_saved,
    push_unlearned,
    require_token,
    sanitize_results,
)

__all__ = [
    "ALLOWED_FILES",
    "BUNDLED_HUB_ID",
    "HubLoginRequiredError",
    "HubPushError",
    "build_model_card",
    "hub_private",
    "load_saved",
    "push_unlearned",
    "require_token",
    "sanitize_results",
]
