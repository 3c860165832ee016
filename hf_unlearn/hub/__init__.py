"""Hub publishing: generated model cards with evaluation metadata, safe pushes, loading back."""

from .cards import BUNDLED_HUB_ID, build_model_card
from .push import ALLOWED_FILES, HubLoginRequiredError, load_unlearned, push_unlearned, sanitize_results

__all__ = [
    "ALLOWED_FILES",
    "BUNDLED_HUB_ID",
    "HubLoginRequiredError",
    "build_model_card",
    "load_unlearned",
    "push_unlearned",
    "sanitize_results",
]
