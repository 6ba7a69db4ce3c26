"""The framework: artifacts, spec, graph, runs, workspace, reports, CLI, and the lint kit (``lint/``).

It knows no domain: a pipeline (``pipelines/``) brings one.
"""
