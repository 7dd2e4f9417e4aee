"""The edge: gRPC server and client, and the `latentdex` command line."""
