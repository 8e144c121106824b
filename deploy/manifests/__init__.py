"""Production manifests (Kubernetes, Strimzi, Prometheus), generated from the project's sources.

``python -m deploy.manifests generate`` writes ``deploy/k8s/`` (a kustomize base and the overlays
``local`` and ``production``) and ``deploy/requirements.txt`` (the container image's Python
dependencies, from ``pyproject.toml``); ``check`` exits 1 when a committed file differs from
what the generator makes. The inputs are ``schemas/topics.yaml`` (topics, via
``schemas.topics.topic_specs``), ``deploy.access.grants`` (every principal's ACLs) and the
settings below; nothing under ``deploy/k8s/`` is edited by hand.
"""
