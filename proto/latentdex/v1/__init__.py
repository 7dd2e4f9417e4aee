"""latentdex.v1: the stable, versioned API. Regenerate with `make proto`; never edit *_pb2*.py by hand."""
