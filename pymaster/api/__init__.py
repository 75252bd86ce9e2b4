"""The pykube API: generated protobuf modules (*_pb2*.py, made by `make proto`, never edited by
hand) and the pure helpers around them: errors, quantities, validation, selectors and the
Kubernetes-shaped JSON/YAML form of every object."""
