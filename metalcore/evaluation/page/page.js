// The evaluation page's behaviour: filter and sort the track table, show one track's timeline,
// audio, Mel-spectrogram and occlusion map. Everything it needs is in the page (#page-data).
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("page-data").textContent);
  const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#e16f24", "#6e7781"];
  const table = document.getElementById("tracks-table");
  const rows = Array.from(table.tBodies[0].rows);
  const cells = Array.from(document.querySelectorAll("table.confusion td.cell"));
  const audio = document.getElementById("player");
  const timeline = document.getElementById("timeline");
  let filter = null;
  let current = null;

  // -- the confusion matrix filters the table --------------------------------------------------
  function setFilter(cell) {
    filter = cell;
    let shown = 0;
    for (const row of rows) {
      const keep = !cell || (row.dataset.true === cell.dataset.true && row.dataset.pred === cell.dataset.pred);
      row.hidden = !keep;
      shown += keep ? 1 : 0;
    }
    cells.forEach((c) => c.classList.toggle("active", c === cell));
    document.getElementById("filter-text").textContent = cell
      ? "class " + cell.dataset.true + ", predicted " + cell.dataset.pred + ": " + shown + " of " + rows.length + " tracks"
      : "all " + rows.length + " tracks, wrong ones first";
    document.getElementById("filter-clear").hidden = !cell;
  }
  cells.forEach((cell) => cell.addEventListener("click", () => setFilter(filter === cell ? null : cell)));
  document.getElementById("filter-clear").addEventListener("click", () => setFilter(null));

  // -- sortable columns ---------------------------------------------------------------------------
  Array.from(table.tHead.rows[0].cells).forEach((th, column) => {
    th.addEventListener("click", () => {
      const ascending = !th.classList.contains("sorted-asc");
      Array.from(th.parentNode.cells).forEach((h) => h.classList.remove("sorted-asc", "sorted-desc"));
      th.classList.add(ascending ? "sorted-asc" : "sorted-desc");
      const value = (row) => {
        const cell = row.cells[column];
        const key = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent;
        const number = parseFloat(key);
        return isNaN(number) ? key.toLowerCase() : number;
      };
      const sorted = rows.slice().sort((a, b) => {
        const x = value(a), y = value(b);
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      sorted.forEach((row) => table.tBodies[0].appendChild(row));
    });
  });

  // -- one track: timeline with playhead, audio, spectrogram, occlusion -------------------------
  rows.forEach((row) =>
    row.addEventListener("click", () => {
      select(Number(row.dataset.index));
      document.getElementById("detail").scrollIntoView({ behavior: "smooth", block: "start" });
    })
  );

  const MARGIN = { left: 44, right: 24, top: 10, bottom: 24 };
  function timeToX(t) {
    const width = timeline.width - MARGIN.left - MARGIN.right;
    return MARGIN.left + (t / Math.max(current.duration, 1e-6)) * width;
  }
  function xToTime(x) {
    const width = timeline.width - MARGIN.left - MARGIN.right;
    return ((x - MARGIN.left) / width) * current.duration;
  }
  function playhead() {
    return current.span[0] + (audio.currentTime || 0);
  }

  function drawTimeline() {
    const g = timeline.getContext("2d");
    const w = timeline.width, h = timeline.height;
    const top = MARGIN.top, bottom = h - MARGIN.bottom;
    const y = (p) => bottom - p * (bottom - top);
    g.clearRect(0, 0, w, h);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#f6f8fa";
    g.fillRect(timeToX(0), top, timeToX(current.duration) - timeToX(0), bottom - top);
    g.fillStyle = "#ffffff";  // the part of the track that can be played
    g.fillRect(timeToX(current.span[0]), top, timeToX(current.span[1]) - timeToX(current.span[0]), bottom - top);
    const win = current.window;
    g.fillStyle = win.wrong ? "rgba(207,34,46,0.10)" : "rgba(9,105,218,0.08)";
    g.fillRect(timeToX(win.start), top, timeToX(win.start + current.seg) - timeToX(win.start), bottom - top);
    g.strokeStyle = "#d8dee4";
    g.fillStyle = "#656d76";
    for (const p of [0, 0.5, 1]) {
      g.beginPath(); g.moveTo(MARGIN.left, y(p)); g.lineTo(w - MARGIN.right, y(p)); g.stroke();
      g.fillText(p.toFixed(1), 8, y(p) + 4);
    }
    const step = niceStep(current.duration);
    for (let t = 0; t <= current.duration + 1e-6; t += step) {
      g.fillText(formatTime(t), timeToX(t) - 10, h - 6);
    }
    data.classes.forEach((name, k) => {
      g.strokeStyle = COLORS[k % COLORS.length];
      g.lineWidth = name === current.true ? 2.5 : 1.5;
      g.beginPath();
      current.starts.forEach((s, i) => {
        const x = timeToX(s + current.seg / 2), v = y(current.probs[i][k]);
        if (i === 0) g.moveTo(x, v); else g.lineTo(x, v);
      });
      if (current.starts.length === 1) g.arc(timeToX(current.starts[0] + current.seg / 2), y(current.probs[0][k]), 3, 0, 7);
      g.stroke();
    });
    g.lineWidth = 2;
    g.strokeStyle = "#111";
    const x = timeToX(playhead());
    g.beginPath(); g.moveTo(x, top - 4); g.lineTo(x, bottom + 4); g.stroke();
  }
  function niceStep(duration) {
    for (const s of [1, 2, 5, 10, 15, 30, 60, 120, 300]) if (duration / s <= 10) return s;
    return 600;
  }
  function formatTime(t) {
    const m = Math.floor(t / 60), s = Math.round(t - 60 * m);
    return m + ":" + String(s).padStart(2, "0");
  }

  function playFrom(seconds) {
    const t = Math.min(Math.max(seconds, current.span[0]), current.span[1] - 0.05);
    audio.currentTime = Math.max(t - current.span[0], 0);
    audio.play().catch(() => {});
    drawTimeline();
  }
  timeline.addEventListener("click", (event) => {
    const box = timeline.getBoundingClientRect();
    playFrom(xToTime((event.clientX - box.left) * (timeline.width / box.width)));
  });
  audio.addEventListener("timeupdate", () => current && drawTimeline());
  audio.addEventListener("seeked", () => current && drawTimeline());
  function animate() {
    if (current && !audio.paused) drawTimeline();
    requestAnimationFrame(animate);
  }
  requestAnimationFrame(animate);

  // magma-like colour map for the spectrogram, grey for the occlusion map's background
  const ANCHORS = [[0, 0, 4], [80, 18, 123], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
  function magma(v) {
    const x = (v / 255) * (ANCHORS.length - 1), i = Math.min(Math.floor(x), ANCHORS.length - 2), f = x - i;
    return ANCHORS[i].map((a, c) => a + (ANCHORS[i + 1][c] - a) * f);
  }
  function melPixels(canvas, win, colour) {
    const bands = win.shape[0], frames = win.shape[1];
    canvas.width = frames; canvas.height = bands;
    const bytes = atob(win.mel);
    const g = canvas.getContext("2d");
    const image = g.createImageData(frames, bands);
    for (let b = 0; b < bands; b++) {
      for (let f = 0; f < frames; f++) {
        const v = bytes.charCodeAt(b * frames + f);
        const rgb = colour ? magma(v) : [v * 0.6 + 90, v * 0.6 + 90, v * 0.6 + 90];
        const o = ((bands - 1 - b) * frames + f) * 4;  // low bands at the bottom
        image.data[o] = rgb[0]; image.data[o + 1] = rgb[1]; image.data[o + 2] = rgb[2]; image.data[o + 3] = 255;
      }
    }
    g.putImageData(image, 0, 0);
    return g;
  }
  function drawSpectra() {
    const win = current.window;
    const mel = document.getElementById("mel"), occ = document.getElementById("occlusion");
    melPixels(mel, win, true);
    const end = win.start + current.seg;
    const said = win.wrong ? "Most confidently wrong window" : "Closest call (no window is wrong)";
    document.getElementById("mel-caption").textContent =
      said + ": " + formatTime(win.start) + "-" + formatTime(end) + ", " +
      (win.target ? "predicted " + win.target + " (" + Math.max.apply(null, win.probs).toFixed(2) + ")" : "") +
      ". Standardised log-Mel, low bands at the bottom; click to play this window.";
    const caption = document.getElementById("occlusion-caption");
    if (!win.drop) {
      occ.hidden = true;
      caption.textContent = data.occlusion_note;
      return;
    }
    occ.hidden = false;
    const g = melPixels(occ, win, false);
    let peak = 1e-6;
    win.drop.forEach((r) => r.forEach((v) => (peak = Math.max(peak, Math.abs(v)))));
    win.drop.forEach((r, b) =>
      r.forEach((v, f) => {
        const x0 = win.frames[f] * occ.width, x1 = win.frames[f + 1] * occ.width;
        const y0 = occ.height - win.bands[b + 1], y1 = occ.height - win.bands[b];
        g.fillStyle = v >= 0 ? "rgba(207,34,46," + (0.75 * v) / peak + ")" : "rgba(9,105,218," + (-0.75 * v) / peak + ")";
        g.fillRect(x0, y0, x1 - x0, y1 - y0);
      })
    );
    caption.textContent =
      "Occlusion: drop in p(" + win.target + ") when each patch is set to its bands' average; red patches carried the " +
      "decision (largest change " + peak.toPrecision(2) + "), blue ones argued against it.";
  }
  document.getElementById("mel").addEventListener("click", () => playFrom(current.window.start));

  function select(index) {
    const track = data.tracks[index];
    if (!track) return;
    current = track;
    rows.forEach((row) => row.classList.toggle("selected", Number(row.dataset.index) === index));
    document.getElementById("detail-title").textContent = track.name;
    document.getElementById("detail-sub").textContent =
      "class " + track.true + ", predicted " + track.predicted + " (" + track.confidence.toFixed(3) + ")" +
      (track.correct ? "" : " - wrong") + "; audio " + formatTime(track.span[0]) + "-" + formatTime(track.span[1]) +
      " of " + formatTime(track.duration) + " (click the timeline to play from there)";
    audio.src = track.audio;
    document.getElementById("legend").innerHTML = "";
    data.classes.forEach((name, k) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = COLORS[k % COLORS.length];
      item.appendChild(swatch);
      item.appendChild(document.createTextNode("p(" + name + ")" + (name === track.true ? " - its class" : "")));
      document.getElementById("legend").appendChild(item);
    });
    drawTimeline();
    drawSpectra();
  }

  setFilter(null);
  const first = rows.find((row) => row.dataset.index !== undefined && data.tracks[Number(row.dataset.index)]);
  if (first) select(Number(first.dataset.index));
})();
