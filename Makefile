# The two commands a newcomer needs are `make demo` and `make test`; the rest are parts of them.
.PHONY: demo test unit e2e-kind cluster-up cluster-down crds build

demo:           ## set everything up on this machine and run the demo workflow
	hack/demo.sh

test:           ## every test once, on the tier where it can fail: static checks, unit, the local cluster, kind
	hack/test.sh

e2e-kind:       ## every tier any cluster can run, on kind (node image built offline; PARAFLOW_KIND_IMAGE=kindest/node:... for the stock one)
	hack/e2e-kind.sh

unit:           ## the unit tier only (no cluster)
	hack/python.sh && .venv/bin/python -m pytest -m unit -q

build:          ## build and cache every binary the local cluster needs
	hack/build.sh all

cluster-up:
	hack/cluster.sh up

cluster-down:
	hack/cluster.sh down

crds:           ## regenerate crds/ and the chart's copy from the pydantic models
	.venv/bin/python -m paraflow.crdgen
