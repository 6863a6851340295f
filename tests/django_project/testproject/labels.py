"""Label functions the gateway's tests regenerate and check access through.

Access (``may_read``, the project's ``LABEL_GATEWAY_ACCESS_CHECK``): every logged-in
user may read every label except those whose tracking number starts with
``NOTYOURS`` (someone else's shipment), which nobody may read.

For regeneration, the prefix of the tracking number picks the behaviour:

``REGEN...``  a PDF of exactly ``LABEL_SIZE`` bytes naming the tracking number
``SLOW...``   the same PDF after ``SLOW_SECONDS`` seconds
``FAIL...``   raises RuntimeError
``URL...``    the URL in env ``LABEL_GATEWAY_TEST_CARRIER_URL`` (None when unset)
otherwise     None: no label exists
"""

import os
import time

LABEL_SIZE = 50 * 1024
SLOW_SECONDS = 30
#: Labels with this prefix belong to nobody who asks: the access check denies them.
OTHERS_PREFIX = "NOTYOURS"


def may_read(request, user, tracking):
    return not tracking.startswith(OTHERS_PREFIX)


def regenerate(tracking):
    if tracking.startswith("REGEN"):
        return label_pdf(tracking)
    if tracking.startswith("SLOW"):
        time.sleep(SLOW_SECONDS)
        return label_pdf(tracking)
    if tracking.startswith("FAIL"):
        raise RuntimeError(f"test carrier failure for {tracking}")
    if tracking.startswith("URL"):
        return os.environ.get("LABEL_GATEWAY_TEST_CARRIER_URL") or None
    return None


def tracking_url(tracking):
    return f"https://tracking.example.com/track?number={tracking}"


def label_pdf(tracking, size=LABEL_SIZE):
    """Return a well-formed one-page PDF of exactly ``size`` bytes.

    The page shows the tracking number. Comment lines in the content stream
    bring the file to the requested size, so the output is deterministic.
    """
    text = tracking.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    drawing = (
        "BT /F1 18 Tf 24 380 Td (Shipping label) Tj ET\n"
        f"BT /F1 14 Tf 24 340 Td (Tracking: {text}) Tj ET\n"
    ).encode("latin-1", "replace")

    # The padding changes the width of /Length and startxref: converge on the size.
    padding = size - len(_assemble(drawing, b""))
    for _ in range(3):
        pdf = _assemble(drawing, _padding(padding))
        if len(pdf) == size:
            return pdf
        padding += size - len(pdf)
    raise ValueError(f"cannot build a {size}-byte label for {tracking!r}")


def _padding(n):
    """``n`` bytes of PDF comment lines (a blank line when only one byte is left)."""
    if n < 0:
        raise ValueError("label content does not fit in the requested size")
    lines = []
    index = 0
    while n > 0:
        width = min(72, n)
        prefix = f"% padding {index:05d} "
        line = (prefix + "." * 72)[: width - 1] + "\n"
        lines.append(line.encode())
        n -= width
        index += 1
    return b"".join(lines)


def _assemble(drawing, padding):
    stream = drawing + padding
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 288 432] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)
