//! An invoice as a PDF (pdf-writer, no browser): A4 pages in Courier (columns align) with the
//! standard WinAnsi encoding, so no font file is embedded; characters outside it print as `?`.

use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};

use super::invoices::decimal;
use super::money;
use super::store::Invoice;

const LINES_PER_PAGE: usize = 46;

/// `text` in WinAnsi bytes (Latin-1 plus the euro sign); anything else becomes `?`.
fn win_ansi(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| match c {
            '€' => 0x80,
            '\u{2013}' | '\u{2014}' => b'-',
            c if (c as u32) < 0x7f && !c.is_control() => c as u8,
            c if (0xa0..=0xff).contains(&(c as u32)) => c as u8,
            _ => b'?',
        })
        .collect()
}

/// The rows of text the PDF shows, top to bottom.
fn rows(inv: &Invoice) -> Vec<(f32, String)> {
    let date = |ms: i64| super::period::date_of(ms).to_string();
    let title = if inv.kind == "credit_note" {
        "Credit note"
    } else {
        "Invoice"
    };
    let mut rows = vec![
        (16.0, format!("{title} {}", inv.number)),
        (
            10.0,
            format!("Issued {} to {}", date(inv.issued_at), inv.org_name),
        ),
        (
            10.0,
            format!(
                "Period {} to {} ({})",
                date(inv.period_start),
                date(inv.period_end),
                inv.period
            ),
        ),
        (10.0, String::new()),
        (
            10.0,
            format!(
                "{:<58} {:>6} {:>12} {:>12}",
                "Description", "Qty", "Unit", "Amount"
            ),
        ),
    ];
    for line in &inv.lines {
        let mut description: String = line.description.chars().take(58).collect();
        if line.description.chars().count() > 58 {
            description.replace_range(description.len() - 1.., ".");
        }
        rows.push((
            10.0,
            format!(
                "{description:<58} {:>6} {:>12} {:>12}",
                line.quantity,
                decimal(line.unit_price, &inv.currency),
                decimal(line.amount, &inv.currency)
            ),
        ));
    }
    rows.push((10.0, String::new()));
    rows.push((
        10.0,
        format!("Subtotal {}", money::format(inv.subtotal, &inv.currency)),
    ));
    rows.push((
        10.0,
        format!(
            "Tax ({}) {}",
            money::rate(inv.tax_basis_points),
            money::format(inv.tax, &inv.currency)
        ),
    ));
    rows.push((
        12.0,
        format!("Total {}", money::format(inv.total, &inv.currency)),
    ));
    if let Some(note) = &inv.note {
        rows.push((10.0, format!("Note: {note}")));
    }
    rows
}

/// The invoice as a PDF document.
pub fn render(inv: &Invoice) -> Vec<u8> {
    let rows = rows(inv);
    let pages: Vec<&[(f32, String)]> = rows.chunks(LINES_PER_PAGE).collect();
    let mut pdf = Pdf::new();
    let catalog = Ref::new(1);
    let tree = Ref::new(2);
    let font = Ref::new(3);
    let font_name = Name(b"F1");
    let page_ids: Vec<Ref> = (0..pages.len())
        .map(|i| Ref::new(4 + 2 * i32::try_from(i).unwrap_or(0)))
        .collect();
    pdf.catalog(catalog).pages(tree);
    pdf.pages(tree)
        .kids(page_ids.iter().copied())
        .count(i32::try_from(pages.len()).unwrap_or(1));
    pdf.type1_font(font)
        .base_font(Name(b"Courier"))
        .encoding_predefined(Name(b"WinAnsiEncoding"));
    for (page_rows, id) in pages.iter().zip(&page_ids) {
        let content_id = Ref::new(id.get() + 1);
        let mut page = pdf.page(*id);
        page.media_box(Rect::new(0.0, 0.0, 595.0, 842.0));
        page.parent(tree);
        page.contents(content_id);
        page.resources().fonts().pair(font_name, font);
        page.finish();
        let mut content = Content::new();
        let mut y = 790.0;
        for (size, text) in page_rows.iter() {
            content.begin_text();
            content.set_font(font_name, *size * 0.9);
            content.next_line(40.0, y);
            content.show(Str(&win_ansi(text)));
            content.end_text();
            y -= size + 5.0;
        }
        pdf.stream(content_id, &content.finish());
    }
    pdf.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_outside_win_ansi_becomes_a_question_mark() {
        assert_eq!(win_ansi("A€é—株"), vec![b'A', 0x80, 0xe9, b'-', b'?']);
    }
}
