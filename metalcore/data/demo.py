"""Synthetic Metal and Hardcore tracks, so the project trains and tests without a music collection.

Real recordings are copyrighted and large, yet the quick start, the notebooks and the test suite
need a labelled set that anyone can make in seconds. The tracks here are crude but built the way
the genres differ: metal is fast tremolo-picked riffs over blast beats, hardcore is mid-tempo
palm-muted grooves with half-time breakdowns. Both use distorted guitars, bass, drums and similar
levels, so a model has to hear rhythm and texture rather than one loudness or brightness number.
Every track draws its tempo, key, gain, mix, stereo width and noise from a seeded generator, so
the same seed gives byte-identical audio.

With ``artists`` set, the set also carries an artist effect to measure and train away: every band
has a production fingerprint kept across its tracks (EQ tilt, reverb, compression, noise floor,
stereo width, tuning). The few prolific bands of each genre, which a split by artist places in
training (its largest groups go first), sound the way their genre is expected to; the long tail
of small bands has production unrelated to genre. ``crossover`` blurs the genres themselves, so
that a model can lean on production instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from metalcore.audio.encode import write_audio
from metalcore.core.errors import UserError

GENRES = ("metal", "hardcore")

_BAR = 16  # steps per bar: 4/4 on a 16th-note grid
_SCALES = ((0, 2, 3, 5, 7, 8, 10), (0, 1, 3, 5, 7, 8, 10), (0, 2, 3, 5, 7, 8, 11))  # minor, phrygian, harmonic minor
# guitar articulation -> (amplitude, decay seconds, brightness: saw/square share against a triangle)
_ARTICULATIONS = {
    "rest": (0.0, 0.05, 1.0),
    "tremolo": (1.0, 0.12, 1.0),
    "chug": (1.0, 0.06, 0.35),
    "open": (1.0, 0.9, 1.0),
}
# genre -> (first words, second words) of invented band names and of song titles; distinct per genre
_BANDS = {
    "metal": (
        ("Frozen", "Ashen", "Nocturnal", "Obsidian", "Grave", "Iron", "Cryptic", "Winter", "Hollow", "Funeral"),
        ("Throne", "Veil", "Pyre", "Dominion", "Spire", "Wraith", "Oath", "Serpent", "Eclipse"),
    ),
    "hardcore": (
        ("Concrete", "Broken", "Second", "Dead", "Final", "True", "Hard", "Cold", "Brick", "Street"),
        ("Youth", "Line", "Pressure", "Weight", "Standard", "Ground", "Count", "Alliance", "Front"),
    ),
}
_TITLES = {
    "metal": (
        (
            "Beneath the",
            "Towards the",
            "Crowned in",
            "Ode to the",
            "Rites of the",
            "Across the",
            "Born of the",
            "Hymn for the",
        ),
        (
            "Frozen Moon",
            "Ninth Gate",
            "Burning Sky",
            "Silent Abyss",
            "Black Forest",
            "Last Winter",
            "Pale Tower",
            "Endless Night",
        ),
    ),
    "hardcore": (
        ("No", "Stand", "Never", "Hold", "All", "Break", "Built on", "Face"),
        ("Regrets", "Your Ground", "Again", "the Line", "or Nothing", "the Cycle", "Trust", "the Truth"),
    ),
}

# A genre's expected production, as signs of the fingerprint's axes (see Production.from_axes): metal
# bright, roomy, lightly compressed, clean, wide and tuned low; hardcore the opposite.
_METAL_SOUND = np.array([1.0, 1.0, -1.0, -1.0, 1.0, -1.0])
_STEREOTYPE = {"metal": _METAL_SOUND, "hardcore": -_METAL_SOUND}

_Events = list[tuple[int, float, str]]  # (step, semitones or velocity, articulation or drum)


def _riff(rng: np.random.Generator, scale: tuple[int, ...], length: int) -> np.ndarray:
    """Semitone offsets of a random walk over ``scale`` spanning two octaves."""
    degrees = np.clip(np.cumsum(rng.choice((-2, -1, 1, 2, 3), size=length)), 0, 2 * len(scale) - 1)
    degrees[0] = 0
    return np.asarray(scale)[degrees % len(scale)] + 12 * (degrees // len(scale))


def _metal_section(rng: np.random.Generator, bars: int, scale: tuple[int, ...]) -> tuple[_Events, _Events]:
    """Tremolo-picked riff over a blast beat, or now and then over a double-bass beat with snare on 2 and 4."""
    steps = bars * _BAR
    blast = rng.random() < 0.7
    hold = int(rng.choice((1, 2, 4) if blast else (4, 8)))  # steps before the riff moves to the next note
    riff = _riff(rng, scale, int(rng.choice((1, 2))) * _BAR // hold)
    guitar = [(s, float(riff[(s // hold) % len(riff)]), "tremolo") for s in range(steps)]
    drums = [(0, 1.0, "crash")] + [(s, 1.0, "ride") for s in range(0, steps, 2)]
    if blast:
        drums += [(s, 1.0, "kick" if s % 2 == 0 else "snare") for s in range(steps)]
    else:
        drums += [(s, 0.8, "kick") for s in range(steps)] + [(s, 1.0, "snare") for s in range(4, steps, 8)]
    return guitar, drums


def _hardcore_section(rng: np.random.Generator, bars: int, breakdown: bool) -> tuple[_Events, _Events]:
    """A one-bar palm-muted pattern with rests, repeated: a groove, or a sparse half-time breakdown."""
    hits = rng.random(_BAR) < (0.25 if breakdown else 0.5)
    hits[0] = True
    notes = rng.choice((0, 0, 0, 1) if breakdown else (0, 0, 0, 0, 1, 3, 6, 7), size=_BAR)
    pattern = [(s, float(notes[s]), "chug" if hits[s] else "rest") for s in range(_BAR)]
    if rng.random() < 0.35:  # an open chord rings over the first half bar
        hits[1:8] = False
        pattern = [(0, float(rng.choice((0, 3, 5))), "open"), *pattern[8:]]
    guitar = [(bar * _BAR + s, note, art) for bar in range(bars) for s, note, art in pattern]
    accents = [bar * _BAR + s for bar in range(bars) for s in np.flatnonzero(hits)]
    if breakdown:  # kick doubles every chug, snare only on beat 3, a crash on each downbeat
        drums = [(s, 1.0, "kick") for s in accents] + [(s, 1.0, "snare") for s in range(8, bars * _BAR, _BAR)]
        drums += [(s, 1.0, "crash") for s in range(0, bars * _BAR, _BAR)]
    else:  # kick on the beat and on even-step chugs, snare on 2 and 4, closed hi-hat in 8ths
        kicks = sorted({s for s in accents if s % 2 == 0} | set(range(0, bars * _BAR, 8)))
        drums = [(s, 1.0, "kick") for s in kicks] + [(s, 1.0, "snare") for s in range(4, bars * _BAR, 8)]
        drums += [(s, 0.7, "hat") for s in range(0, bars * _BAR, 2)] + [(0, 1.0, "crash")]
    return guitar, drums


def _arrange(genre: str, rng: np.random.Generator, steps: int, crossover: float = 0.0) -> tuple[_Events, _Events]:
    """Sections of 2-4 bars until ``steps`` are covered; hardcore alternates groove and breakdown.

    With ``crossover`` > 0 each section is played in the other genre's style with that probability.
    """
    scale = _SCALES[rng.integers(len(_SCALES))]
    breakdown = bool(rng.random() < 0.5)
    guitar: _Events = []
    drums: _Events = []
    start = 0
    while start < steps:
        bars = int(rng.integers(2, 5))
        style = genre if crossover <= 0 or rng.random() >= crossover else next(g for g in GENRES if g != genre)
        if style == "metal":
            g, d = _metal_section(rng, bars, scale)
        else:
            g, d = _hardcore_section(rng, bars, breakdown)
            breakdown = not breakdown
        guitar += [(start + s, x, a) for s, x, a in g]
        drums += [(start + s, x, a) for s, x, a in d]
        start += bars * _BAR
    return guitar, drums


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average over ``width`` samples (a cheap low-pass, like a guitar cabinet's roll-off)."""
    out = x.copy()
    for k in range(1, width):
        out[k:] += x[:-k]
    return out / np.float32(width)


