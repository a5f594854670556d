# The two commands a newcomer needs are `make demo` and `make test`; the rest are parts of them.
.PHONY: demo test unit e2e-node e2e-kind cluster-up cluster-down crds build

demo:           ## set everything up on this machine and run the demo workflow
	hack/demo.sh

test:           ## every test: static checks, unit, integration, e2e on the two local clusters and kind
	hack/test.sh

e2e-node:       ## integration + e2e on the real-kubelet cluster only: our images in real pods (root)
	PARAFLOW_CLUSTER_NODE=kubelet hack/test.sh

e2e-kind:       ## the same suite on kind (node image built offline; PARAFLOW_KIND_IMAGE=kindest/node:... for the stock one)
	hack/e2e-kind.sh

unit:           ## the fast tier only (no cluster)
	hack/python.sh && .venv/bin/python -m pytest tests/unit -q

build:          ## build and cache every binary the local cluster needs
	hack/build.sh all

cluster-up:
	hack/cluster.sh up

cluster-down:
	hack/cluster.sh down

crds:           ## regenerate crds/ and the chart's copy from the pydantic models
	.venv/bin/python -m paraflow.crdgen
