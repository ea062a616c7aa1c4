"""The results explorer (medbench/report/site.py) in a real browser: Debian's chromium, driven by Selenium.

The browser is a test requirement like pytest: `bash scripts/install-browser.sh` (apt-get install
chromium chromium-driver). Without it this test fails, it does not skip, so CI cannot pass without
having looked at the page; MEDBENCH_SKIP_BROWSER=1 skips it on a machine that cannot have one.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from medbench.data.contamination import ALL_SOURCES, Contamination
from medbench.records import io
from medbench.report.build import build_report
from tests.run_folders import PROVENANCE

LETTERS = "ABCDE"
# Two exams with known answers per run. KorMedMCQA doctor: 7 questions, 5 options; MedQA: 5, 4 options.
DOCTOR = [f"doctor-2024-1-{i}" for i in range(7)]
MEDQA = [f"medqa-{i:04d}" for i in range(5)]
GOLD = {"doctor": "ABCDEAB", "usmle": "ABCDA"}
# Multiple-choice runs: the letter each question's log-likelihoods favour.
BASE_MC = {"doctor": "AACDBAE", "usmle": "ABAAC"}  # 4/7 and 2/5 right; doctor-2024-1-1 is a tie A=B
LORA_MC = {"doctor": "ABCDEAA", "usmle": "BBCDD"}  # 6/7 and 3/5
# The generative run: the extracted letter ("" = nothing parsable) and the text it came from.
GEN = {"doctor": "AB?D?AB", "usmle": "A?CDA"}  # 5/7 and 4/5 right, 3 invalid
EXPECTED_PCT = {"m-base-mc": ("57.1", "40.0"), "m-lora-mc": ("85.7", "60.0"), "m-base-gen": ("71.4", "80.0")}


def _doc(exam: str, i: int) -> dict:
    medqa = exam == "usmle"
    n_options = 4 if medqa else 5
    return {
        "id": (MEDQA if medqa else DOCTOR)[i],
        "dataset": "medqa" if medqa else "kormedmcqa",
        "exam": exam,
        "split": "test",
        "year": None if medqa else 2024,
        "question": f"Question {i} of {exam}: which one?",
        "options": [f"option {LETTERS[k]} of {exam} {i}" for k in range(n_options)],
        "answer": GOLD[exam][i],
    }


def _mc_sample(doc: dict, letter: str, tie: bool) -> dict:
    lls = [-3.0 - 0.25 * k for k in range(len(doc["options"]))]
    best = LETTERS.index(letter)
    lls[best] = -0.75
    if tie:
        lls[best + 1] = -0.75  # lm-eval's argmax keeps the first of equal maxima
    pairs = [[ll, k == best] for k, ll in enumerate(lls)]
    return {
        "doc_id": 0,
        "doc": doc,
        "target": LETTERS.index(doc["answer"]),
        "resps": [[p] for p in pairs],
        "filtered_resps": pairs,
        "filter": "none",
        "metrics": ["acc"],
        "acc": float(letter == doc["answer"]),
    }


def _gen_sample(doc: dict, letter: str) -> dict:
    extracted = "" if letter == "?" else letter
    text = f"생각해 보면 정답: {letter}" if extracted else f"model text without a letter for {doc['id']}"
    return {
        "doc_id": 0,
        "doc": doc,
        "target": doc["answer"],
        "resps": [[text]],
        "filtered_resps": [extracted],
        "filter": "extract_answer",
        "metrics": ["exact_match"],
        "exact_match": float(extracted == doc["answer"]),
    }


def write_run(results, run_id: str, answers: dict, *, variant: str = "base", mode: str = "mc") -> None:
    """A run folder as medbench.eval.runner writes it, samples in lm-eval's shapes."""
    run_dir = results / "runs" / run_id
    run_dir.mkdir(parents=True)
    tasks = []
    for exam, letters in answers.items():
        dataset = "medqa" if exam == "usmle" else "kormedmcqa"
        name = f"medbench_{dataset}_{exam}" + ("_gen" if mode == "gen" else "")
        docs = [_doc(exam, i) for i in range(len(letters))]
        samples = [
            _gen_sample(d, x) if mode == "gen" else _mc_sample(d, x, run_id == "m-base-mc" and d["id"] == DOCTOR[1])
            for d, x in zip(docs, letters)
        ]
        io.write_samples(io.samples_path(run_dir, name), samples)
        metric = "exact_match" if mode == "gen" else "acc"
        correct, invalid = sum(int(s[metric]) for s in samples), sum(1 for s in samples if s["filtered_resps"][0] == "")
        tasks.append(
            {
                "task": name,
                "dataset": dataset,
                "exam": exam,
                "metric": metric,
                "n": len(samples),
                "correct": correct,
                "accuracy": correct / len(samples),
                "stderr": None,
                "invalid": invalid,
                "invalid_rate": invalid / len(samples),
                "truncated_prompts": 0,
            }
        )
    record = {
        "run_id": run_id,
        "model": "tiny-model",
        "params_b": 0.5,
        "weights": "real",
        "variant": variant,
        "prompt": "zeroshot",
        "mode": mode,
        "limit": None,
        "sample": None,
        "device": "cpu",
        "tasks": tasks,
        "timing": {"questions_per_second": 2.0},
        "memory": {"peak_gib": 1.0},
        "hardware": {"gpu": None},
        "git_sha": "abc",
        **PROVENANCE,
        "training_record": {"sha256": "0" * 64} if variant != "base" else None,
    }
    (run_dir / "record.json").write_text(json.dumps(record))


