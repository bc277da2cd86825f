"""``report.html``: the evaluation page and the sweep page, checked without a browser (and, slow, in one).

The evaluated folder files two metal tracks under hardcore, so the page has mistakes to put first.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import Browser, find_chromium
from conftest import REPO, read_metrics
from test_report import make_job, write_multirun

from metalcore import evaluate
from metalcore.audio.decode import decode
from metalcore.core.files import read_csv
from metalcore.evaluation.occlusion import GRID
from metalcore.evaluation.page import excerpts, markup
from metalcore.evaluation.page.evaluation import render
from metalcore.evaluation.page.views import mel_image
from metalcore.evaluation.robustness import row as robustness_row
from metalcore.report import main as report_command

MB = 1_000_000


class Parsed(HTMLParser):
    """The parts of a page the tests look at: every tag's attributes, track rows, confusion cells, the data."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: list[dict] = []
        self.cells: dict[tuple[str, str], str] = {}
        self.sections: list[str] = []
        self.data: dict = {}
        self._in_tracks = False
        self._cell: tuple[str, str] | None = None
        self._script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "table":
            self._in_tracks = attrs.get("id") == "tracks-table"
        if tag == "tr" and self._in_tracks and "data-true" in attrs:
            self.rows.append(attrs)
        if tag == "td" and "cell" in (attrs.get("class") or ""):
            self._cell = (attrs["data-true"], attrs["data-pred"])
        self._script = tag == "script" and attrs.get("id") == "page-data"

    def handle_data(self, data):
        if self._cell:
            self.cells[self._cell] = data
            self._cell = None
        if self._script:
            self.data = json.loads(data)
            self._script = False


@pytest.fixture(scope="module")
def evaluated(trained_run: Path, demo_root: Path, tmp_path_factory) -> Path:
    """``evaluate --data-root`` on 6 demo tracks, two of them metal filed under hardcore; its output folder."""
    root = tmp_path_factory.mktemp("mixed")
    metal, hardcore = sorted((demo_root / "metal").iterdir()), sorted((demo_root / "hardcore").iterdir())
    for folder, tracks in (("hardcore", hardcore[:2] + metal[:2]), ("metal", metal[2:4])):
        (root / folder).mkdir()
        for track in tracks:
            shutil.copy(track, root / folder / track.name)
    out = tmp_path_factory.mktemp("evaluated")
    checkpoint = read_metrics(trained_run)["best_checkpoint"]
    assert evaluate.main([checkpoint, "--data-root", str(root), "--output-dir", str(out)]) == 0
    return out


def test_the_page_shows_every_track_wrong_first_with_its_timeline_and_audio(evaluated: Path):
    page = Parsed((evaluated / markup.PAGE).read_text())
    csv_rows = read_csv(evaluated / "tracks.csv")
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert [r["data-true"] for r in page.rows] == [r["true"] for r in csv_rows]  # tracks.csv's order
    wrong = [r for r in page.rows if r.get("class") == "wrong"]
    assert len(wrong) == 2 and page.rows[:2] == wrong  # the metal tracks filed as hardcore, first
    assert all(r["data-true"] == "hardcore" and r["data-pred"] == "metal" for r in wrong)
    assert page.cells == {("hardcore", "hardcore"): "2", ("hardcore", "metal"): "2", ("metal", "hardcore"): "0",
                          ("metal", "metal"): "2"}  # fmt: skip
    assert page.sections[:2] == ["scores", "tracks"] and page.sections[-1] == "provenance"
    assert page.data["classes"] == metrics["classes"] and len(page.data["tracks"]) == 6
    for row, csv_row in zip(page.rows, csv_rows):
        view = page.data["tracks"][int(row["data-index"])]
        assert view["name"] == Path(csv_row["path"]).name and view["predicted"] == csv_row["predicted"]
        assert len(view["starts"]) == len(view["probs"]) == int(csv_row["segments"])  # predict --json's windows
        assert np.allclose(np.sum(view["probs"], 1), 1, atol=0.01)
        assert np.allclose(np.mean(view["probs"], 0), [float(csv_row[f"p_{c}"]) for c in metrics["classes"]], atol=0.01)
        audio = (evaluated / view["audio"]).read_bytes()
        assert audio[:4] == b"OggS" and b"OpusHead" in audio[:100]
        assert view["span"] == [0.0, view["duration"]]  # a small evaluation gets whole tracks
        assert view["window"]["shape"][0] == 64 and view["window"]["mel"]
    top = page.data["tracks"][int(page.rows[0]["data-index"])]["window"]
    assert top["wrong"] and np.shape(top["drop"]) == GRID  # its occlusion map
    text = (evaluated / markup.PAGE).read_text()
    track = metrics["track"]
    assert f"{track['acc']:.3f}" in text and f"[{track['acc_ci95'][0]:.3f}, {track['acc_ci95'][1]:.3f}]" in text
    assert metrics["checkpoint"] in text and "The run's config" in text and "seed: 0" in text


