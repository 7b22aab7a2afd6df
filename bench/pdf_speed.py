"""PDF pages per second: ``iter_pages`` (pdfium, 1 and 2 worker processes) against Debian's ``pdftoppm``.

    .venv/bin/python bench/pdf_speed.py [--pages 40] [--longest-side 1288] [--rounds 3] [--workers 1,2]

Writes two PDFs into a temporary folder: A4 "scans" (a 150-dpi JPEG per page, from ``bench/pdf_memory.py``)
and vector pages (text, table rules, filled bars and curves, no images). Each round runs every renderer
once on each PDF, interleaved, and the best round counts. ``pdftoppm -scale-to N`` writes its PPM pages to
stdout, sent to /dev/null (the cheapest output it has: no file, no encoding), and to files in a tmpfs
folder; ``iter_pages`` hands every page over as an RGB ``PIL.Image`` in memory. Each ``iter_pages`` run is
a fresh Python process that has warmed up the worker start-up once (a server pays that once, at its first
document; the cold figure is printed below the table). Peak RSS: ``ru_maxrss`` of each process (pdftoppm's
through GNU time), and for the workers the sum of their RSS sampled every 20 ms (pages shared with the
forkserver, and the shared page slots, are counted in each). CPU ms/page: user + system time of pdftoppm,
or of the Python process plus its workers (sampled every 20 ms, 10 ms ticks). The machine's CPU pressure is printed so
that a busy run can be told apart. No network.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pdf_memory import A4, WORDS, PdfWriter, write_pdf  # noqa: E402


class VectorWriter(PdfWriter):
    def vector_page(self, number: int) -> None:
        """A page of drawn text lines, a ruled table, filled bars and a curve: no images at all."""
        first = 4 + 3 * len(self.kids)
        ops = [b"BT /F1 20 Tf 50 790 Td (Document page %d) Tj ET" % number]
        for line in range(30):
            words = " ".join(WORDS[(number + line + k) % len(WORDS)] for k in range(10))
            ops.append(b"BT /F1 10 Tf 50 %d Td (%s) Tj ET" % (760 - 14 * line, words.encode("latin-1")))
        table = [b"0.5 w"]
        for row in range(7):
            table.append(b"50 %d m 545 %d l S" % (300 - 18 * row, 300 - 18 * row))
        for col in range(6):
            table.append(b"%d 300 m %d 192 l S" % (50 + 99 * col, 50 + 99 * col))
        for row in range(6):
            for col in range(5):
                value = (number * 7 + row * 13 + col) % 1000
                table.append(b"BT /F1 9 Tf %d %d Td (%d) Tj ET" % (56 + 99 * col, 287 - 18 * row, value))
        bars = []
        for bar in range(12):
            height = 20 + (number * 3 + bar * 11) % 120
            bars.append(b"%.2f 0.35 %.2f rg %d 40 25 %d re f" % (bar / 12, 1 - bar / 12, 60 + 38 * bar, height))
        bars.append(b"0 0 0 RG 1.5 w 60 60 m 200 190 300 40 520 170 c S")
        self.object(first + 1, b"<< /Length %d >>" % len(b"\n".join(ops)), b"\n".join(ops))
        shapes = b"\n".join(table + bars)
        self.object(first + 2, b"<< /Length %d >>" % len(shapes), shapes)
        page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R >> >>" % A4
        self.object(first, page + b" /Contents [%d 0 R %d 0 R] >>" % (first + 1, first + 2))
        self.kids.append(first)


def write_vector_pdf(path: Path, pages: int) -> None:
    with path.open("wb") as file:
        writer = VectorWriter(file)
        for number in range(1, pages + 1):
            writer.vector_page(number)
        writer.finish()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_stats(pid: int) -> tuple[float, float]:
    """RSS (MiB) and CPU seconds (user + system) of a running process, from /proc; zeros once it is gone."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(pdf: Path, pages: int, longest_side: int, workers: int) -> dict[str, float]:
    """In this (fresh) process: warm the worker start-up once, then time rendering every page."""
    from vlserve.media.pdf import iter_pages

    start = time.perf_counter()
    for _ in iter_pages(pdf, [0], longest_side=64, workers=workers):
        pass
    cold = time.perf_counter() - start
    servers = children(os.getpid())  # the forkserver, when workers were started: the workers are its children
    peak, cpu, stop = [0.0], {}, threading.Event()

    def sample() -> None:  # workers' RSS summed, and each worker's last CPU time seen (every 20 ms)
        while not stop.wait(0.02):
            stats = {pid: process_stats(pid) for server in servers for pid in children(server)}
            peak[0] = max(peak[0], sum(rss for rss, _ in stats.values()))
            cpu.update({pid: used for pid, (_, used) in stats.items() if used})

    sampler = threading.Thread(target=sample, daemon=True)
    if servers:
        sampler.start()
    own, start = own_cpu(), time.perf_counter()
    for expected, (index, image) in enumerate(
        iter_pages(pdf, range(pages), longest_side=longest_side, workers=workers)
    ):
        assert index == expected and max(image.size) == longest_side
    seconds, own = time.perf_counter() - start, own_cpu() - own
    stop.set()
    if servers:
        sampler.join()
    used = own + sum(cpu.values())
    return {"seconds": seconds, "cold": cold, "rss": peak_rss_mib(), "workers_rss": peak[0], "cpu": used}


