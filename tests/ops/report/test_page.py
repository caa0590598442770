"""The HTML report page: content, escaping, bad input, and the page in a real headless Chromium."""

import re

import numpy as np
import pytest

from npeff.errors import IncompatibleStoresError, InvalidArgumentError, StoreExistsError
from npeff.ops.report.page import build_report, write_report
from tests.ops.analysis.helpers import hand_made_decomposition, known_tunings_case, small_store


@pytest.fixture
def case(tmp_path):
    W, labels, predictions = known_tunings_case()
    texts = [f"example number {i}" for i in range(len(labels))]
    texts[3] = "<script>document.title='owned'</script> & more"
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions, texts=texts)
    return hand_made_decomposition(tmp_path / "decomposition", store, W), store


def test_report_content(case):
    decomposition, store = case
    page = build_report(decomposition, store, k=4)
    assert len(re.findall(r'<div class="card" id="component-\d+"', page)) == 5
    assert page.count("<svg") == 3  # loss curve, coefficients, component sizes
    assert "&lt;script&gt;document.title" in page and "<script>document.title" not in page  # escaped
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the network
    assert "<b>25.0%</b>LnP-tuned" in page and "<b>50.0%</b>prediction-tuned" in page
    lnp_badges = re.findall(r'id="component-(\d+)"(?:(?!id="component-).)*?class="badge b-lnp"', page, re.S)
    assert lnp_badges == ["1"]  # only component 1 is label- but not prediction-tuned
    assert store.fingerprint in page


def test_report_compares_methods(case, tmp_path):
    decomposition, store = case
    W = decomposition.W
    other = hand_made_decomposition(tmp_path / "other-method", store, W[:, :2])
    assert 'id="methods"' not in build_report(decomposition, store)
    page = build_report(decomposition, store, compare=[tmp_path / "other-method"])
    table = page[page.index('id="method-table"'):page.index("</table>", page.index('id="method-table"'))]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td><td class=\"num\">(\d+)</td>", table)
    assert rows == [("decomposition", "npeff", "5"), ("other-method", "npeff", "2")]
    assert "25.0%" in table and other is not None


def test_write_report_writes_and_overwrites(case, tmp_path):
    decomposition, _ = case
    out = write_report(decomposition, out=tmp_path / "r.html")
    assert out == tmp_path / "r.html" and out.read_text().startswith("<!DOCTYPE html>")
    assert "example number 5<" in out.read_text()  # the 6th example of component 0, shown with k=16
    write_report(decomposition, out=out, overwrite=True, k=2)
    assert out.read_text().startswith("<!DOCTYPE html>") and "example number 5<" not in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def _incompatible_store(tmp_path):
    W, labels, predictions = known_tunings_case()
    return small_store(tmp_path / "other", labels=labels[:20], predictions=predictions[:20])


@pytest.mark.parametrize("name, error, message", [
    ("existing.html", StoreExistsError, "--overwrite"),
    ("folder.html", StoreExistsError, "is a directory"),
    ("r.txt", InvalidArgumentError, r"\.html"),
    ("missing/r.html", InvalidArgumentError, "does not exist"),
    ("x.html", IncompatibleStoresError, "do not belong together"),
], ids=["exists", "directory", "not-html", "no-folder", "other-store"])
def test_write_report_refuses(case, tmp_path, name, error, message):
    decomposition, _ = case
    (tmp_path / "existing.html").write_text("keep me")
    (tmp_path / "folder.html").mkdir()
    store = _incompatible_store(tmp_path) if name == "x.html" else None
    with pytest.raises(error, match=message):
        write_report(decomposition, store, out=tmp_path / name)
    assert (tmp_path / "existing.html").read_text() == "keep me"
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "r.txt").exists()


