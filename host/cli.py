"""The ``flowbase`` command: ``serve`` runs the gateway, ``validate`` checks workflow files."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from host.config import Settings, SettingsError


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from host.app import create_app
    from host.serving import HttpProtocol

    try:
        settings = Settings(host=args.host, port=args.port, data_dir=Path(args.data_dir),
                            workflows=Path(args.workflows) if args.workflows else None, watch=not args.no_watch)
    except SettingsError as exc:
        print(f"flowbase: {exc}", file=sys.stderr)
        return 2
    if args.no_tracing:
        settings.tracing = False
    if settings.workflows is not None and not settings.workflows.is_dir():
        print(f"flowbase: --workflows {settings.workflows}: not a directory", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # uvloop + httptools: the fastest server stack uvicorn offers (measured in `make bench`); the
    # httptools protocol sends what a response writes in one turn of the loop at once (host/serving.py).
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, loop="uvloop", http=HttpProtocol,
                log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                proxy_headers=False, server_header=False)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from host.engine.workflow import WorkflowError, load_workflow
    from plugin_runner.manifest import default_dir, load_manifests

    node_types = {n: s for m in load_manifests([default_dir()]) for n, s in m.node_types.items()}
    failed = 0
    for raw in args.files:
        path = Path(raw)
        try:
            wf = load_workflow(path.read_text(), str(path), node_types)
        except (OSError, WorkflowError) as exc:
            print(f"error: {exc}")
            failed += 1
            continue
        print(f"ok: {path}: model {wf.model}, nodes {' -> '.join(wf.order)}, answer {' | '.join(wf.outputs)}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowbase", description="Self-hosted virtual model gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7800)
    serve.add_argument("--data-dir", default=".flowbase", help="where the embedded SQLite store lives")
    serve.add_argument("--workflows", help="folder of *.yaml workflow files (default: the built-in demo)")
    serve.add_argument("--no-watch", action="store_true", help="do not reload changed workflow files")
    serve.add_argument("--no-tracing", action="store_true", help="do not record runs (same as FLOWBASE_TRACING=0)")
    serve.set_defaults(func=_serve)
    validate = sub.add_parser("validate", help="check workflow files without serving them")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(func=_validate)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
