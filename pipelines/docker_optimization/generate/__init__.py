"""Generators for the build and deploy phases: a bake file, a CI workflow, deploy/rollback scripts.

Each takes the Project (and its build graph) and returns the file's text;
the same input gives the same bytes. The fixes in ``fixes/process.py`` call
them, and ``validate.py`` holds the reviewer's gates for what they write.
"""
