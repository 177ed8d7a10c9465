"""The data plane: an Istio-semantics HTTP/1.1 proxy on uvloop + httptools (see docs/dataplane.md).

Its hot modules run compiled by mypyc when a current build exists (graylane.mesh.native); else as Python.
"""

from graylane.mesh import native as _native

_native.activate(__name__, __path__)
