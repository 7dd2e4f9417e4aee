"""Domain exceptions shared by every layer; the service and CLI map each to one status code."""


class LatentdexError(Exception):
    """Base class of every error latentdex raises on purpose."""


class BadCheckpoint(LatentdexError):
    """A model directory or file that is not a valid latentdex checkpoint."""


class DimensionMismatch(LatentdexError):
    """A latent or tensor whose shape does not match the model or store."""


class BadImage(LatentdexError):
    """Bytes or a file that cannot be decoded into an image we accept; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(LatentdexError):
    """A requested item (image id, direction, file) that does not exist."""


class BadLatent(LatentdexError):
    """A latent with the right shape but unusable values (NaN or infinite)."""


class StoreError(LatentdexError):
    """A store folder or file that is missing, not a latentdex store, damaged, or used against its rules."""


class ModelMismatch(LatentdexError):
    """Latents from a different model than the one a store was built with."""
