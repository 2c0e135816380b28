"""The test results files (``test_results.csv`` and the like): their one writer and their one reader.

Format: CSV with a header row, one row per test utterance (``snt_id`` first, then descriptive
columns such as ``num_sources`` and the metrics, e.g. ``sdr,sdr_i,si-snr,si-snr_i``) and a final
row whose ``snt_id`` is ``avg`` (the averages). Undefined values (NaN) are empty cells.
:class:`~spgm_lobes.separation.SeparationBrain` writes them with :func:`write_results_csv`;
``spgm-publish``, the quickstart, the benchmarks and the tests read them with :func:`read_results_csv`.
"""

import csv
import math
from collections import namedtuple
from pathlib import Path

RESULTS_FILE = "test_results.csv"
"""Name of the per-utterance test results file in a recipe's output folder."""

TestResults = namedtuple("TestResults", ["rows", "average"])
TestResults.__doc__ = """Content of a results file: the utterance rows and the ``avg`` row (``None`` when absent),
each a dict of column -> value (numbers as floats, empty cells as NaN, other text as str)."""


def write_results_csv(path, rows, columns=None):
    """Writes ``rows`` (dicts) to ``path``; ``columns`` default to the first row's keys (other keys are left out).

    Example
    -------
    >>> path = getfixture("tmp_path") / "test_results.csv"
    >>> write_results_csv(path, [{"snt_id": "a", "si-snr": 1.5}, {"snt_id": "avg", "si-snr": float("nan")}])
    >>> print(path.read_text().strip())
    snt_id,si-snr
    a,1.5
    avg,
    """
    columns = list(columns or (rows[0].keys() if rows else ["snt_id"]))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows)


def defined_mean(values):
    """Mean of the values that are not NaN (an utterance with a silent reference has no SDR: it is left out
    of averages); NaN when none is.

    Example
    -------
    >>> defined_mean([1.0, float("nan"), 3.0]), defined_mean([float("nan")])
    (2.0, nan)
    """
    defined = [float(v) for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


def _value(text):
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return text


def read_results_csv(path):
    """Reads a results file written by :func:`write_results_csv`; returns :data:`TestResults`.

    Raises ``FileNotFoundError`` naming ``path`` when it is missing.

    Example
    -------
    >>> path = getfixture("tmp_path") / "test_results.csv"
    >>> _ = path.write_text("snt_id,categories,si-snr,si-snr_i\\na,speech,9,\\navg,,9,\\n")
    >>> results = read_results_csv(path)
    >>> results.rows
    [{'snt_id': 'a', 'categories': 'speech', 'si-snr': 9.0, 'si-snr_i': nan}]
    >>> results.average["si-snr"]
    9.0
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found.")
    with open(path, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    parsed = [{k: (v if k == "snt_id" else _value(v)) for k, v in row.items()} for row in table]
    rows = [row for row in parsed if row.get("snt_id") != "avg"]
    averages = [row for row in parsed if row.get("snt_id") == "avg"]
    return TestResults(rows, averages[-1] if averages else None)
