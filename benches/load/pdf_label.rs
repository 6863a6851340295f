//! A real one-page label PDF of an exact size, for the batch benches: Helvetica text
//! naming the label, a barcode of rectangles, and comment lines in the content stream
//! making up the size, so a merge parses and rewrites it as it would a carrier's label.
//! Shared by the load bench (`batch.rs`) and the micro bench (`batch_merge_label`).

use std::io::Write;

/// A one-page PDF of exactly `len` bytes: Helvetica text naming the label, a barcode of
/// rectangles, and comment lines in the content stream making up the size.
pub fn label_pdf(tracking: &str, len: usize) -> Vec<u8> {
    let mut drawing = format!(
        "BT /F1 18 Tf 24 380 Td (Shipping label) Tj ET\nBT /F1 14 Tf 24 340 Td (Tracking: {tracking}) Tj ET\n"
    );
    for (i, b) in tracking.bytes().cycle().take(60).enumerate() {
        let w = 1 + u32::from(b % 3);
        drawing.push_str(&format!("{} 200 {w} 80 re f\n", 24 + i * 4));
    }
    let mut pad = len.saturating_sub(assemble(&drawing, 0).len());
    for _ in 0..4 {
        let pdf = assemble(&drawing, pad);
        if pdf.len() == len {
            return pdf;
        }
        pad = (pad + len).saturating_sub(pdf.len());
    }
    assemble(&drawing, pad)
}

fn assemble(drawing: &str, pad: usize) -> Vec<u8> {
    let mut stream = drawing.as_bytes().to_vec();
    let mut left = pad;
    while left > 0 {
        let width = left.min(72);
        let mut line = vec![b'%'; width];
        line[width - 1] = b'\n';
        stream.extend_from_slice(&line);
        left -= width;
    }
    let objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 288 432] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        [format!("<< /Length {} >>\nstream\n", stream.len()).as_bytes(), &stream, b"endstream"].concat(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        let _ = writeln!(out, "{} 0 obj", i + 1);
        out.extend_from_slice(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    let _ = write!(out, "xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for o in offsets {
        let _ = writeln!(out, "{o:010} 00000 n ");
    }
    let _ = write!(
        out,
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    );
    out
}
