"""Generated protobuf and gRPC code for the latentdex API (source: the .proto files beside it)."""