def _cycle(phase: np.ndarray) -> np.ndarray:
    """Position within the current cycle, 0..1, of a phase counted in cycles."""
    return phase - np.floor(phase)


def _take(
    events: _Events, rng: np.random.Generator, n: int, sr: int, step: float, root: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phase (in cycles), envelope and brightness per sample of one humanised take of the guitar part.

    Notes are rendered without a Python loop: per-note values are repeated over each note's samples.
    """
    jitter = np.clip(rng.normal(0.0, 0.003 * sr, len(events)), -step / 4, step / 4)
    starts = np.round(np.array([e[0] for e in events]) * step + jitter).astype(np.int64)
    starts[0] = 0  # the first note (step 0) opens the track even when jittered late
    keep = starts < n
    starts = starts[keep]
    lengths = np.diff(np.append(starts, n))
    semis = np.array([e[1] for e in events])[keep]
    amp, decay, bright = np.array([_ARTICULATIONS[e[2]] for e in events], dtype=np.float32)[keep].T

    freq = 440.0 * 2 ** ((root + semis - 69) / 12) * (1 + rng.normal(0, 0.002)) / sr  # cycles per sample
    t = np.arange(n, dtype=np.float32) - np.repeat(starts.astype(np.float32), lengths)  # samples into the note
    phase = t * np.repeat(freq.astype(np.float32), lengths)  # in cycles; each pick restarts the string
    env = np.repeat(amp, lengths) * np.exp(-t * np.repeat(1 / (decay * sr), lengths))
    return phase, env, np.repeat(bright, lengths)


def _guitar(phase: np.ndarray, env: np.ndarray, bright: np.ndarray, drive: float, fifth: float, sr: int) -> np.ndarray:
    """A power chord (saw root, square fifth) through tanh distortion and a cabinet-like low-pass."""
    saw = 2 * _cycle(phase) - 1
    square_fifth = np.float32(2 * fifth) * (_cycle(1.5 * phase) < 0.5) - np.float32(fifth)
    tone = bright * (saw + square_fifth) + (1 - bright) * (2 * np.abs(saw) - 1)  # triangle: muted strings
    return _smooth(env * np.tanh(np.float32(drive) * tone), max(2, round(sr / 6000)))


def _drum_kit(rng: np.random.Generator, sr: int) -> dict[str, np.ndarray]:
    """One-shot samples for a kit whose tuning and decays vary from track to track."""

    def one_shot(seconds: float) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(round(seconds * sr)) / sr
        return t, rng.standard_normal(len(t))

    t, noise = one_shot(0.4)
    kick_freq = rng.uniform(45, 60) + rng.uniform(80, 150) * np.exp(-t / 0.025)
    kick = np.sin(2 * np.pi * np.cumsum(kick_freq) / sr) * np.exp(-t / rng.uniform(0.05, 0.1))
    kit = {"kick": kick + 0.4 * noise * np.exp(-t / 0.002)}
    t, noise = one_shot(0.35)
    kit["snare"] = 0.7 * np.sin(2 * np.pi * rng.uniform(170, 230) * t) * np.exp(-t / 0.04) + _smooth(noise, 3) * np.exp(
        -t / rng.uniform(0.05, 0.09)
    )
    cymbals = (("hat", 0.15, (0.015, 0.035)), ("ride", 0.6, (0.08, 0.15)), ("crash", 2.0, (0.4, 0.6)))
    for name, seconds, decay in cymbals:
        t, noise = one_shot(seconds)
        sizzle = _smooth(noise - _smooth(noise, 8), 2)  # noise band-passed to roughly 4-15 kHz
        kit[name] = 0.3 * sizzle * np.exp(-t / rng.uniform(*decay))
    return {name: sample.astype(np.float32) for name, sample in kit.items()}


def _drums(events: _Events, rng: np.random.Generator, n: int, sr: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre (kick, snare) and cymbal buses, with humanised timing and velocity."""
    kit = _drum_kit(rng, sr)
    buses = {"centre": np.zeros(n, np.float32), "cymbals": np.zeros(n, np.float32)}
    jitter = rng.normal(0.0, 0.002 * sr, len(events))
    velocity = rng.uniform(0.85, 1.0, len(events))
    for (s, vel, drum), dt, v in zip(events, jitter, velocity):
        start = max(0, round(s * step + dt))
        if start < n:
            sample = kit[drum][: n - start]
            buses["centre" if drum in ("kick", "snare") else "cymbals"][start : start + len(sample)] += vel * v * sample
    return buses["centre"], buses["cymbals"]


def _rms(x: np.ndarray) -> float:
    """Root mean square, never zero."""
    return float(np.sqrt(np.mean(np.square(x)))) + 1e-12


@dataclass(frozen=True)
class Production:
    """How an artist records and mixes, kept across its tracks: what a model can learn instead of genre."""

    tilt_db_per_octave: float  # EQ tilt around 1 kHz: > 0 bright, < 0 dark
    reverb: float  # wet share of a room reverb
    reverb_seconds: float  # its decay time (RT60)
    compression: float  # 0 none .. 1 heavy (ratio 1:1 .. 8:1)
    noise_db: float  # noise floor against the mix's RMS
    width: float  # side level of the double-tracked guitars (0 mono)
    tuning: float  # semitones the band tunes away from the track's key (fractional: detuned)

    @classmethod
    def from_axes(cls, z: np.ndarray) -> Production:
        """A fingerprint from six numbers in [-1, 1], one per axis, in the order of the fields (reverb
        amount and decay share an axis)."""
        z = np.clip(np.asarray(z, dtype=float), -1.0, 1.0)
        return cls(
            tilt_db_per_octave=4.0 * z[0],
            reverb=0.35 * (z[1] + 1) / 2,
            reverb_seconds=0.3 + 0.9 * (z[1] + 1) / 2,
            compression=(z[2] + 1) / 2,
            noise_db=-50.0 + 15.0 * z[3],
            width=0.75 + 0.6 * z[4],
            tuning=2.5 * z[5],
        )


def artist_sound(genre: str, rng: np.random.Generator, confound: float) -> np.ndarray:
    """An artist's fingerprint axes: ``confound`` of the genre's expected sound plus the rest drawn at random."""
    return confound * _STEREOTYPE[genre] + (1.0 - confound) * rng.uniform(-1.0, 1.0, len(_METAL_SOUND))


def _tilt(mix: np.ndarray, sample_rate: int, db_per_octave: float) -> np.ndarray:
    """A straight-line EQ in dB per octave pivoting at 1 kHz (flat below 40 Hz, where it would explode)."""
    freqs = np.maximum(np.fft.rfftfreq(mix.shape[-1], 1 / sample_rate), 40.0)
    gain = (freqs / 1000.0) ** (db_per_octave / (20 * np.log10(2)))
    return np.fft.irfft(np.fft.rfft(mix) * gain, n=mix.shape[-1]).astype(np.float32)


def _compress(mix: np.ndarray, sample_rate: int, amount: float) -> np.ndarray:
    """Downward compression above the mix's RMS, ratio 1 + 7 * amount, on a 10 ms level envelope."""
    width = max(1, round(0.01 * sample_rate))
    level = np.abs(mix).max(axis=0)
    summed = np.cumsum(np.concatenate([np.zeros(width), level]))
    envelope = (summed[width:] - summed[:-width]) / width + 1e-9
    over = np.maximum(envelope / _rms(mix), 1.0)
    return (mix * over ** (1 / (1 + 7 * amount) - 1)).astype(np.float32)


def _reverb(mix: np.ndarray, rng: np.random.Generator, sample_rate: int, wet: float, seconds: float) -> np.ndarray:
    """A room: decaying noise (different per channel, so it widens too) convolved with the mix."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    impulse = rng.standard_normal((2, len(t))) * np.exp(-6.9 * t / seconds)  # -60 dB after ``seconds``
    n = mix.shape[-1] + len(t)
    room = np.fft.irfft(np.fft.rfft(mix, n) * np.fft.rfft(impulse, n), n)[:, : mix.shape[-1]]
    room *= _rms(mix) / _rms(room)
    return ((1 - wet) * mix + wet * room).astype(np.float32)


def render_track(
    genre: str,
    rng: np.random.Generator,
    seconds: float,
    sample_rate: int = 44100,
    production: Production | None = None,
    crossover: float = 0.0,
) -> np.ndarray:
    """One synthetic ``genre`` track as float32 ``[2, round(seconds * sample_rate)]``, peak below 0.99.

    ``production`` records and mixes it the artist's way (otherwise gain, width and noise are the
    track's own); ``crossover`` > 0 plays that share of sections in the other genre's style, at a
    tempo drawn from one range for both genres.
    """
    if genre not in GENRES:
        raise ValueError(f"unknown genre '{genre}'; choose one of {', '.join(GENRES)}")
    sr, n = sample_rate, round(seconds * sample_rate)
    if crossover > 0:
        bpm = rng.uniform(130, 200)
    else:
        bpm = rng.uniform(170, 230) if genre == "metal" else rng.uniform(110, 150)
    step = sr * 60 / bpm / 4  # samples per 16th note
    root = int(rng.integers(33, 43))  # MIDI A1..G2: the low string of a down-tuned guitar
    guitar_events, drum_events = _arrange(genre, rng, int(np.ceil(n / step)) + 1, crossover)
    if production is not None:
        root += production.tuning

    drive, fifth = rng.uniform(4, 12), rng.uniform(0.2, 0.6)
    takes = [_take(guitar_events, rng, n, sr, step, root) for _ in range(2)]  # double-tracked, panned apart
    left, right = (_guitar(*take, drive, fifth, sr) for take in takes)
    phase, env, _ = takes[0]
    bass = env * (2 * np.abs(2 * _cycle(0.5 * phase) - 1) - 1)  # triangle an octave below the guitar
    centre, cymbals = _drums(drum_events, rng, n, sr, step)

    gtr_gain = 10 ** (rng.uniform(-3, 3) / 20) / _rms(left)
    bass_gain = 10 ** (rng.uniform(-12, -4) / 20) / _rms(bass)
    drum_gain = 10 ** (rng.uniform(-4, 2) / 20) / _rms(centre)
    width, cymbal_pan = rng.uniform(0.4, 1.0), rng.uniform(-0.5, 0.5)
    if production is not None:
        width = production.width
    mid = gtr_gain / 2 * (left + right) + drum_gain * (centre + cymbals) + bass_gain * bass
    side = gtr_gain * width / 2 * (left - right) - drum_gain * cymbal_pan * cymbals
    mix = np.stack([mid + side, mid - side])
    if production is not None:
        mix = _tilt(mix, sr, production.tilt_db_per_octave)
        mix = _compress(mix, sr, production.compression)
        mix = _reverb(mix, rng, sr, production.reverb, production.reverb_seconds)
    level = 10 ** (rng.uniform(-20, -13) / 20)
    mix *= np.float32(level / _rms(mix))
    hiss = rng.random(mix.shape, dtype=np.float32) - np.float32(0.5)  # room and amp noise, RMS 1/sqrt(12)
    noise_db = rng.uniform(-55, -35) if production is None else production.noise_db
    mix += np.float32(level * 12**0.5 * 10 ** (noise_db / 20)) * hiss
    return np.float32(0.99) * np.tanh(mix / np.float32(0.99))  # soft limiter keeps peaks below 0.99


def _names(rng: np.random.Generator, words: tuple[tuple[str, ...], tuple[str, ...]], count: int) -> list[str]:
    """``count`` distinct two-part names, numbered once the combinations run out."""
    combos = [f"{a} {b}" for a in words[0] for b in words[1]]
    order = rng.permutation(len(combos))
    return [
        combos[order[k % len(combos)]] + (f" {k // len(combos) + 1}" if k >= len(combos) else "") for k in range(count)
    ]


def artist_tracks(tracks: int, artists: int, prolific: int) -> list[int]:
    """Tracks per artist: the ``prolific`` first artists share half of ``tracks``, the others the rest.

    Shares are as even as they can be within each group; with no others, the prolific take all.
    """
    if not 1 <= artists <= tracks or not 0 <= prolific <= artists:
        raise UserError(
            f"data.demo.artists={artists} and data.demo.prolific={prolific}: need 1 <= artists <= "
            f"tracks_per_class ({tracks}) and 0 <= prolific <= artists"
        )
    head = tracks // 2 if 0 < prolific < artists else (tracks if prolific else 0)
    split = [(head, prolific), (tracks - head, artists - prolific)]
    return [total // k + (i < total % k) for total, k in split if k for i in range(k)]


def write_demo_set(
    root: Path,
    tracks_per_class: int = 24,
    seconds: float = 30.0,
    seed: int = 0,
    sample_rate: int = 44100,
    artists: int = 0,
    prolific: int = 2,
    confound: float = 1.0,
    crossover: float = 0.0,
) -> list[Path]:
    """Write ``root/<genre>/Artist - Title.{wav,flac}`` for both genres and return the files.

    Each class spreads its tracks over ``max(2, tracks_per_class // 3)`` invented bands (fewer when
    there are fewer tracks); formats alternate between wav and flac, so each band has both; the
    ``artist`` tag holds the band's name.

    ``artists`` > 0 makes that many bands per class instead, each with a production fingerprint
    (``Production``) kept across its tracks: the ``prolific`` first bands share half the class's
    tracks and sound ``confound`` of the way towards their genre's expected sound, the others share
    the rest and draw their sound at random. ``crossover`` blurs the genres (see ``render_track``).
    """
    files = []
    for genre, genre_seed in zip(GENRES, np.random.SeedSequence(seed).spawn(len(GENRES))):
        names_seed, *track_seeds = genre_seed.spawn(tracks_per_class + 1)
        names_rng = np.random.default_rng(names_seed)
        bands = artists or max(2, tracks_per_class // 3)
        names = _names(names_rng, _BANDS[genre], bands)
        titles = _names(names_rng, _TITLES[genre], tracks_per_class)
        if artists:
            counts = artist_tracks(tracks_per_class, artists, prolific)
            band_of = np.repeat(np.arange(artists), counts)
            sound_rng = np.random.default_rng(genre_seed.spawn(1)[0])  # a later child: the tracks' seeds stay
            sounds = [artist_sound(genre, sound_rng, confound if a < prolific else 0.0) for a in range(artists)]
        else:
            band_of = [i * bands // tracks_per_class for i in range(tracks_per_class)]  # consecutive tracks
        folder = Path(root) / genre
        folder.mkdir(parents=True, exist_ok=True)
        for i, (title, track_seed) in enumerate(zip(titles, track_seeds)):
            artist = names[band_of[i]]
            rng = np.random.default_rng(track_seed)
            if artists:  # the band's sound, varied a little from take to take
                production = Production.from_axes(sounds[band_of[i]] + rng.normal(0.0, 0.1, len(_METAL_SOUND)))
                audio = render_track(genre, rng, seconds, sample_rate, production, crossover)
            else:
                audio = render_track(genre, rng, seconds, sample_rate)
            path = folder / f"{artist} - {title}{'.wav' if i % 2 == 0 else '.flac'}"  # formats alternate
            files.append(write_audio(path, audio, sample_rate, tags={"artist": artist}))
    return files


@dataclass(frozen=True)
class DemoSet:
    """What the Hydra data configs ``synthetic`` and ``artists`` ask for; the DataModule calls ``ensure(root)``.

    The artist fields (see ``write_demo_set``) are recorded only when ``artists`` > 0, so a plain
    demo set made before they existed is still recognised.
    """

    tracks_per_class: int = 24
    seconds: float = 30.0
    seed: int = 0
    sample_rate: int = 44100
    artists: int = 0
    prolific: int = 2
    confound: float = 1.0
    crossover: float = 0.0

    def params(self) -> dict:
        """The parameters that make the set, as ``write_demo_set`` takes them and the marker records them."""
        params = asdict(self)
        if not self.artists:
            for key in ("artists", "prolific", "confound", "crossover"):
                del params[key]
        return params

    def ensure(self, root: Path) -> Path:
        """Create the set at ``root`` unless it is already there; safe for concurrent callers.

        The set is written into a temporary sibling folder that is renamed to ``root`` in one
        step, with a ``.complete`` marker holding the parameters written last. A ``root`` made
        with other parameters, or one that is not a demo set, raises ``ValueError``.
        """
        root = Path(root)
        if not self._is_here(root):
            root.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
            try:
                write_demo_set(staging, **self.params())
                (staging / ".complete").write_text(json.dumps(self.params(), sort_keys=True))
                os.rename(staging, root)
            except OSError:
                if not self._is_here(root):  # no other process finished root first: a real failure
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return root

    def _is_here(self, root: Path) -> bool:
        """Whether ``root`` holds this set; raises if it holds something else."""
        marker = root / ".complete"
        if marker.is_file():
            recorded, wanted = json.loads(marker.read_text()), self.params()
            if recorded != wanted:
                raise UserError(
                    f"{root} holds a demo set made with {json.dumps(recorded, sort_keys=True)}, not the "
                    f"requested {json.dumps(wanted, sort_keys=True)}; delete it or point the data config "
                    "at another folder"
                )
            return True
        if root.exists() and any(root.iterdir()):
            raise UserError(
                f"{root} exists but is not a complete demo set (no .complete marker); "
                "delete it or point the data config at another folder"
            )
        return False