@pytest.mark.browser
def test_report_in_headless_chromium(case, tmp_path, browser):
    decomposition, _ = case
    out = write_report(decomposition, out=tmp_path / "report.html")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems, requests = [], []
    page.on("console", lambda message: problems.append(message.text) if message.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.resolve().as_uri())
    page.wait_for_load_state("load")
    assert problems == []
    assert requests == [out.resolve().as_uri()]  # the page loads nothing else
    assert page.title() == "NPEFF report: decomposition"

    cards = page.locator("#cards .card")
    assert cards.count() == 5
    for c in range(5):
        assert page.locator(f"#component-{c}").is_visible()
    assert page.locator("#plots svg").count() == 3
    assert page.text_content("#count") == "5 of 5 components shown"

    page.fill("#search", "example number 62")  # no component has example 62
    assert page.locator("#cards .card:not(.hidden)").count() == 0
    assert page.text_content("#count") == "0 of 5 components shown"
    page.fill("#search", "number 50")
    assert [page.locator("#cards .card:not(.hidden)").nth(i).get_attribute("data-index")
            for i in range(page.locator("#cards .card:not(.hidden)").count())] == ["4"]
    page.fill("#search", "")
    assert page.text_content("#count") == "5 of 5 components shown"

    page.select_option("#sort", "size")
    order = [cards.nth(i).get_attribute("data-index") for i in range(5)]
    sizes = [int(cards.nth(i).get_attribute("data-size")) for i in range(5)]
    assert sizes == sorted(sizes, reverse=True) and order[0] == "3"

    header = page.locator("#tuning-table th", has_text="non-zero")
    header.click()
    values = [int(v) for v in page.locator("#tuning-table tbody tr td:nth-child(2)").all_text_contents()]
    assert values == sorted(values)
    header.click()
    values = [int(v) for v in page.locator("#tuning-table tbody tr td:nth-child(2)").all_text_contents()]
    assert values == sorted(values, reverse=True)

    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert page.title() == "NPEFF report: decomposition"  # the escaped script never ran
    assert problems == []
    page.close()


def test_report_handles_a_dead_component(tmp_path):
    W, labels, predictions = known_tunings_case()
    W[:, 4] = 0.0
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    decomposition = hand_made_decomposition(tmp_path / "d", store, W, losses=np.array([]))
    page = build_report(decomposition, store)
    assert 'id="component-4"' in page and "0 examples with non-zero coefficient" in page


def test_report_shows_raw_and_effective_counts(tmp_path):
    W, labels, predictions = known_tunings_case()
    W[56:64, 1] = 1e-12  # component 1: 16 real coefficients and 8 tiny ones
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    decomposition = hand_made_decomposition(tmp_path / "d", store, W)
    page = build_report(decomposition, store)
    assert "24 examples with non-zero coefficient, 16 in the effective support" in page
    row = re.search(r'href="#component-1">1</a></td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>', page)
    assert row.groups() == ("24", "16")
    assert re.search(r'id="support-threshold"><b>1e-06</b>', page)
    assert 'data-size="16" data-nonzero="24"' in page
    raw = build_report(decomposition, store, support_threshold=0.0)
    assert re.search(r'id="support-threshold"><b>0</b>', raw) and 'data-size="24" data-nonzero="24"' in raw
    with pytest.raises(InvalidArgumentError, match="support threshold"):
        build_report(decomposition, store, support_threshold=2.0)


def test_report_of_fitted_coefficients(tmp_path):
    from npeff.ops import fit_coefficients

    W, labels, predictions = known_tunings_case()
    store = small_store(tmp_path / "store", labels=labels, predictions=predictions)
    decomposition = hand_made_decomposition(tmp_path / "d", store, W)
    held_out = small_store(tmp_path / "held-out", labels=labels, predictions=predictions,
                           texts=[f"held-out {i}" for i in range(len(labels))])
    fit_coefficients(decomposition, held_out, out=tmp_path / "coef", steps=2)
    page = build_report(tmp_path / "coef")
    assert "Fitted coefficients</th>" in page and f"coefficients fitted with {(tmp_path / 'd').resolve()}" in page
    assert "held-out 0<" in page or "held-out 1<" in page  # the examples are the fit's store's
    assert "example number" not in page
    assert "Loss at every step of the decomposition the coefficients were fitted with (d)" in page
    assert str(held_out.path) in page
    with pytest.raises(IncompatibleStoresError, match="the coefficients"):
        build_report(tmp_path / "coef", store)  # the decomposition's store is not the fit's


def test_report_with_the_spectrum(case):
    from npeff.ops.analysis import pef_spectrum

    decomposition, store = case
    page = build_report(decomposition, store, spectrum=True)
    assert page.count("<svg") == 4 and "PEF eigenvalue decay" in page
    assert "each example&#39;s divided by the largest (paper, Figure 3)" in page
    summed = build_report(decomposition, store, spectrum=pef_spectrum(store, normalize="sum"))
    assert "divided by their sum" in summed
    assert "PEF eigenvalue decay" not in build_report(decomposition, store)