def test_the_page_references_nothing_outside_the_file_system(evaluated: Path):
    text = (evaluated / markup.PAGE).read_text()
    assert not re.search(r"https?:", text, re.IGNORECASE)
    for name in ("template.html", "page.css", "page.js"):
        assert "http" not in markup.asset(name)
    for tag, attrs in Parsed(text).tags:
        for key in ("src", "href"):
            if key in attrs:
                link = attrs[key]
                assert link.startswith("data:") or (evaluated / link).exists(), (tag, link)
    assert not re.search(r"url\((?!data:)", text)


def four_minute_tracks(tracks: int, output_dir: Path, **options) -> str:
    """The page of ``tracks`` four-minute tracks at the study's settings (5.5 s windows, 44.1 kHz, hop
    512; 128 Mel bands here), every one wrong and with an occlusion map."""
    rng = np.random.default_rng(0)
    windows, frames = 44, 474
    image, shape = mel_image(rng.normal(size=(128, frames)))
    views = [
        {
            "name": f"Artist {i} - Title {i}.flac", "true": "metal", "predicted": "hardcore", "confidence": 0.9,
            "correct": False, "duration": 240.0, "seg": 5.5, "audio": f"audio/{i:04d}.opus",
            "starts": np.round(np.arange(windows) * 5.5, 3).tolist(),
            "probs": np.round(rng.dirichlet([1, 1], windows), 3).tolist(), "span": [90.0, 150.0],
            "window": {"start": 110.0, "wrong": True, "mel": image, "shape": shape, "target": "hardcore",
                       "probs": [0.123, 0.877], "drop": np.round(rng.normal(size=GRID), 3).tolist(),
                       "bands": list(range(0, 129, 16)),
                       "frames": np.round(np.linspace(0, 1, GRID[1] + 1), 4).tolist()},
        }
        for i in range(tracks)
    ]  # fmt: skip
    rows = [
        {"path": f"/music/metal/Artist {i} - Title {i}.flac", "true": "metal", "predicted": "hardcore",
         "confidence": 0.9, "p_true": 0.1, "correct": False, "duration_s": 240.0, "error": ""}
        for i in range(tracks)
    ]  # fmt: skip
    metrics = {
        "checkpoint": "epoch009.ckpt", "data": "test split", "classes": ["hardcore", "metal"], "segment_seconds": 5.5,
        "counts": {"tracks": tracks, "clips": 44 * tracks, "failed": 0}, "bootstrap": {"resamples": 1000},
        "calibration": {"temperature": 1.2, "track_ece": {"before": 0.1, "after": 0.05},
                        "clip_ece": {"before": 0.1, "after": 0.05}},
        **{level: {"acc": 0.5, "acc_ci95": [0.4, 0.6], "f1": 0.5, "f1_ci95": [0.4, 0.6],
                   "confusion": [[0, 0], [tracks, 0]]} for level in ("track", "clip")},
    }  # fmt: skip
    origin = {"written": "now", "split_counts": {}, "environment": {}, "config": "", "config_file": "", "seed": 0,
              **{k: "" for k in ("checkpoint", "run", "data", "split_file", "device")}, "evaluated_in": {},
              "segment_seconds": 5.5, "hop_seconds": 5.5, "sample_rate": 44100, "channels": 2,
              "temperature": 1.2}  # fmt: skip
    return render(metrics, rows, views, {}, origin, output_dir, occluded=tracks, **options)


def test_a_200_track_page_stays_under_50_mb():
    """The HTML of 200 four-minute tracks and the audio its budget allows."""
    html = four_minute_tracks(200, Path("/nonexistent"))
    seconds = excerpts.seconds_per_track(200)
    audio = 200 * seconds * excerpts.BIT_RATE / 8 * excerpts.CONTAINER_OVERHEAD
    assert seconds >= 55  # about a minute of each track
    assert len(html.encode()) + audio < 50 * MB, (len(html.encode()) / MB, audio / MB)


def test_perturbations_and_embeddings_get_their_sections(tmp_path: Path):
    clean = {
        level: {"acc": 0.9, "acc_ci95": [0.8, 1.0], "f1": 0.9, "f1_ci95": [0.8, 1.0]} for level in ("track", "clip")
    }
    noisy = {
        level: {"acc": 0.7, "acc_ci95": [0.5, 0.85], "f1": 0.6, "f1_ci95": [0.4, 0.8]} for level in ("track", "clip")
    }
    rows = [robustness_row("clean", clean, clean, 3), robustness_row("noise_20db", noisy, clean, 3)]
    shutil.copy(REPO / "docs" / "evaluation-page.png", tmp_path / "robustness.png")
    text = four_minute_tracks(3, tmp_path, robustness=rows, embeddings=True)
    page = Parsed(text)
    assert page.sections == ["scores", "tracks", "robustness", "embeddings", "provenance"]
    assert "<td>noise_20db</td>" in text and "0.7000 [0.5000, 0.8500]" in text and "+0.200" in text
    assert ("a", {"href": "embeddings/"}) in page.tags and "tensorboard --logdir" in text
    assert any(tag == "img" and attrs["src"].startswith("data:image/png;base64,") for tag, attrs in page.tags)
    assert Parsed(four_minute_tracks(3, tmp_path)).sections == ["scores", "tracks", "provenance"]