def pdftoppm(pdf: Path, longest_side: int, tmpfs: Path | None) -> dict[str, float]:
    """One ``pdftoppm -scale-to`` run: wall seconds, its peak RSS (from GNU time when present) and CPU seconds."""
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    argv = [*timer, "pdftoppm", "-scale-to", str(longest_side), str(pdf)]
    folder = Path(tempfile.mkdtemp(dir=tmpfs)) if tmpfs else None
    try:
        with open(os.devnull, "wb") as sink:
            start = time.perf_counter()
            child = subprocess.Popen(
                [*argv, str(folder / "page")] if folder else argv, stdout=sink, stderr=subprocess.PIPE
            )
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - start
        errors = child.stderr.read().decode() if child.stderr else ""
        if os.waitstatus_to_exitcode(status):
            raise RuntimeError(f"pdftoppm failed: {errors}")
    finally:
        if folder:
            shutil.rmtree(folder)
    rss = int(errors.split()[-1]) / 1024 if timer else 0.0
    return {"seconds": seconds, "rss": rss, "workers_rss": 0.0, "cold": 0.0, "cpu": usage.ru_utime + usage.ru_stime}


def ours(pdf: Path, pages: int, longest_side: int, workers: int) -> dict[str, float]:
    argv = [sys.executable, __file__, "--one", str(pdf), "--pages", str(pages)]
    argv += ["--longest-side", str(longest_side), "--workers", str(workers)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_pressure() -> str:
    try:
        return Path("/proc/pressure/cpu").read_text().split()[1].split("=")[1]
    except (OSError, IndexError):
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--longest-side", type=int, default=1288)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts for iter_pages")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dpi", type=int, default=150, help="resolution of the scans inside the scan PDF")
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.pages, args.longest_side, int(args.workers))))
        return
    have_pdftoppm = shutil.which("pdftoppm") is not None
    if not have_pdftoppm:
        print("pdftoppm is MISSING: install Debian's poppler-utils (apt-get install poppler-utils) to compare;")
        print("only iter_pages is timed below.\n")
    counts = [int(n) for n in args.workers.split(",")]
    tmpfs = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory() as folder:
        pdfs = {"scan": Path(folder) / "scan.pdf", "vector": Path(folder) / "vector.pdf"}
        write_pdf(pdfs["scan"], args.pages, args.dpi)
        write_vector_pdf(pdfs["vector"], args.pages)
        workers = {f"iter_pages, {n} worker{'s' if n > 1 else ''}": n for n in counts}
        names = list(workers)
        if have_pdftoppm:
            names = ["pdftoppm → stdout (/dev/null)"] + (["pdftoppm → PPM files in tmpfs"] if tmpfs else []) + names
        best: dict[tuple[str, str], dict[str, float]] = {}
        pressure = [cpu_pressure()]
        for _ in range(args.rounds):
            for kind, pdf in pdfs.items():
                for name in names:
                    if name.startswith("pdftoppm"):
                        result = pdftoppm(pdf, args.longest_side, tmpfs if "tmpfs" in name else None)
                    else:
                        result = ours(pdf, args.pages, args.longest_side, workers[name])
                    if (kind, name) not in best or result["seconds"] < best[kind, name]["seconds"]:
                        best[kind, name] = result
            pressure.append(cpu_pressure())
    print(f"{args.pages} A4 pages -> longest side {args.longest_side} px, best of {args.rounds} interleaved rounds")
    print(f"CPU pressure (/proc/pressure/cpu some avg10, %) before and after each round: {', '.join(pressure)}\n")
    print("| PDF | renderer | pages/s | vs pdftoppm (best) | CPU ms/page | peak RSS (MiB) | workers' peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind in pdfs:
        base = min((best[kind, n]["seconds"] for n in names if n.startswith("pdftoppm")), default=None)
        for name in names:
            result = best[kind, name]
            ratio = f"{base / result['seconds']:.2f}×" if base else "-"
            extra = f"{result['workers_rss']:.0f}" if result["workers_rss"] else "-"
            rate = args.pages / result["seconds"]
            cpu = 1000 * result["cpu"] / args.pages
            print(f"| {kind} | {name} | {rate:.1f} | {ratio} | {cpu:.1f} | {result['rss']:.0f} | {extra} |")
    colds = [best[kind, n]["cold"] for kind in pdfs for n in names if workers.get(n, 1) > 1]
    if colds:
        print(f"\nFirst multi-worker call in a process (starts the forkserver): {max(colds):.2f} s at most.")


if __name__ == "__main__":
    main()
