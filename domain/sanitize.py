"""Make user and model text inert as HTML before anyone renders it."""

import nh3


def sanitize_text(text: str) -> str:
    """Strip every tag (script/style bodies included) and escape what is left."""
    return nh3.clean(text, tags=set(), attributes={})
