"""``report.html``: one evaluation on one page, to look at and listen to what the classifier did, track by track.

A score can be right for the wrong reasons (Sturm 2013-2014), and only listening tells: the page
puts the headline scores with their intervals beside a confusion matrix that filters the track
table, and each track's probabilities over time beside its audio, the window that most wanted
another class, and the occlusion map of what drove that window's decision. It is one HTML file
with its style, script, figures and data inline, and a folder of small Opus files beside it
(``audio/``): it opens from the file system, with no server and no network.
"""

from __future__ import annotations

import shutil
from html import escape
from pathlib import Path

from metalcore.core.files import write_text
from metalcore.evaluation.occlusion import GRID
from metalcore.evaluation.page.excerpts import AUDIO_BUDGET, seconds_per_track
from metalcore.evaluation.page.markup import PAGE, asset, facts, image, page, section, table
from metalcore.evaluation.page.provenance import artists_and_albums, provenance
from metalcore.evaluation.page.views import track_view
from metalcore.evaluation.score import Scored
from metalcore.evaluation.tracks import run_folder
from metalcore.evaluation.write import track_rows
from metalcore.uncertainty.bootstrap import formatted

AUDIO = "audio"
# An occlusion map costs one network pass per patch (48): the page makes as many as fit in this share
# of the passes evaluate made, at least one, for the tracks at the top of the table (wrong ones first).
OCCLUSION_SHARE = 0.1
SCORES = (("acc", "accuracy"), ("f1", "F1 (macro)"), ("auroc", "ROC-AUC"), ("pr_auc", "PR-AUC"))


def write_page(
    scored: Scored,
    metrics: dict,
    output_dir: Path,
    data_root: Path | None = None,
    robustness: list[dict] | None = None,
    embeddings: bool = False,
    audio_budget: int = AUDIO_BUDGET,
    occluded: int | None = None,
) -> Path:
    """Write ``report.html`` and its ``audio/`` folder into ``output_dir``; return the page's path.

    ``scored`` is what evaluate's scoring found, ``metrics`` metrics.json's content (calibration
    included), ``data_root`` the folder scored instead of the run's test split, ``robustness`` the
    ``--perturb`` rows. Each track gets an equal share of ``audio_budget`` bytes of audio; the first
    ``occluded`` tracks of the table get an occlusion map (default: ``maps_within_budget``).
    """
    if occluded is None:
        occluded = maps_within_budget(metrics["counts"]["clips"])
    classifier, run = scored.classifier, run_folder(scored.classifier.checkpoint)
    classes = classifier.classes
    rows = track_rows(scored.outcomes, [label for _, label in scored.tracks], classes)  # tracks.csv's order
    found = {str(o.path): o for o in scored.outcomes}
    predicted = [r for r in rows if r["error"] == ""]
    seconds = seconds_per_track(len(predicted), audio_budget)
    audio_dir = output_dir / AUDIO
    shutil.rmtree(audio_dir, ignore_errors=True)  # excerpts of an earlier page over other tracks
    audio_dir.mkdir(parents=True)
    names = artists_and_albums(run, data_root)
    views = []
    for index, row in enumerate(predicted):
        prediction = found[row["path"]].prediction
        audio_file = audio_dir / f"{index:04d}.opus"
        view = track_view(classifier, prediction, classes.index(row["true"]), audio_file, seconds, index < occluded)
        views.append(
            {
                "name": prediction.path.name,
                "true": row["true"],
                "predicted": row["predicted"],
                "confidence": row["confidence"],
                "correct": row["correct"],
                "duration": round(prediction.duration, 3),
                "seg": prediction.segment_seconds,
                "audio": f"{AUDIO}/{audio_file.name}",
                **view,
            }
        )
    origin = provenance(classifier, run, metrics["data"], metrics["hop_seconds"])
    path = output_dir / PAGE
    write_text(path, render(metrics, rows, views, names, origin, output_dir, robustness, embeddings, occluded))
    return path


def render(
    metrics: dict,
    rows: list[dict],
    views: list[dict],
    names: dict[str, tuple[str, str]],
    origin: dict,
    output_dir: Path,
    robustness: list[dict] | None = None,
    embeddings: bool = False,
    occluded: int = 0,
) -> str:
    """The page's HTML: ``rows`` as ``track_rows`` gives them, ``views`` for the predicted ones, in order."""
    data = {
        "classes": metrics["classes"],
        "tracks": views,
        "occlusion_note": f"No occlusion map for this track: each costs {GRID[0] * GRID[1]} network passes, so "
        f"this page has {min(occluded, len(views))}, for the tracks at the top of the table "
        "(python -m metalcore.evaluate --occlusion N makes more).",
    }
    body = "".join(
        [
            header(metrics, origin),
            scores(metrics, output_dir),
            tracks_section(rows, names, len(views), confusion_matrix(metrics)),
            robustness_section(robustness, output_dir) if robustness else "",
            embeddings_section(output_dir) if embeddings else "",
            provenance_section(origin),
        ]
    )
    return page(f"{Path(metrics['checkpoint']).name} on {metrics['data']}", body, data, asset("page.js"))


