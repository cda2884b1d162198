#!/usr/bin/env python3
"""Executes the notebooks headless on the Deno Jupyter kernel with nbclient; exits 1 if any cell fails.

usage: python notebooks/run_notebooks.py [--timeout SECONDS] [--save DIR] [notebook.ipynb ...]

With no notebooks named, runs every notebooks/*.ipynb in name order, each in a fresh kernel started in the
notebook's folder (as Jupyter does; deno.json's "unstable" list applies there). The kernel is the Deno that runs
this repository (`DENO`, else node_modules/.bin/deno): the `deno` kernelspec `deno jupyter --install` wrote when it
points at that binary, else a private kernelspec in a temporary JUPYTER_PATH folder (nothing is installed).
`--save DIR` writes the executed notebooks there (outputs included) for a look at the tables and plots.
Needs nbclient (`pip install nbclient`); ipykernel is not needed (the kernel is Deno's).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def deno_binary() -> str:
    deno = os.environ.get("DENO") or str(ROOT / "node_modules" / ".bin" / "deno")
    found = shutil.which(deno)
    if not found:
        sys.exit(f"run_notebooks: no Deno at {deno}; run `npm ci` or set DENO to a deno binary")
    return os.path.realpath(found)


def pick_kernel(deno: str, tmp: str) -> tuple[str, str]:
    """The kernel name to run and a line saying which kernelspec it is."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("deno")
        argv0 = spec.argv[0] if spec.argv else ""
        if argv0 and os.path.exists(argv0) and os.path.realpath(argv0) == deno:
            return "deno", f"kernelspec deno ({spec.resource_dir})"
        why = f"its argv[0] {argv0!r} is not {deno}"
    except NoSuchKernel:
        why = "none installed (`deno jupyter --install`)"
    folder = Path(tmp) / "kernels" / "whetstone-deno"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [deno, "jupyter", "--kernel", "--conn", "{connection_file}"],
        "display_name": "Deno (whetstone)",
        "language": "typescript",
    }))
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [tmp, os.environ.get("JUPYTER_PATH")]))
    return "whetstone-deno", f"private kernelspec {folder} (deno kernelspec: {why})"


def error_text(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return "\n".join("    " + line for line in lines[-40:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks to run (default: notebooks/*.ipynb)")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    ap.add_argument("--save", help="folder to write the executed notebooks to")
    args = ap.parse_args()

    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as e:
        sys.exit(f"run_notebooks: {e}; install nbclient (python3 -m venv .venv-nb && .venv-nb/bin/pip install nbclient)")

    paths = [Path(p).resolve() for p in args.notebooks] or sorted(HERE.glob("*.ipynb"))
    if not paths:
        sys.exit(f"run_notebooks: no notebooks in {HERE}")
    os.environ.setdefault("NO_COLOR", "1")
    if not os.environ.get("XDG_RUNTIME_DIR"):
        xdg = Path(tempfile.gettempdir()) / f"xdg-runtime-{os.getuid()}"
        xdg.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(xdg)
    deno = deno_binary()
    failed = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="whetstone-kernels-") as tmp:
        kernel, which = pick_kernel(deno, tmp)
        print(f"run_notebooks: {len(paths)} notebooks on {which}", flush=True)
        for path in paths:
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(
                nb,
                timeout=args.timeout,
                startup_timeout=120,
                kernel_name=kernel,
                allow_errors=False,
                resources={"metadata": {"path": str(path.parent)}},
            )
            t = time.monotonic()
            error = None
            try:
                client.execute()
            except Exception as e:  # CellExecutionError, a timeout, a dead kernel
                error = e
            took = time.monotonic() - t
            cells = sum(1 for c in nb.cells if c.cell_type == "code")
            ran = sum(1 for c in nb.cells if c.cell_type == "code" and c.get("execution_count"))
            if error is None:
                print(f"ok     {path.name}: {cells} cells in {took:.1f} s", flush=True)
            else:
                failed.append(path.name)
                print(f"FAILED {path.name} after {ran}/{cells} cells ({took:.1f} s): {type(error).__name__}")
                print(error_text(error), flush=True)
            if args.save:
                out = Path(args.save)
                out.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, out / path.name)
    total = time.monotonic() - start
    print(f"run_notebooks: {len(paths) - len(failed)} passed, {len(failed)} failed in {total:.1f} s"
          + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
