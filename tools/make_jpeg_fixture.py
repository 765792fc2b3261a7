#!/usr/bin/env python3
"""Generate tests/fixtures/jpeg/: JPEGs written by PIL and PIL's own RGB reading of them.

From a 96x72 crop of data/photos/chelsea.png:
  ycc.jpg / ycc_pil.png    saved as an ordinary (YCbCr, 4:2:0, quality 90) JPEG;
                           the PNG is Image.open('ycc.jpg').convert('RGB')
  cmyk.jpg / cmyk_pil.png  converted to CMYK by PIL and saved as JPEG (quality 90):
                           PIL writes the Adobe marker, so readers take the samples
                           as inverted, as in Photoshop's CMYK JPEGs; the PNG is
                           Image.open('cmyk.jpg').convert('RGB')
The PNGs are what torchvision's PIL loader feeds the model; tests/it/decode.rs checks
that xfer decodes each JPEG to the same pixels.
Usage: .venv/bin/python tools/make_jpeg_fixture.py   (needs data/photos/: tools/setup.sh)
"""
import os

from PIL import Image

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "jpeg")

os.makedirs(OUT, exist_ok=True)
src = Image.open(os.path.join(ROOT, "data", "photos", "chelsea.png")).convert("RGB")
crop = src.crop((150, 40, 150 + 96, 40 + 72))
for name, img in (("ycc", crop), ("cmyk", crop.convert("CMYK"))):
    jpg = os.path.join(OUT, f"{name}.jpg")
    img.save(jpg, quality=90)
    back = Image.open(jpg)
    back.convert("RGB").save(os.path.join(OUT, f"{name}_pil.png"))
    print(f"{jpg}: {os.path.getsize(jpg)} bytes, PIL mode {back.mode}")
