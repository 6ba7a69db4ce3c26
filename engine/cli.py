"""The ``pipeline`` command's entry point: a dispatcher that imports as little as it can.

``pipeline analyze`` is a linter: CI and pre-commit run it often, so its
start-up matters. It goes straight to ``engine.analyze_cli`` (argparse, no
typer, rich, pydantic plugins, LangGraph or OpenAI); every other command goes
to the typer app in ``engine.commands``.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["analyze"]:
        from agent_pipelines.engine.analyze_cli import main as analyze

        try:
            raise SystemExit(analyze(sys.argv[2:]))
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise SystemExit(130) from None
    import signal

    from agent_pipelines.engine.commands import app
    from agent_pipelines.engine.procs import lead_group

    lead_group()  # the run's children (git and the tools a pipeline runs) share its group and die with it

    # SIGTERM stops like Ctrl-C: at the next safe point, everything closed, the run resumable.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    raise SystemExit(_invoke(app, sys.argv[1:]))


def _invoke(app, args: list[str]) -> int:
    """Run the typer app and return its exit code; a usage error (unknown option, missing argument, bad
    value) is one line and exit 2, as every unusable argument is, and an interrupt is exit 130."""
    import typer.main

    command = typer.main.get_command(app)
    try:
        code = command.main(args=args, prog_name="pipeline", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as error:
        exit_code = getattr(error, "exit_code", None)
        if not (hasattr(error, "format_message") and isinstance(exit_code, int)):
            raise  # not a click usage error: a bug, shown with its traceback
        ctx = getattr(error, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        if error.format_message().strip():  # `pipeline` alone printed its help, and has nothing to add
            sys.stderr.write(f"error: {error.format_message()}{where}\n")
        return exit_code
    return code if isinstance(code, int) else 0


def __getattr__(name: str):
    if name == "app":  # `from agent_pipelines.engine.cli import app` (tests drive the typer app in-process)
        from agent_pipelines.engine.commands import app

        return app
    raise AttributeError(name)


if __name__ == "__main__":
    main()
