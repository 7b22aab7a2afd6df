"""A whole document job in one process: a large PDF through intake, rendering, the model and the store.

    .venv/bin/python bench/document_job.py [--pages 300] [--max-tokens 8] [--longest-side 1288]

Generates the PDF (bench/pdf_memory.py's page-at-a-time writer), then runs it exactly as
`vlserve doc --local` does (DocumentService over a throw-away SQLite database, the page worker,
the bundled random-weight demo model) and prints pages/s and peak RSS (``ru_maxrss``) before the
job, after 10% of the pages and at the end. With --max-tokens small the model's share is small, so
the figures show what the pipeline itself costs. In-process; no network.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pdf_memory import peak_rss_mib, write_pdf  # noqa: E402

from vlserve.cli.serve import ensure_model  # noqa: E402
from vlserve.documents.client import run_local  # noqa: E402
from vlserve.documents.intake import Submission  # noqa: E402
from vlserve.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--longest-side", type=int, default=1288)
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vlserve-bench-") as tmp:
        pdf = Path(tmp) / "report.pdf"
        write_pdf(pdf, args.pages, args.dpi)
        size_mib = pdf.stat().st_size / 2**20
        rows = [("before the job", 0, 0.0, peak_rss_mib())]
        started = time.monotonic()
        marks = [max(1, args.pages // 10), args.pages // 2, args.pages]

        def progress(done: int, total: int) -> None:
            while marks and done >= marks[0]:
                marks.pop(0)
                rows.append((f"after {done} pages", done, time.monotonic() - started, peak_rss_mib()))

        settings = Settings(
            document_max_tokens=args.max_tokens, document_longest_side=args.longest_side,
            document_temperatures=[0.0], document_max_pages=max(500, args.pages),
        )  # fmt: skip
        ensure_model(settings)  # builds the random-weight demo model on first use
        result = asyncio.run(run_local(settings, [pdf], Submission(), on_progress=progress, poll_s=0.05))

    pages = sum(p["status"] in ("succeeded", "failed") for p in result["pages"])
    print(f"PDF: {args.pages} pages, {size_mib:.1f} MiB; pages read: {pages}; job {result['status']}")
    print("| point | pages | seconds | pages/s | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|")
    for label, done, seconds, rss in rows:
        rate = f"{done / seconds:.2f}" if seconds else "-"
        print(f"| {label} | {done} | {seconds:.1f} | {rate} | {rss:.0f} |")


if __name__ == "__main__":
    main()