def maps_within_budget(windows: int) -> int:
    """Occlusion maps whose network passes stay within ``OCCLUSION_SHARE`` of ``windows`` scored (at least one)."""
    return max(1, int(OCCLUSION_SHARE * windows / (GRID[0] * GRID[1])))


def header(metrics: dict, origin: dict) -> str:
    counts = metrics["counts"]
    failed = f", {counts['failed']} could not be decoded" if counts["failed"] else ""
    return (
        f"<header><h1>{escape(Path(metrics['checkpoint']).name)}: evaluation</h1>"
        f"<p>{escape(metrics['data'])}: {counts['tracks']} tracks, {counts['clips']} windows of "
        f"{metrics['segment_seconds']:g} s{failed}. Written {escape(origin['written'])}.</p></header>"
    )


def scores(metrics: dict, output_dir: Path) -> str:
    """The headline scores per track and per clip with their intervals; class counts; calibration."""
    cards = []
    for level in ("track", "clip"):
        cards.append(f'<div class="level">per {level}</div>')
        for key, name in SCORES:
            value, interval = metrics[level].get(key), metrics[level].get(key + "_ci95")
            shown = "-" if value is None else f"{value:.3f}"
            ci = f"95 % [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "no interval"
            cards.append(
                f'<div class="card"><div class="name">{escape(name)}</div>'
                f'<div class="value">{shown}</div><div class="ci">{ci}</div></div>'
            )
    c = metrics["calibration"]
    calibration = table(
        ["", "ECE before", f"after (T = {c['temperature']:.3g})"],
        [
            [f"per {level}", f"{c[level + '_ece']['before']:.4f}", f"{c[level + '_ece']['after']:.4f}"]
            for level in ("track", "clip")
        ],
        [False, True, True],
    )
    confusion = metrics["track"]["confusion"]
    clip_confusion = metrics["clip"]["confusion"]
    counts = table(
        ["class", "tracks", "windows", "predicted (tracks)"],
        [
            [name, sum(confusion[i]), sum(clip_confusion[i]), sum(r[i] for r in confusion)]
            for i, name in enumerate(metrics["classes"])
        ],
        [False, True, True, True],
    )
    reliability = image(
        output_dir / "reliability.png", "reliability diagram per track, before and after the temperature"
    )
    b = metrics["bootstrap"]
    note = (
        f'<p class="muted">95 % intervals from {b["resamples"]} bootstrap resamples of the tracks '
        f"(a track's windows are resampled together).</p>"
    )
    return section(
        "scores",
        "Scores",
        f'<div class="cards">{"".join(cards)}</div>{note}<div class="row"><div><h3>Classes</h3>{counts}</div>'
        f"<div><h3>Calibration</h3>{calibration}</div><div><h3>Reliability per track</h3>{reliability}</div></div>",
    )


