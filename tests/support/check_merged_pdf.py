"""Reads a merged batch PDF with pypdf and checks it against its source labels.

    python check_merged_pdf.py MERGED SOURCE...

Passes (prints ``pages=N``) when the merged file has exactly the sources' pages, in the
order given, each page's decoded content stream identical to its source page's and its
media box and images the same. Exits non-zero naming the first difference.
"""

import sys

from pypdf import PdfReader


def page_facts(page):
    contents = page.get_contents()
    data = contents.get_data() if contents is not None else b""
    images = sorted(image.data for image in page.images)
    return data, [float(v) for v in page.mediabox], images


def main(merged, sources):
    reader = PdfReader(merged, strict=True)
    expected = []
    for source in sources:
        for number, page in enumerate(PdfReader(source).pages, start=1):
            expected.append((source, number, page_facts(page)))
    pages = reader.pages
    if len(pages) != len(expected):
        sys.exit(f"merged file has {len(pages)} pages, the sources {len(expected)}")
    for index, (page, (source, number, facts)) in enumerate(zip(pages, expected), start=1):
        got = page_facts(page)
        for what, a, b in zip(("content stream", "media box", "images"), got, facts):
            if a != b:
                sys.exit(f"merged page {index} differs from page {number} of {source}: {what}")
    print(f"pages={len(pages)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
