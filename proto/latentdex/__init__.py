"""latentdex: the package root.

Beside the generated protobuf and gRPC code (`v1`, from the .proto files there), it holds the modules
every layer (models, indexer, service, client) may import and that import nothing of ours: the error
kinds (`errors`) and crash-safe file writes (`atomic_files`).
"""