def confusion_matrix(metrics: dict) -> str:
    """The per-track confusion matrix; a cell filters the track table below it."""
    classes, confusion = metrics["classes"], metrics["track"]["confusion"]
    total = max(sum(map(sum, confusion)), 1)
    head = "".join(f"<th>{escape(c)}</th>" for c in classes)
    body = ""
    for i, true in enumerate(classes):
        cells = ""
        for j, pred in enumerate(classes):
            n = confusion[i][j]
            share = n / max(sum(confusion[i]), 1)
            colour = f"rgba(26,127,55,{0.1 + 0.5 * share:.2f})" if i == j else f"rgba(207,34,46,{0.6 * share:.2f})"
            cells += (
                f'<td class="cell" data-true="{escape(true)}" data-pred="{escape(pred)}" '
                f'style="background:{colour}" title="{n} of {total} tracks">{n}</td>'
            )
        body += f"<tr><th>{escape(true)}</th>{cells}</tr>"
    return (
        f'<table class="confusion"><thead><tr><th class="corner">class \\ predicted</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def tracks_section(rows: list[dict], names: dict[str, tuple[str, str]], predicted: int, matrix: str) -> str:
    """The confusion matrix that filters the table, the selected track's timeline, audio and spectra,
    and the sortable table of every track."""
    detail = (
        '<div id="detail"><div class="title" id="detail-title"></div><div class="muted" id="detail-sub"></div>'
        '<audio id="player" controls preload="auto"></audio>'
        '<canvas id="timeline" width="1100" height="170"></canvas><div class="legend" id="legend"></div>'
        '<div class="spectra"><figure><canvas id="mel"></canvas><figcaption id="mel-caption"></figcaption></figure>'
        '<figure><canvas id="occlusion"></canvas><figcaption id="occlusion-caption"></figcaption></figure></div></div>'
    )
    header = ["#", "track", "artist", "album", "class", "predicted", "confidence", "p(class)", "right", "length"]
    head = "".join(
        f"<th{' class=num' if h in ('#', 'confidence', 'p(class)', 'length') else ''}>{h}</th>" for h in header
    )
    body = []
    index = 0
    for rank, row in enumerate(rows, 1):
        artist, album = names.get(row["path"], ("", ""))
        name = escape(Path(row["path"]).name)
        if row["error"]:
            body.append(
                f'<tr data-true="{escape(row["true"])}" data-pred=""><td class=num>{rank}</td><td>{name}</td>'
                f"<td>{escape(artist)}</td><td>{escape(album)}</td><td>{escape(row['true'])}</td>"
                f'<td colspan="5" class="muted">not scored: {escape(row["error"])}</td></tr>'
            )
            continue
        right = row["correct"] is True
        mark = '<span class="mark-right">✓</span>' if right else '<span class="mark-wrong">✗</span>'
        body.append(
            f'<tr data-index="{index}" data-true="{escape(row["true"])}" data-pred="{escape(row["predicted"])}"'
            f'{"" if right else " class=wrong"}><td class=num>{rank}</td><td title="{escape(row["path"])}">{name}</td>'
            f"<td>{escape(artist)}</td><td>{escape(album)}</td><td>{escape(row['true'])}</td>"
            f"<td>{escape(row['predicted'])}</td><td class=num>{row['confidence']:.3f}</td>"
            f'<td class=num>{row["p_true"]:.3f}</td><td data-sort="{int(right)}">{mark}</td>'
            f'<td class=num data-sort="{row["duration_s"]}">{minutes(row["duration_s"])}</td></tr>'
        )
        index += 1
    filters = (
        '<div class="filter"><span class="chip" id="filter-text"></span> '
        '<button id="filter-clear" hidden>show all</button> <span class="muted">Click a column to sort it, '
        "a row to open its track.</span></div>"
    )
    top = (
        f'<div class="row"><div class="confusion-box"><h3>Confusion per track</h3>{matrix}</div>'
        '<div><h3>How to read it</h3><p class="muted">Click a cell of the matrix to list its tracks; a row of '
        "the table opens its track above it: the probability of each class over the whole track (the "
        "windows <code>predict --json</code> gives), its audio (click the timeline to play from there), and the "
        "window that most wanted another class, with what drove that window's decision.</p></div></div>"
    )
    table_html = (
        f'<div class="table-wrap"><table id="tracks-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    return section("tracks", f"Tracks ({predicted} scored)", top + detail + filters + table_html)


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{round(seconds % 60):02d}"


def robustness_section(rows: list[dict], output_dir: Path) -> str:
    header = ["perturbation", "tracks", "track accuracy [95 %]", "drop", "track F1", "clip accuracy"]
    body = [
        [
            r["perturbation"],
            r["tracks"],
            formatted(r["track_acc"], [r["track_acc_low"], r["track_acc_high"]]),
            f"{r['track_acc_drop']:+.3f}",
            f"{r['track_f1']:.3f}",
            f"{r['clip_acc']:.3f}",
        ]
        for r in rows
    ]
    return section(
        "robustness",
        "Robustness (--perturb)",
        f'<div class="row"><div>{table(header, body, [False, True, False, True, True, True])}</div>'
        f"<div>{image(output_dir / 'robustness.png', 'track accuracy under each perturbation')}</div></div>",
    )


def embeddings_section(output_dir: Path) -> str:
    folder = output_dir / "embeddings"
    return section(
        "embeddings",
        "Embeddings (--embeddings)",
        f"<p>Each track's pooled penultimate features, for TensorBoard's projector: <a href=\"embeddings/\">"
        f"embeddings/</a>. Open them with <code>tensorboard --logdir {escape(str(folder))}</code> and the "
        "PROJECTOR tab; colour the points by class, prediction or confidence.</p>",
    )


def provenance_section(origin: dict) -> str:
    """The checkpoint, data, split, settings and environments the numbers come from; the run's config."""
    split = origin["split_counts"]
    sizes = ", ".join(f"{k} {v['tracks']} tracks" for k, v in split.items() if isinstance(v, dict))
    evaluation = facts(
        [
            ("checkpoint", origin["checkpoint"]),
            ("run", origin["run"]),
            ("data", origin["data"]),
            ("split file", origin["split_file"]),
            ("run's split", sizes),
            ("seed", origin["seed"]),
            (
                "windows",
                f"{origin['segment_seconds']:g} s every {origin['hop_seconds']:g} s, "
                f"{origin['sample_rate']} Hz, {origin['channels']} channel(s)",
            ),
            ("temperature", f"{origin['temperature']:.4g}"),
            ("device", origin["device"]),
            ("written", origin["written"]),
        ]
    )
    recorded = origin["environment"]
    trained = facts(list(recorded.items())) if recorded else "<p class=muted>not recorded</p>"
    evaluated = facts(list(origin["evaluated_in"].items()))
    config = (
        f"<details><summary>The run's config ({escape(origin['config_file'])})</summary>"
        f"<pre>{escape(origin['config'])}</pre></details>"
        if origin["config"]
        else '<p class="muted">The run left no config.yaml.</p>'
    )
    return section(
        "provenance",
        "Where these numbers come from",
        f'<div class="row"><div><h3>This evaluation</h3>{evaluation}</div>'
        f"<div><h3>Evaluated with</h3>{evaluated}<h3>The run's training environment</h3>{trained}</div></div>" + config,
    )
