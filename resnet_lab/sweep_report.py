"""`python -m resnet_lab.sweep_report <sweep_dir>`: (re)write a sweep's summary, CSV and plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from resnet_lab.messages import one_line
from resnet_lab.sweep.report import report_sweep_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun/<date>/<time> directory")
    parser.add_argument("--storage", help="the study's storage URL when its study.json shows it masked (or set the driver's own PGPASSWORD)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a directory; pass a multirun/<date>/<time> sweep directory", file=sys.stderr)
        sys.exit(2)
    try:
        plots = report_sweep_dir(args.sweep_dir, args.storage)
    except Exception as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.sweep_dir}/sweep_summary.json, trials.csv and {len(plots)} plots")


if __name__ == "__main__":
    main()
