"""The warning category lit_deep emits (the test suite turns it into an error)."""

__all__ = ["LitDeepWarning"]


class LitDeepWarning(UserWarning):
    """A warning raised by lit_deep itself."""
