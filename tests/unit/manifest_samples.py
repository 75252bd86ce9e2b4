"""A sample pod manifest shared by the load_pods tests (test_manifest_load, test_manifest_hostile)."""

POD_A = """\
apiVersion: v1
kind: Pod
metadata:
  name: a
  labels: {app: web}
spec:
  containers:
  - name: web
    image: pykube/busybox:1.35
    resources:
      requests: {cpu: 0.5, memory: 64Mi}
"""
