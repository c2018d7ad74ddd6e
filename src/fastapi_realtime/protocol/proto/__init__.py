"""The protocol's Protobuf messages: ``client.proto`` and ``client_pb2``, generated from it by
protoc (``make proto``). Do not edit ``client_pb2.py``/``.pyi`` by hand."""
