"""``paraflow ui``: the Map Run view, a local web server started by the CLI.

It reads workflows through the API as the user (their kubeconfig), draws one run from its status
alone (the range-compressed index sets: no call per partition), updates from a watch, and its
buttons call what the CLI's commands call (``paraflow.cli.actions``). Installed with
``pip install 'paraflow[ui]'``; nothing of it runs in the cluster.
"""
