"""Install the repository's top-level folders under one namespace, ``agent_pipelines``.

Why: ``engine``, ``agents``, ``pipelines`` and ``prompts`` are names other projects use; installed at the
top of site-packages they would collide. The folders stay where contributors expect them; only their
installed names change (``agent_pipelines.engine`` …). The bundled example installs as package data so
that a non-editable install (``pip install .``, ``pipx install``) runs it too.
The rest of the metadata is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

NS = "agent_pipelines"
TOP = ("engine", "agents", "pipelines", "prompts", "examples")
CODE = [p for p in find_namespace_packages(include=[f"{top}*" for top in TOP[:-1]]) if "__pycache__" not in p]

setup(
    packages=[f"{NS}.{p}" for p in CODE] + [f"{NS}.examples"],
    package_dir={f"{NS}.{top}": top for top in TOP},
    package_data={f"{NS}.prompts": ["**/*.j2"], f"{NS}.examples": ["**/*", "**/.*"]},
)
