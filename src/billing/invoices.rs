//! Invoices: written at each period start (seats × price for the new period, the prorated
//! additions of the period before, tax), numbered sequentially per deployment, never changed
//! afterwards; corrections are credit notes. Also their CSV form.

use super::money;
use super::store::{self, Invoice, Line};
use super::{BillingError, Subscription};
use crate::audit::{self, Actor, AuditAction, RequestMeta, Target};
use crate::config::Pricing;
use crate::db::Tx;
use crate::orgs::Org;

/// Writes the invoice of the period that starts at `sub.period_start`, billing the open
/// charges made before it, and audits it (the event lists every line's source).
pub async fn issue(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    sub: &Subscription,
    pricing: &Pricing,
) -> Result<Invoice, BillingError> {
    let seats = crate::orgs::seats::subscribed(&mut **tx, org.id).await?;
    let unit = super::plan::unit_price(sub, pricing);
    let start = sub.period_start;
    let end = sub.period_end();
    let date = |ms: i64| super::period::date_of(ms).to_string();
    let mut lines = vec![Line {
        description: format!(
            "Seats, {} period {} to {}",
            sub.period.as_str(),
            date(start),
            date(end)
        ),
        quantity: seats,
        unit_price: unit,
        amount: seats * unit,
        source: format!("subscription:{}:{start}", org.id),
    }];
    let charges = store::open_charges(&mut **tx, org.id, start).await?;
    for c in &charges {
        lines.push(Line {
            description: format!(
                "{} seats added on {} ({} to {}), {} of {} days",
                c.seats_to - c.seats_from,
                date(c.created_at),
                c.seats_from,
                c.seats_to,
                c.days_charged,
                c.period_days
            ),
            quantity: c.seats_to - c.seats_from,
            unit_price: c.unit_price,
            amount: c.amount,
            source: format!("charge:{}", c.id),
        });
    }
    let number = store::next_number(tx, "invoice").await?;
    let invoice = build(
        org,
        format!("INV-{number:06}"),
        "invoice",
        None,
        sub,
        lines,
        pricing,
        now,
    );
    store::insert_invoice(tx, org.id, &invoice).await?;
    for c in &charges {
        store::bill_charge(tx, &c.id, &invoice.id).await?;
    }
    let sources: Vec<&str> = invoice.lines.iter().map(|l| l.source.as_str()).collect();
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action: AuditAction::InvoiceIssued,
            actor: &Actor::System("billing"),
            target: Some(Target::org(org.id)),
            meta: &RequestMeta::default(),
            details: serde_json::json!({
                "invoice": invoice.id, "number": invoice.number, "total": invoice.total,
                "currency": invoice.currency, "period_start": start, "period_end": end,
                "seats": seats, "lines": sources,
            }),
        },
    )
    .await?;
    Ok(invoice)
}

/// An invoice with its subtotal and tax worked out (tax is its own line).
#[allow(clippy::too_many_arguments)]
fn build(
    org: &Org,
    number: String,
    kind: &str,
    corrects: Option<String>,
    sub: &Subscription,
    mut lines: Vec<Line>,
    pricing: &Pricing,
    now: i64,
) -> Invoice {
    let subtotal: i64 = lines.iter().map(|l| l.amount).sum();
    let tax = if subtotal < 0 {
        -money::tax(-subtotal, pricing.tax_basis_points)
    } else {
        money::tax(subtotal, pricing.tax_basis_points)
    };
    lines.push(Line {
        description: format!("Tax {}", money::rate(pricing.tax_basis_points)),
        quantity: 1,
        unit_price: tax,
        amount: tax,
        source: "tax".to_string(),
    });
    Invoice {
        id: uuid::Uuid::new_v4().to_string(),
        number,
        kind: kind.to_string(),
        org_name: org.name.clone(),
        corrects,
        period: sub.period.as_str().to_string(),
        period_start: sub.period_start,
        period_end: sub.period_end(),
        currency: pricing.currency.clone(),
        subtotal,
        tax_basis_points: pricing.tax_basis_points,
        tax,
        total: subtotal + tax,
        note: None,
        issued_at: now,
        lines,
    }
}

/// Issues a credit note against an invoice (the operator's correction): `amount` minor units
/// before tax are credited, at most the invoice's subtotal.
pub async fn credit_note(
    tx: &mut Tx,
    now: i64,
    org: &Org,
    number: &str,
    amount: i64,
    reason: &str,
    pricing: &Pricing,
) -> Result<Invoice, BillingError> {
    let original = store::invoice(&mut *tx, org.id, number)
        .await?
        .filter(|i| i.kind == "invoice")
        .ok_or(BillingError::InvoiceNotFound)?;
    if amount <= 0 || amount > original.subtotal {
        return Err(BillingError::Invalid(format!(
            "a credit note is between 1 and {} minor units (the invoice's subtotal)",
            original.subtotal
        )));
    }
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(BillingError::Invalid(
            "give the reason for the credit note (at most 500 characters)".to_string(),
        ));
    }
    let sub = super::store::get(&mut **tx, org.id)
        .await?
        .ok_or(BillingError::InvoiceNotFound)?;
    let mut rates = pricing.clone();
    rates.tax_basis_points = original.tax_basis_points;
    rates.currency = original.currency.clone();
    let lines = vec![Line {
        description: format!("Credit for invoice {}: {reason}", original.number),
        quantity: 1,
        unit_price: -amount,
        amount: -amount,
        source: format!("invoice:{}", original.id),
    }];
    let n = store::next_number(tx, "credit_note").await?;
    let mut note = build(
        org,
        format!("CN-{n:06}"),
        "credit_note",
        Some(original.id.clone()),
        &sub,
        lines,
        &rates,
        now,
    );
    note.period_start = original.period_start;
    note.period_end = original.period_end;
    note.period = original.period.clone();
    note.note = Some(reason.to_string());
    store::insert_invoice(tx, org.id, &note).await?;
    audit::record(
        tx,
        now,
        audit::Event {
            org_id: Some(org.id),
            action: AuditAction::CreditNoteIssued,
            actor: &Actor::Operator,
            target: Some(Target::org(org.id)),
            meta: &RequestMeta::default(),
            details: serde_json::json!({
                "credit_note": note.id, "number": note.number, "corrects": original.number,
                "total": note.total, "reason": reason,
            }),
        },
    )
    .await?;
    Ok(note)
}

/// An invoice as CSV: a header of the invoice, then one row per line.
pub fn csv(inv: &Invoice) -> String {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let date = |ms: i64| super::period::date_of(ms).to_string();
    let mut out = String::from(
        "number,kind,organization,issued,period_start,period_end,currency,description,quantity,unit_price,amount,source\r\n",
    );
    for line in &inv.lines {
        let row = [
            field(&inv.number),
            field(&inv.kind),
            field(&inv.org_name),
            date(inv.issued_at),
            date(inv.period_start),
            date(inv.period_end),
            field(&inv.currency),
            field(&line.description),
            line.quantity.to_string(),
            decimal(line.unit_price, &inv.currency),
            decimal(line.amount, &inv.currency),
            field(&line.source),
        ];
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

/// `amount` minor units as a plain decimal (`12.34`), for CSV.
pub fn decimal(amount: i64, currency: &str) -> String {
    let exp = money::exponent(currency);
    if exp == 0 {
        return amount.to_string();
    }
    let unit = 10_i64.pow(exp).unsigned_abs();
    let abs = amount.unsigned_abs();
    let sign = if amount < 0 { "-" } else { "" };
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = exp as usize
    )
}