def _browser_binaries() -> tuple[str | None, str | None]:
    """Debian's chromium and chromedriver; also a CI image's Chrome (scripts/install-browser.sh looks alike)."""
    chromium = os.environ.get("MEDBENCH_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = os.environ.get("MEDBENCH_CHROMEDRIVER") or shutil.which("chromedriver")
    if not driver and os.environ.get("CHROMEWEBDRIVER"):  # GitHub's runner images
        driver = shutil.which("chromedriver", path=os.environ["CHROMEWEBDRIVER"])
    return chromium, driver


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if os.environ.get("MEDBENCH_SKIP_BROWSER") == "1":
        pytest.skip("MEDBENCH_SKIP_BROWSER=1")
    chromium, driver_path = _browser_binaries()
    if not (chromium and driver_path):
        pytest.fail(
            f"no {'chromium' if not chromium else 'chromedriver'} found: run `bash scripts/install-browser.sh` "
            "(apt-get install chromium chromium-driver), or set MEDBENCH_SKIP_BROWSER=1 to skip this test"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1500,1000",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, timeout: float = 10):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: condition(d), message=f"waiting for {what}")


def _open(driver, index_html) -> None:
    driver.get(index_html.as_uri())
    _wait(
        driver,
        lambda d: _css(d, "#accuracy-table tbody tr") or "failed" in d.find_element("id", "status").text,
        "the accuracy table",
    )
    status = driver.find_element("id", "status")
    assert not status.is_displayed(), status.text


def _css(driver, selector):
    return driver.find_elements("css selector", selector)


def _select(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _count(driver) -> int:
    """The question browser's match count, once the list shows it (loading is asynchronous)."""
    return int(_wait(driver, lambda d: d.find_element("id", "q-count").get_attribute("data-count"), "the list"))


def _listed(driver) -> set[str]:
    return {tr.get_attribute("data-id") for tr in _css(driver, "#q-table tbody tr")}


def _open_questions(driver, run_id: str) -> None:
    driver.find_element("css selector", '#tabs button[data-tab="questions"]').click()
    _select(driver, "q-run", run_id)
    _wait(driver, lambda d: f"A: {run_id}" in d.find_element("id", "q-count").text, f"run {run_id} in the browser")


@pytest.mark.slow  # reads every record, the whole data or a browser: seconds
def test_explorer_in_a_real_browser(tmp_path, browser):
    results = tmp_path / "results"
    write_run(results, "m-base-mc", BASE_MC)
    write_run(results, "m-lora-mc", LORA_MC, variant="lora")
    write_run(results, "m-base-gen", GEN, mode="gen")
    out = build_report(results, resamples=200)  # what `just report` runs
    site = results / "site"
    assert site in out["written"]
    _open(browser, site / "index.html")

    # Accuracy table: each run's numbers as its record has them, with n on hover.
    for run_id, (doctor, medqa) in EXPECTED_PCT.items():
        record = json.loads((results / "runs" / run_id / "record.json").read_text())
        by_exam = {t["exam"]: t for t in record["tasks"]}
        for column, exam, expected in (("doctor", "doctor", doctor), ("medqa", "usmle", medqa)):
            cell = browser.find_element(
                "css selector", f'#accuracy-table tr[data-run="{run_id}"] td[data-column="{column}"]'
            )
            assert f"{100 * by_exam[exam]['correct'] / by_exam[exam]['n']:.1f}" == expected
            assert cell.text.split()[0] == expected, (run_id, column, cell.text)
            assert cell.get_attribute("title").startswith(f"n = {by_exam[exam]['n']} · 95% CI ")
    # The per-question files are not loaded until the question browser opens.
    assert not _css(browser, 'script[src^="data/run-"]') and not _css(browser, 'script[src^="data/questions-"]')

    # Chart: one point per run, and a variant's checkbox hides exactly its points.
    def shown(variant):
        return [g for g in _css(browser, f'#chart g.series[data-variant="{variant}"]') if g.is_displayed()]

    assert (len(shown("base")), len(shown("lora"))) == (2, 1)
    browser.find_element("css selector", '#chart-variants input[value="lora"]').click()
    assert (len(shown("base")), len(shown("lora"))) == (2, 0)
    browser.find_element("css selector", '#chart-variants input[value="lora"]').click()
    assert len(shown("lora")) == 1
    _select(browser, "chart-task", "medqa")
    assert [g.get_attribute("data-run") for g in _css(browser, "#chart g.series")] == [
        "m-base-mc",
        "m-base-gen",
        "m-lora-mc",
    ]

    # Other tables: letter distributions per run and task, contamination as computed.
    browser.find_element("css selector", '#tabs button[data-tab="letters"]').click()
    letter_rows = _css(browser, "#letter-table tbody tr")
    assert len(letter_rows) == 6
    header = [th.text for th in _css(browser, "#letter-table thead th")]
    cells = {
        (r.get_attribute("data-run"), r.find_elements("css selector", "td")[1].text): dict(
            zip(header, (td.text for td in r.find_elements("css selector", "td")))
        )
        for r in letter_rows
    }
    base_doctor = cells[("m-base-mc", "medbench_kormedmcqa_doctor")]
    assert (base_doctor["n"], base_doctor["ties"], base_doctor["accuracy %"]) == ("7", "1", "57.1")
    # Gold A B C D E A B: majority baseline 2/7. Answers A A C D B A E: Σ p·p = (3·2 + 1·2 + 1 + 1 + 1) / 7² = 11/49.
    assert (base_doctor["majority baseline %"], base_doctor["prior-matched %"]) == ("28.6", "22.4")
    assert cells[("m-base-gen", "medbench_medqa_usmle_gen")]["invalid"] == "1"
    shown = [r for r in out["contamination"].summary if r["matched"] or r["source"] == ALL_SOURCES]
    contamination_rows = _css(browser, "#contamination-table tbody tr")
    assert len(contamination_rows) == len(shown)
    first = [td.get_attribute("textContent") for td in contamination_rows[0].find_elements("css selector", "td")]
    assert first[:3] == [shown[0]["test"], shown[0]["source"], str(shown[0]["test_rows"])]
    assert (first[6], first[7]) == (str(shown[0]["option_pool"]), str(shown[0]["matched"]))
    assert len(_css(browser, "#comparison-table tbody tr")) == len(out["comparisons"])

    # Question browser: outcome filters.
    _open_questions(browser, "m-base-mc")
    assert _count(browser) == 12
    _select(browser, "q-outcome", "wrong")
    wrong = {DOCTOR[i] for i in (1, 4, 6)} | {MEDQA[i] for i in (2, 3, 4)}
    assert _count(browser) == len(wrong) and _listed(browser) == wrong
    _select(browser, "q-outcome", "right")
    assert _count(browser) == 12 - len(wrong)
    _select(browser, "q-outcome", "")

    # Side by side with run B, only where the two answer differently; then one exam only.
    _select(browser, "q-other", "m-lora-mc")
    _wait(browser, lambda d: "B: m-lora-mc" in d.find_element("id", "q-count").text, "run B")
    browser.find_element("id", "q-disagree").click()
    differ = {DOCTOR[i] for i in (1, 4, 6)} | {MEDQA[i] for i in (0, 2, 3, 4)}
    assert _count(browser) == len(differ) and _listed(browser) == differ
    _select(browser, "q-exam", "usmle")
    assert _count(browser) == 4

    # A question's detail: both runs' letter scores, the tie, the gold answer.
    _select(browser, "q-exam", "")
    browser.find_element("css selector", f'#q-table tr[data-id="{DOCTOR[1]}"]').click()
    detail = browser.find_element("id", "q-detail")
    panels = detail.find_elements("css selector", ".panel")
    assert len(panels) == 2
    assert "A: m-base-mc" in panels[0].text and "answer A: wrong" in panels[0].text and "tie" in panels[0].text
    assert panels[0].text.count("-0.7500") == 2  # the two tied letters' log-likelihoods
    assert "B: m-lora-mc" in panels[1].text and "answer B: right" in panels[1].text
    assert detail.find_element("css selector", ".options li.gold").text.startswith("B. option B of doctor 1")

    # The generative run: invalid answers, and the generated text behind an answer.
    browser.find_element("id", "q-disagree").click()
    _select(browser, "q-other", "")
    _open_questions(browser, "m-base-gen")
    _select(browser, "q-outcome", "invalid")
    assert _count(browser) == 3 and _listed(browser) == {DOCTOR[2], DOCTOR[4], MEDQA[1]}
    browser.find_element("css selector", f'#q-table tr[data-id="{DOCTOR[2]}"]').click()
    assert (
        "model text without a letter for doctor-2024-1-2" in browser.find_element("css selector", "#q-detail pre").text
    )
    assert "invalid: no answer could be extracted" in browser.find_element("id", "q-detail").text
    _select(browser, "q-outcome", "right")
    browser.find_element("css selector", f'#q-table tr[data-id="{MEDQA[0]}"]').click()
    assert browser.find_element("css selector", "#q-detail pre").text == "생각해 보면 정답: A"

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_site_files_are_deterministic_and_follow_the_runs(tmp_path):
    from medbench.records.reader import load_runs
    from medbench.report.site import write_site

    results = tmp_path / "results"
    write_run(results, "m:base mc", BASE_MC)  # not a safe file name as it stands
    write_run(results, "m-base-gen", GEN, mode="gen")
    site = write_site(results, load_runs(results), [], [], Contamination([], [], []))
    files = {p.name: p.read_bytes() for p in (site / "data").iterdir()}
    assert set(files) == {
        "summary.js",
        "run-m_base_mc.js",
        "run-m-base-gen.js",
        "questions-kormedmcqa.js",
        "questions-medqa.js",
    }
    # Question texts once per dataset, not once per run.
    assert sum(b"Question 3 of doctor" in data for data in files.values()) == 1
    assert write_site(results, load_runs(results), [], [], Contamination([], [], [])) == site
    assert {p.name: p.read_bytes() for p in (site / "data").iterdir()} == files  # same results, same bytes
    summary = files["summary.js"].decode()
    assert summary.startswith('MEDBENCH.register("summary",') and '"file":"run-m_base_mc"' in summary

    (results / "runs" / "m-base-gen" / "record.json").unlink()
    write_site(results, load_runs(results), [], [], Contamination([], [], []))
    assert "run-m-base-gen.js" not in {p.name for p in (site / "data").iterdir()}  # a removed run's file goes too
