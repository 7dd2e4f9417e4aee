"""The checked-in gRPC code matches proto/ and imports."""

from __future__ import annotations

from latentdex.service.protogen import PACKAGE_DIR, generated_drift, proto_files


def test_generated_code_matches_the_proto() -> None:
    assert [p.name for p in proto_files()] == ["latentdex.proto"]
    assert generated_drift() == [], "run `make proto` and commit the regenerated files"


def test_generated_modules_import_and_define_the_service() -> None:
    from latentdex.v1 import latentdex_pb2, latentdex_pb2_grpc

    assert latentdex_pb2.__file__.startswith(str(PACKAGE_DIR))
    service = latentdex_pb2.DESCRIPTOR.services_by_name["Latentdex"]
    assert service.full_name == "latentdex.v1.Latentdex"
    methods = ["Decode", "Encode", "GetInfo", "QueryBatch", "QueryById", "QueryByImage", "QueryByLatent"]
    methods += ["CreateDirection", "DeleteDirection", "Edit", "Generate", "GetLatentStats", "Interpolate"]
    methods += ["ListDirections", "RenderMap", "Traverse", "GetImage", "ListImages", "FindDuplicates"]
    assert sorted(m.name for m in service.methods) == sorted(methods)
    for method in methods:
        assert callable(getattr(latentdex_pb2_grpc.LatentdexServicer, method))
    assert callable(latentdex_pb2_grpc.add_LatentdexServicer_to_server)
