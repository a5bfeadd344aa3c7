"""What a team's CI does on a pull request: pull the versioned data, rerun the pipeline, compare with the base.

    python -m metallo.ci --base main               # make ci  (CI_BASE=origin/main in a CI checkout)
    python -m metallo.ci --base origin/main --report ci-report.md

1. ``dvc pull --allow-missing`` from the project's default DVC remote: every output the base branch
   pushed is restored instead of recomputed; outputs of stages the change touches are not in the
   remote yet and are rebuilt. With no default remote, this step is skipped and everything is built.
2. ``dvc repro``.
3. ``dvc params diff BASE --md`` and ``dvc metrics diff BASE --md``: printed as one Markdown report
   (and written to ``--report``, e.g. for a CI job summary).
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from metallo.errors import MetalloError, exit_on_error

#: Seconds a git or DVC query may take (the pull and the repro themselves are not bounded here: the CI
#: service's job timeout bounds them, as it bounds any build).
QUERY_TIMEOUT_S = 120


def query(cmd: list[str]) -> subprocess.CompletedProcess:
    """Run a short git/DVC command and capture its output."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S, stdin=subprocess.DEVNULL)


def step(cmd: list[str]) -> None:
    """Run one CI step with its output shown; a failure stops CI with the step named."""
    print(f"ci: $ {' '.join(cmd)}", flush=True)
    code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
    if code != 0:
        raise MetalloError(f"ci: `{' '.join(cmd)}` failed (exit {code}); its output is above.")


def check_base(base: str) -> None:
    if query(["git", "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}"]).returncode != 0:
        raise MetalloError(
            f"ci: the base revision '{base}' is not in this clone. Fetch it first (e.g. "
            f"`git fetch origin main`, or a full-history checkout) or pass another --base."
        )


def has_default_remote() -> bool:
    return bool(query(["dvc", "remote", "default"]).stdout.strip())


def diff(kind: str, base: str) -> str:
    """``dvc params|metrics diff BASE --md``, or a line saying there is no difference."""
    result = query(["dvc", kind, "diff", base, "--md"])
    if result.returncode != 0:
        raise MetalloError(f"ci: `dvc {kind} diff {base} --md` failed:\n{result.stderr.strip()}")
    return result.stdout.strip() or f"No {kind} changed."


def report(base: str) -> str:
    """The Markdown report of this workspace against ``base``."""
    return (
        "\n\n".join(
            [
                f"## Metallo CI: this change against `{base}`",
                "### Params",
                diff("params", base),
                "### Metrics",
                diff("metrics", base),
            ]
        )
        + "\n"
    )


def run_ci(base: str, report_path: str | None = None) -> str:
    check_base(base)
    if has_default_remote():
        step(["dvc", "pull", "--allow-missing"])
    else:
        print("ci: no default DVC remote (dvc remote add -d ...): nothing to pull, every stage is built", flush=True)
    step(["dvc", "repro"])
    text = report(base)
    print(f"\n{text}", flush=True)
    if report_path:
        Path(report_path).write_text(text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m metallo.ci", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="main", help="the revision to compare with (default: %(default)s)")
    parser.add_argument("--report", default=None, help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    with exit_on_error():
        run_ci(args.base, args.report)


if __name__ == "__main__":
    main()
