"""`zoo report` over real artifacts (resnext50_32x4d, random weights, onnx and openvino, built by the CLI)
plus manifests made to look like a failed build, a vendor kit whose compiler is absent and a second
variant; the page is checked as text and then in a real headless Chromium (sorting, plots, grid colours,
a screenshot)."""
from __future__ import annotations

import copy
import json
import random
import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import manifest_of, run_zoo

VARIANT, SOURCE, TAG = "resnext50_32x4d", "torchvision", "IMAGENET1K_V1"
OTHER = "resnext101_32x8d"  # a second variant, made from the first's manifest
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SVG = "{http://www.w3.org/2000/svg}"
PLOTS = ("plot-accuracy", "plot-size", "plot-parity", "plot-speed")


def _write_manifest(out: Path, m: dict) -> None:
    from zoo.store import write_json

    name = m["target"] if m["precision"] == "fp32" else f"{m['target']}-{m['precision']}"
    folder = out / m["variant"] / m["source"] / m["tag"] / name
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "manifest.json", m)


def here() -> str:
    from zoo.bench.machine import describe

    return describe()["id"]


def _bench(machine: str, points: List[Tuple[int, float, float]]) -> dict:
    return {"machine": {"id": machine}, "threads": 2, "runtime": "onnxruntime", "points": [
        {"batch": b, "throughput": t, "latency_ms": {"p50": p50, "p90": p50, "p99": p50}, "stable": True}
        for b, t, p50 in points]}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Two real artifacts, and three manifests derived from them (results reads nothing else)."""
    out = tmp_path_factory.mktemp("report") / "artifacts"
    for target in ("onnx", "openvino"):
        r = run_zoo("convert", f"model={VARIANT}", f"source={SOURCE}", f"target={target}", "weights=random",
                    f"out_dir={out}", "progress=false", env={"ZOO_CACHE": str(out.parent / "cache")})
        assert r.returncode == 0, r.stderr
    onnx, ov = manifest_of(out, VARIANT, SOURCE, TAG, "onnx"), manifest_of(out, VARIANT, SOURCE, TAG, "openvino")
    # zoo bench figures, hand-made: two points measured here, and two from another machine (not drawn)
    onnx["bench"] = {here(): _bench(here(), [(1, 30.0, 33.0), (8, 40.0, 200.0)]),
                     "0therm4chine": _bench("0therm4chine", [(1, 90.0, 11.0), (8, 99.0, 80.0)])}
    _write_manifest(out, onnx)

    failed = copy.deepcopy(ov)
    failed.update(precision="fp16", status="failed")
    failed["validation"]["macs"]["passed"] = False
    _write_manifest(out, failed)

    kit = copy.deepcopy(onnx)
    kit.update(target="vacc", precision="int8")
    del kit["bench"]  # a kit has no engine to time
    kit["artifact"].update(compiled=False, compiler="vamc not installed", commands=["vamc compile build.yaml"])
    _write_manifest(out, kit)

    # 1.25x the size: a three-digit MiB figure starting with 1 next to two-digit ones starting with 9, so
    # sorting the text would order these differently from sorting the numbers.
    other = copy.deepcopy(onnx)
    other["variant"] = OTHER
    other["bench"] = {here(): _bench(here(), [(1, 12.0, 80.0)])}
    for f in other["artifact"]["files"]:
        f["size"] = int(f["size"] * 1.25)
    _write_manifest(out, other)
    return out


def _results(out: Path) -> List[dict]:
    r = run_zoo("results", f"out_dir={out}", "format=json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["rows"]


def _key(row: dict) -> str:
    return "/".join(row[k] for k in ("variant", "source", "tag", "target", "precision"))


@pytest.fixture(scope="module")
def report(tree, tmp_path_factory) -> Tuple[Path, str, List[dict]]:
    path = tmp_path_factory.mktemp("page") / "report.html"
    r = run_zoo("report", f"out_dir={tree}", f"report_file={path}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == str(path)
    return path, path.read_text(encoding="utf-8"), _results(tree)


def _element(html: str, start: str, end: str) -> str:
    i = html.index(start)
    return html[i:html.index(end, i) + len(end)]


def _svg(html: str, figure_id: str) -> ET.Element:
    figure = _element(html, f'<figure id="{figure_id}">', "</figure>")
    return ET.fromstring(_element(figure, "<svg", "</svg>"))  # the inline SVG is well-formed XML


def _marks(node: ET.Element) -> int:
    """Drawn shapes under a node: a marker is a <use> of a shape in <defs>, or a <path> of its own."""
    return sum(0 if child.tag == f"{SVG}defs" else (child.tag in (f"{SVG}use", f"{SVG}path")) + _marks(child)
               for child in node)


def _points(svg: ET.Element) -> int:
    """Scatter markers drawn in the axes (the legend's sample markers are not children of an axes)."""
    return sum(_marks(child) for ax in svg.iter(f"{SVG}g") if ax.get("id", "").startswith("axes_")
               for child in ax if child.get("id", "").startswith("PathCollection_"))


def _drawable_checkpoints() -> List[dict]:
    from zoo.registry.loader import load_registry
    from zoo.registry.query import list_rows

    return [c for c in list_rows(load_registry()) if c["top1"] is not None]


def _grid_cell(html: str, variant: str, target: str, precision: str) -> str:
    row = _element(html, f'<tr data-variant="{variant}">', "</tr>")
    (cell,) = re.findall(rf'<td class="[^"]*" data-target="{target}" data-precision="{precision}".*?</td>', row)
    return cell


# --- the page as text --------------------------------------------------------------------------------

def test_table_has_a_row_per_artifact_in_results_order(report):
    _, html, rows = report
    table = _element(html, '<table id="results"', "</table>")
    assert re.findall(r'<tr data-key="([^"]+)"', table) == [_key(r) for r in rows]
    assert len(rows) == 5
    # Numeric columns carry the exact number to sort by; text columns do not.
    head = _element(table, "<thead>", "</thead>")
    assert '<th scope="col" data-type="num">size_mib</th>' in head
    assert '<th scope="col">reason</th>' in head
    for r in rows:
        assert f'data-sort="{r["size_mib"]!r}"' in table


def test_counts_and_grid_reasons(report):
    _, html, rows = report
    by_key = {_key(r): r for r in rows}
    assert re.search(r'id="n-artifacts">(\d+)<', html).group(1) == str(len(rows))
    assert re.search(r'id="n-passed">(\d+)<', html).group(1) == "3"
    assert re.search(r'id="n-failed">(\d+)<', html).group(1) == "1"
    assert re.search(r'id="n-kit-only">(\d+)<', html).group(1) == "1"

    for target in ("onnx", "openvino"):
        assert 'class="cell passed"' in _grid_cell(html, VARIANT, target, "fp32")
    assert 'class="cell passed"' in _grid_cell(html, OTHER, "onnx", "fp32")
    failed = by_key[f"{VARIANT}/{SOURCE}/{TAG}/openvino/fp16"]["reason"]
    kit = by_key[f"{VARIANT}/{SOURCE}/{TAG}/vacc/int8"]["reason"]
    assert failed == "failed: macs" and kit == "kit only (vamc not installed)"
    for (target, precision), state, reason in ((("openvino", "fp16"), "failed", failed),
                                                (("vacc", "int8"), "kit-only", kit)):
        cell = _grid_cell(html, VARIANT, target, precision)
        assert f'class="cell {state}"' in cell
        assert f">{reason} <" in cell and f'title="{reason} ({SOURCE}/{TAG})"' in cell
    cell = _grid_cell(html, VARIANT, "bpu", "int8")
    assert 'class="cell not-built"' in cell and 'title="not built"' in cell and ">not built</td>" in cell
    # Every variant of the registry has a row, built or not.
    from zoo.registry.loader import load_registry

    assert re.findall(r'<tr data-variant="([^"]+)"', html) == list(load_registry().variants)


def test_the_plots_draw_every_point(report):
    _, html, rows = report
    svgs = {fid: _svg(html, fid) for fid in PLOTS}
    assert html.count("<svg") == 4
    drawable = _drawable_checkpoints()
    assert _points(svgs["plot-accuracy"]) == len(drawable) > 10
    labels = {t.text for t in svgs["plot-accuracy"].iter(f"{SVG}text")}
    for c in drawable:
        assert f"{c['variant'].removeprefix('resnext')} {c['tag']}" in labels
    assert "Pareto front" in labels
    assert _points(svgs["plot-size"]) == 2 * len(rows)  # a dot per artifact in each panel
    measured = sum(r[k] is not None for r in rows for k in ("source_max_abs", "target_max_abs"))
    assert _points(svgs["plot-parity"]) == measured > len(rows)
    # throughput against latency: this machine's three points (the other machine's are not drawn), a panel
    # per measured variant, each with its front
    assert _points(svgs["plot-speed"]) == 3
    speed = {t.text for t in svgs["plot-speed"].iter(f"{SVG}text")}
    assert {"bs1", "bs8", "Pareto front"} <= speed and any(OTHER in t for t in speed if t)
    assert "no data" not in html


def test_vendor_speed_is_a_table_of_its_own(report):
    _, html, _ = report
    table = _element(html, '<h3 id="vendor-speed">', "</table>")
    assert "not comparable" in table and "417.01" in table and "189.61" in table  # ixRT fp16 bs32, RDK X5 BPU


def test_nothing_is_fetched(report):
    _, html, _ = report
    assert not re.search(r"<(link|img|iframe|object|embed)\b", html, re.I)
    assert not re.search(r"<script[^>]*\bsrc=", html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?\s*(https?:)?//", html, re.I)
    assert not re.search(r"\b(src|href|xlink:href)\s*=\s*['\"]?\s*(https?:)?//", html, re.I)
    # The only URLs left are XML namespace names, which identify and are never loaded.
    assert {m.group(0) for m in re.finditer(r"https?://[^\s\"'<>]+", html)} <= {
        "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def test_pareto_front_against_brute_force():
    from zoo.report.plots import pareto_front

    rng = random.Random(7)
    for _ in range(50):
        pts = [(rng.choice([1.0, 2.0, 4.0, 8.0, rng.uniform(1, 10)]), rng.choice([70.0, rng.uniform(70, 85)]))
               for _ in range(rng.randint(1, 12))]
        beaten = {i for i, (x, y) in enumerate(pts) for j, (u, v) in enumerate(pts)
                  if j != i and u <= x and v >= y and (u, v) != (x, y)}
        front = pareto_front(pts)
        # Duplicates of a front point are one point on the front.
        assert {pts[i] for i in front} == {p for i, p in enumerate(pts) if i not in beaten}
        assert len(front) == len({pts[i] for i in front})
        assert [pts[i][0] for i in front] == sorted(pts[i][0] for i in front)


def test_empty_out_dir_and_empty_selection_say_no_data(tmp_path):
    out = tmp_path / "artifacts"
    out.mkdir()
    r = run_zoo("report", f"out_dir={out}")
    assert r.returncode == 0, r.stderr
    html = (out / "report.html").read_text()
    assert re.search(r'id="n-artifacts">0<', html)
    assert "no data" not in _element(html, '<figure id="plot-accuracy">', "</figure>")
    for fid in ("plot-size", "plot-parity", "plot-speed"):
        assert "no data:" in _element(html, f'<figure id="{fid}">', "</figure>")
    assert html.count("<svg") == 4

    r = run_zoo("report", f"out_dir={out}", "filter=nothing_matches*", f"report_file={tmp_path / 'none.html'}")
    assert r.returncode == 0, r.stderr
    html = (tmp_path / "none.html").read_text()
    assert "no data:" in _element(html, '<figure id="plot-accuracy">', "</figure>")
    assert "<tr data-variant=" not in html


def test_default_path_filters_and_nothing_left_behind(tree):
    before = _results(tree)
    r = run_zoo("report", f"out_dir={tree}", "source=torchvision", "filter=resnext50*")
    assert r.returncode == 0, r.stderr
    page = tree / "report.html"
    assert r.stdout.strip().splitlines()[-1] == str(page)
    html = page.read_text()
    keys = re.findall(r'<tr data-key="([^"]+)"', html)
    assert keys == [_key(r) for r in before if r["variant"] == VARIANT] and len(keys) == 4
    assert "(filter=resnext50*, source=torchvision)" in html
    assert not [p for p in tree.iterdir() if p.name.endswith(".tmp")]
    assert _results(tree) == before  # the page beside the artifacts is no artifact
    g = run_zoo("gc", f"out_dir={tree}", "format=json")
    assert g.returncode == 0 and json.loads(g.stdout)["rows"] == [], g.stderr


def test_help_lists_report():
    r = run_zoo("--help")
    assert r.returncode == 0 and "\n  report    " in r.stdout and "python -m zoo report " in r.stdout


@pytest.mark.parametrize("args, message", [
    (("out_dir=/nonexistent/zoo-artifacts",), "error: out_dir=/nonexistent/zoo-artifacts: no such folder"),
    (("report_file={tmp}",), "error: report_file={tmp}: is a folder"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    args = tuple(a.format(tmp=tmp_path) for a in args)
    r = run_zoo("report", *args, *(() if "out_dir" in args[0] else (f"out_dir={tmp_path}",)), cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(message.format(tmp=tmp_path)), line


# --- the page in a browser ---------------------------------------------------------------------------

browser_only = pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed "
                                  "(apt-get install chromium chromium-driver; .ci/run installs them)")


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # the system's browser and driver: nothing is downloaded
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield d
    d.quit()


@pytest.fixture
def page(report, driver):
    path, _, rows = report
    driver.get(path.as_uri())
    return driver, rows


def _column(d, name: str) -> Tuple[List[str], List[str]]:
    """The exact numbers (data-sort) and the visible text of one column, in the table's current order."""
    return d.execute_script("""
        var t = document.getElementById("results"), name = arguments[0];
        var col = Array.prototype.findIndex.call(t.tHead.rows[0].cells, function (th) {
            return th.textContent.trim() === name; });
        var cells = Array.prototype.map.call(t.tBodies[0].rows, function (r) { return r.cells[col]; });
        return [cells.map(function (c) { return c.dataset.sort; }),
                cells.map(function (c) { return c.textContent.trim(); })];""", name)


@browser_only
def test_browser_table_sorts_numerically(page):
    from selenium.webdriver.common.by import By

    d, rows = page
    assert len(d.find_elements(By.CSS_SELECTOR, "#results tbody tr")) == len(rows)
    before, shown = _column(d, "size_mib")
    assert [float(x) for x in before] == [r["size_mib"] for r in rows]
    as_numbers = sorted(before, key=float)
    assert as_numbers != sorted(before), "the data should tell a numeric sort from a text sort"
    header = d.find_element(By.XPATH, "//table[@id='results']//th[normalize-space()='size_mib']")
    header.click()
    ascending, _ = _column(d, "size_mib")
    assert ascending == as_numbers != before and header.get_attribute("aria-sort") == "ascending"
    header.click()
    descending, shown = _column(d, "size_mib")
    assert descending == sorted(before, key=float, reverse=True)
    assert header.get_attribute("aria-sort") == "descending"
    assert [float(s) for s in shown] == [float(x) for x in descending]  # rows moved whole
    keys = [tr.get_attribute("data-key") for tr in d.find_elements(By.CSS_SELECTOR, "#results tbody tr")]
    size_of = {_key(r): r["size_mib"] for r in rows}
    assert [size_of[k] for k in keys] == [float(x) for x in descending]
    # A text column sorts as text.
    d.find_element(By.XPATH, "//table[@id='results']//th[normalize-space()='target']").click()
    assert _column(d, "target")[1] == sorted(r["target"] for r in rows)


@browser_only
def test_browser_plots_have_size_and_drawn_marks(page):
    d, rows = page
    expected = {"plot-accuracy": len(_drawable_checkpoints()), "plot-size": 2 * len(rows),
                "plot-parity": sum(r[k] is not None for r in rows for k in ("source_max_abs", "target_max_abs")),
                "plot-speed": 3}
    for fid in PLOTS:
        box = d.execute_script("""
            var svg = document.querySelector("#" + arguments[0] + " svg"), r = svg.getBoundingClientRect();
            return [r.width, r.height,
                    svg.querySelectorAll("g[id^='axes_'] > g[id^='PathCollection_'] :is(use, path):not(defs *)").length,
                    svg.querySelectorAll("path").length, svg.querySelectorAll("text").length];""", fid)
        width, height, points, paths, texts = box
        assert width > 300 and height > 150, (fid, box)
        assert points == expected[fid] > 0 and paths > 10 and texts > 5, (fid, box)
    # Nothing on the page asked the network (or the disk) for anything.
    assert d.execute_script("return performance.getEntriesByType('resource').length") == 0


def _rgb(css: str) -> Tuple[int, int, int]:
    r, g, b = (int(x) for x in re.findall(r"\d+", css)[:3])
    return r, g, b


@browser_only
def test_browser_grid_colours_and_reasons(page):
    from selenium.webdriver.common.by import By

    d, rows = page
    by_key = {_key(r): r for r in rows}

    def cell(variant: str, target: str, precision: str):
        return d.find_element(By.CSS_SELECTOR, f"#grid tr[data-variant='{variant}'] "
                              f"td[data-target='{target}'][data-precision='{precision}']")

    colours: Dict[str, Tuple[int, int, int]] = {}
    for variant, target, precision, state in ((VARIANT, "onnx", "fp32", "passed"),
                                              (VARIANT, "openvino", "fp32", "passed"),
                                              (OTHER, "onnx", "fp32", "passed"),
                                              (VARIANT, "openvino", "fp16", "failed"),
                                              (VARIANT, "vacc", "int8", "kit-only"),
                                              (VARIANT, "mindir", "fp32", "not-built")):
        c = cell(variant, target, precision)
        assert state in c.get_attribute("class").split()
        colour = _rgb(c.value_of_css_property("background-color"))
        assert colours.setdefault(state, colour) == colour  # one colour per state
        text = c.text.strip()
        if state == "not-built":
            assert text == c.get_attribute("title") == "not built"
        elif state != "passed":
            reason = by_key[f"{variant}/{SOURCE}/{TAG}/{target}/{precision}"]["reason"]
            assert text.startswith(reason) and reason in c.get_attribute("title")
    r, g, b = colours["passed"]
    assert g > r and g > b  # green
    r, g, b = colours["failed"]
    assert r > g and r > b  # red
    r, g, b = colours["kit-only"]
    assert r > g > b  # amber
    r, g, b = colours["not-built"]
    assert r == g == b  # grey
    assert len(set(colours.values())) == 4


@browser_only
def test_browser_screenshot(page, tmp_path):
    d, _ = page
    height = d.execute_script("return document.documentElement.scrollHeight")
    d.set_window_size(1400, min(height + 100, 6000))
    shot = tmp_path / "report.png"
    assert d.save_screenshot(str(shot))
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, png_height = struct.unpack(">II", data[16:24])  # IHDR
    assert width >= 1000 and png_height >= 1500 and len(data) > 50_000, (width, png_height, len(data))