def test_excerpts_keep_to_the_rate_the_budget_assumes(demo_root: Path, tmp_path: Path):
    tracks = sorted((demo_root / "metal").iterdir())[:4]
    audio = np.concatenate([decode(t, 22050, 2) for t in tracks], axis=1)  # 32 s of demo music
    pcm = (audio.T * 32767).astype(np.int16)
    size = excerpts.write_excerpt(tmp_path / "x.opus", pcm, 22050).stat().st_size
    seconds = len(pcm) / 22050
    assert size <= seconds * excerpts.BIT_RATE / 8 * excerpts.CONTAINER_OVERHEAD
    assert size >= seconds * excerpts.BIT_RATE / 8 * 0.7  # the rate was applied, not a default
    part = excerpts.span(240.0, 230.0, 60.0)
    assert (part.start, part.end) == (180.0, 240.0)  # shifted to stay inside the track
    assert excerpts.span(30.0, 10.0, 60.0) == excerpts.Span(0.0, 30.0)


def test_a_negative_occlusion_count_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        evaluate.main(["model.ckpt", "--occlusion", "-1"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --occlusion -1: must be 0 or more"


def test_the_sweep_page_links_each_configuration_to_its_evaluation_pages(tmp_path: Path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    write_multirun(sweep, ["model=crnn,cnn", "seed=1,2"])
    for num, (model, seed, acc) in enumerate([("crnn", 1, 0.9), ("crnn", 2, 0.8), ("cnn", 1, 0.6), ("cnn", 2, None)]):
        make_job(sweep, num, [f"model={model}", f"seed={seed}"], acc)
    evaluation = sweep / "1" / "evaluation" / "epoch003-test"
    evaluation.mkdir(parents=True)
    (evaluation / markup.PAGE).write_text("<html></html>")
    assert report_command([str(sweep)]) == 0
    text = (sweep / markup.PAGE).read_text()
    page = Parsed(text)
    links = [attrs["href"] for tag, attrs in page.tags if tag == "a"]
    assert links == ["1/evaluation/epoch003-test/report.html"] and (sweep / links[0]).is_file()
    assert text.index("crnn") < text.index("1/evaluation") < text.index("<td>cnn")  # in the crnn row
    assert "evaluation pages" in text and "Jobs without results" in text and "data:image/png;base64," in text
    assert not re.search(r"https?:", text)


@pytest.mark.slow
def test_the_page_works_in_a_headless_browser(evaluated: Path, tmp_path: Path):
    """Chromium opens the page from disk: no console error, nothing fetched from outside the file system;
    a confusion cell filters the table; a click on the timeline plays the track from that second."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")
    with Browser(chromium) as browser:
        browser.open(evaluated / markup.PAGE)
        visible = "Array.from(document.querySelectorAll('#tracks-table tbody tr')).filter(r => !r.hidden)"
        assert browser.run(f"{visible}.length") == 6
        browser.click('td.cell[data-true="hardcore"][data-pred="metal"]')
        assert browser.run(f"{visible}.map(r => [r.dataset.true, r.dataset.pred])") == [["hardcore", "metal"]] * 2
        assert browser.run("document.getElementById('filter-text').textContent").endswith(": 2 of 6 tracks")
        browser.click('#tracks-table tbody tr[data-index="1"] td:nth-child(2)')
        assert browser.run("document.getElementById('detail-title').textContent") == browser.run(
            "document.querySelector('#tracks-table tbody tr[data-index=\"1\"] td:nth-child(2)').textContent"
        )
        duration = browser.run(  # a whole 8 s track, once its header is read
            "new Promise(done => { const a = document.getElementById('player'); if (a.readyState > 0) done(a.duration);"
            " else a.addEventListener('loadedmetadata', () => done(a.duration), {once: true}); })"
        )
        assert duration == pytest.approx(8.0, abs=0.1)
        browser.click("#timeline", 0.75)  # about 6 s into the track (the plot's margins aside)
        clicked = browser.run("document.getElementById('player').currentTime")
        assert 4.5 < clicked < 7.5
        time.sleep(1.0)
        later = browser.run("document.getElementById('player').currentTime")
        assert later > clicked and not browser.run("document.getElementById('player').paused")
        shot = browser.screenshot(tmp_path / "page.png")
        assert shot.read_bytes()[:4] == b"\x89PNG"
        assert browser.errors() == []
        outside = [url for url in browser.requests() if not url.startswith(("file://", "data:"))]
        assert outside == [] and any(url.endswith(".opus") for url in browser.requests())
