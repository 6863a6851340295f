"""Real labels for the batch tests, made by real PDF writers.

    python make_labels.py OUT_DIR SPEC...

Each SPEC is ``TRACKING:KIND:PAGES`` and becomes ``OUT_DIR/TRACKING.pdf``. Every page
with text shows the token ``TRACKING-P<n>`` (n from 1), so a reader of the merged file
can tell which label and which page each of its pages came from. Kinds:

``reportlab``
    a shipping label: an embedded TrueType font (reportlab's own Vera, subset), a
    Code 128 barcode, a raster logo, compressed content streams, and a page tree
    that reportlab writes with inherited attributes.
``objstm``
    the same, rewritten by ``qpdf --object-streams=generate``: objects inside object
    streams, and a cross-reference stream instead of a table.
``img2pdf``
    a scanned label: one PNG per page (drawn with Pillow) wrapped by img2pdf; no text,
    so only its content streams and images say where a page came from.
"""

import io
import subprocess
import sys
from pathlib import Path

import img2pdf
from PIL import Image, ImageDraw
from reportlab.graphics.barcode import code128
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

pdfmetrics.registerFont(TTFont("Vera", "Vera.ttf"))
pdfmetrics.registerFont(TTFont("VeraBd", "VeraBd.ttf"))


def logo(seed):
    """A small RGB raster, different per label."""
    img = Image.new("RGB", (96, 48))
    px = img.load()
    for x in range(96):
        for y in range(48):
            px[x, y] = ((x * 3 + seed * 40) % 256, (y * 5 + seed * 70) % 256, (x * y + seed) % 256)
    return img


def reportlab_label(tracking, pages, seed):
    out = io.BytesIO()
    c = canvas.Canvas(out, pagesize=(100 * mm, 150 * mm), pageCompression=1)
    c.setTitle(f"Shipping label {tracking}")
    c.setAuthor("label-gateway tests")
    for n in range(1, pages + 1):
        c.setFont("VeraBd", 14)
        c.drawString(8 * mm, 140 * mm, "Sensational Shipping Co.")
        c.setFont("Vera", 10)
        c.drawString(8 * mm, 132 * mm, "Ship to: Ada Lovelace, 12 Analytical Row, London")
        c.drawString(8 * mm, 126 * mm, f"{tracking}-P{n}")
        c.drawString(8 * mm, 120 * mm, f"Parcel {n} of {pages}, weight {1.5 * n:.1f} kg")
        c.drawImage(ImageReader(logo(seed + n)), 60 * mm, 104 * mm, 32 * mm, 16 * mm)
        barcode = code128.Code128(tracking, barHeight=22 * mm, barWidth=0.45 * mm)
        barcode.drawOn(c, 6 * mm, 80 * mm)
        c.rect(5 * mm, 5 * mm, 90 * mm, 140 * mm)
        c.showPage()
    c.save()
    return out.getvalue()


def scanned_label(tracking, pages, seed):
    images = []
    for n in range(1, pages + 1):
        img = Image.new("L", (600, 900), 255)
        draw = ImageDraw.Draw(img)
        draw.rectangle((20, 20, 580, 880), outline=0, width=6)
        draw.text((60, 80), f"{tracking}-P{n}", fill=0)
        for i in range(40):  # a barcode-like pattern, different per label and page
            if (i * 7 + seed + n) % 3:
                draw.rectangle((60 + i * 12, 300, 66 + i * 12, 500), fill=0)
        png = io.BytesIO()
        img.save(png, format="PNG")
        images.append(png.getvalue())
    return img2pdf.convert(images)


def main(out_dir, specs):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for seed, spec in enumerate(specs):
        tracking, kind, pages = spec.split(":")
        pages = int(pages)
        target = out_dir / f"{tracking}.pdf"
        if kind == "reportlab":
            target.write_bytes(reportlab_label(tracking, pages, seed))
        elif kind == "objstm":
            plain = out_dir / f"{tracking}.plain.pdf"
            plain.write_bytes(reportlab_label(tracking, pages, seed))
            subprocess.run(
                ["qpdf", "--object-streams=generate", str(plain), str(target)], check=True
            )
            plain.unlink()
        elif kind == "img2pdf":
            target.write_bytes(scanned_label(tracking, pages, seed))
        else:
            sys.exit(f"unknown kind {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
