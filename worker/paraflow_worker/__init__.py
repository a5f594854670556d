"""paraflow_worker: what runs inside paraflow's Job pods, and what user processors build on.

It imports no Kubernetes client and nothing from the operator: the operator imports the
contract from here, so every name a pod and the operator share is defined once.
"""
