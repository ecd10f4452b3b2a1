//! SQL of billing: subscriptions, charges, idempotency keys, the daily usage record, invoices.

use sqlx::{Any, Executor, Row};

use super::{Period, Status, Subscription};
use crate::db::Tx;
use crate::ids::OrgId;

const COLUMNS: &str = "org_id, status, period, anchor_day, period_start, trial_ends_at, \
     scheduled_seats, scheduled_period, invoiced_period_start, legacy_org_wide, legacy_seats, \
     updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Subscription, sqlx::Error> {
    let bad = |what: &str, v: String| sqlx::Error::Decode(format!("unknown {what} {v:?}").into());
    let status: String = row.try_get("status")?;
    let period: String = row.try_get("period")?;
    let org: String = row.try_get("org_id")?;
    Ok(Subscription {
        org_id: OrgId::parse(&org).ok_or_else(|| bad("org id", org.clone()))?,
        status: Status::parse(&status).ok_or_else(|| bad("status", status.clone()))?,
        period: Period::parse(&period).ok_or_else(|| bad("period", period.clone()))?,
        anchor_day: row.try_get("anchor_day")?,
        period_start: row.try_get("period_start")?,
        trial_ends_at: row.try_get("trial_ends_at")?,
        scheduled_seats: row.try_get("scheduled_seats")?,
        scheduled_period: match row.try_get::<Option<String>, _>("scheduled_period")? {
            Some(p) => Some(Period::parse(&p).ok_or_else(|| bad("period", p.clone()))?),
            None => None,
        },
        invoiced_period_start: row.try_get("invoiced_period_start")?,
        legacy_org_wide: row.try_get::<i64, _>("legacy_org_wide")? != 0,
        legacy_seats: row.try_get("legacy_seats")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The stored subscription of an organization, if any.
pub async fn get<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
) -> Result<Option<Subscription>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM subscriptions WHERE org_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_string())
        .fetch_optional(exec)
        .await?;
    row.as_ref().map(from_row).transpose()
}

const UPSERT: &str = "INSERT INTO subscriptions (org_id, status, period, anchor_day, period_start, \
     trial_ends_at, scheduled_seats, invoiced_period_start, legacy_org_wide, legacy_seats, updated_at, \
     scheduled_period) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
     ON CONFLICT (org_id) DO UPDATE SET status = excluded.status, period = excluded.period, \
     anchor_day = excluded.anchor_day, period_start = excluded.period_start, \
     trial_ends_at = excluded.trial_ends_at, scheduled_seats = excluded.scheduled_seats, \
     scheduled_period = excluded.scheduled_period, \
     invoiced_period_start = excluded.invoiced_period_start, \
     legacy_org_wide = excluded.legacy_org_wide, legacy_seats = excluded.legacy_seats, \
     updated_at = excluded.updated_at";

/// Writes the subscription (insert or replace).
pub async fn put(tx: &mut Tx, sub: &Subscription) -> Result<(), sqlx::Error> {
    sqlx::query(UPSERT)
        .bind(sub.org_id.to_string())
        .bind(sub.status.as_str())
        .bind(sub.period.as_str())
        .bind(sub.anchor_day)
        .bind(sub.period_start)
        .bind(sub.trial_ends_at)
        .bind(sub.scheduled_seats)
        .bind(sub.invoiced_period_start)
        .bind(crate::db::flag(sub.legacy_org_wide))
        .bind(sub.legacy_seats)
        .bind(sub.updated_at)
        .bind(sub.scheduled_period.map(Period::as_str))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const ORGS_DUE: &str = "SELECT o.id FROM orgs o LEFT JOIN subscriptions s ON s.org_id = o.id \
     WHERE s.org_id IS NULL \
        OR (s.status = 'trial' AND s.trial_ends_at <= $1) \
        OR (s.status IN ('active', 'past_due') AND (s.invoiced_period_start IS NULL \
            OR s.invoiced_period_start < s.period_start)) \
        OR (s.status IN ('active', 'past_due', 'cancelled') AND s.period_start <= $2) \
     ORDER BY o.id";

/// Organizations whose subscription may need a turn: none stored, a trial that ended, a period
/// not yet invoiced, or a period that may have ended (started at least 28 days ago).
pub async fn orgs_due(pool: &sqlx::AnyPool, now: i64) -> Result<Vec<OrgId>, sqlx::Error> {
    let rows = sqlx::query(ORGS_DUE)
        .bind(now)
        .bind(now - 28 * crate::clock::DAY_MS)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get("id")?;
            OrgId::parse(&id).ok_or_else(|| sqlx::Error::Decode("bad org id".into()))
        })
        .collect()
}

/// A prorated charge for seats added during a period.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Charge {
    pub id: String,
    pub seats_from: i64,
    pub seats_to: i64,
    pub period_start: i64,
    pub period_end: i64,
    pub days_charged: i64,
    pub period_days: i64,
    pub unit_price: i64,
    pub amount: i64,
    pub currency: String,
    pub created_at: i64,
}

const INSERT_CHARGE: &str = "INSERT INTO billing_charges (id, org_id, seats_from, seats_to, \
     period_start, period_end, days_charged, period_days, unit_price, amount, currency, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

pub async fn insert_charge(tx: &mut Tx, org: OrgId, c: &Charge) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_CHARGE)
        .bind(c.id.clone())
        .bind(org.to_string())
        .bind(c.seats_from)
        .bind(c.seats_to)
        .bind(c.period_start)
        .bind(c.period_end)
        .bind(c.days_charged)
        .bind(c.period_days)
        .bind(c.unit_price)
        .bind(c.amount)
        .bind(c.currency.clone())
        .bind(c.created_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const OPEN_CHARGES: &str = "SELECT id, seats_from, seats_to, period_start, period_end, \
     days_charged, period_days, unit_price, amount, currency, created_at FROM billing_charges \
     WHERE org_id = $1 AND invoice_id IS NULL AND created_at < $2 ORDER BY created_at, id";

/// Charges not yet invoiced, made before `before`.
pub async fn open_charges<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: OrgId,
    before: i64,
) -> Result<Vec<Charge>, sqlx::Error> {
    let rows = sqlx::query(OPEN_CHARGES)
        .bind(org.to_string())
        .bind(before)
        .fetch_all(exec)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Charge {
                id: r.try_get("id")?,
                seats_from: r.try_get("seats_from")?,
                seats_to: r.try_get("seats_to")?,
                period_start: r.try_get("period_start")?,
                period_end: r.try_get("period_end")?,
                days_charged: r.try_get("days_charged")?,
                period_days: r.try_get("period_days")?,
                unit_price: r.try_get("unit_price")?,
                amount: r.try_get("amount")?,
                currency: r.try_get("currency")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .collect()
}

const BILL_CHARGE: &str =
    "UPDATE billing_charges SET invoice_id = $2 WHERE id = $1 AND invoice_id IS NULL";

/// Marks a charge as billed on `invoice`.
pub async fn bill_charge(tx: &mut Tx, charge: &str, invoice: &str) -> Result<(), sqlx::Error> {
    sqlx::query(BILL_CHARGE)
        .bind(charge.to_string())
        .bind(invoice.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A stored answer to an idempotent request.
pub struct StoredAnswer {
    pub request_hash: String,
    pub status: u16,
    pub response: String,
}

const IDEM_GET: &str =
    "SELECT request_hash, status, response FROM billing_idempotency WHERE org_id = $1 AND key = $2";

pub async fn answer(
    tx: &mut Tx,
    org: OrgId,
    key: &str,
) -> Result<Option<StoredAnswer>, sqlx::Error> {
    let row = sqlx::query(IDEM_GET)
        .bind(org.to_string())
        .bind(key.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| {
        Ok(StoredAnswer {
            request_hash: r.try_get("request_hash")?,
            status: u16::try_from(r.try_get::<i64, _>("status")?).unwrap_or(200),
            response: r.try_get("response")?,
        })
    })
    .transpose()
}

const IDEM_PUT: &str = "INSERT INTO billing_idempotency (org_id, key, request_hash, status, \
     response, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

pub async fn remember(
    tx: &mut Tx,
    org: OrgId,
    key: &str,
    answer: &StoredAnswer,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(IDEM_PUT)
        .bind(org.to_string())
        .bind(key.to_string())
        .bind(answer.request_hash.clone())
        .bind(i64::from(answer.status))
        .bind(answer.response.clone())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

const FORGET_KEYS: &str = "DELETE FROM billing_idempotency WHERE created_at < $1";

/// Drops idempotency keys older than `before` (a retry comes within minutes, not days).
pub async fn forget_keys(pool: &sqlx::AnyPool, before: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(FORGET_KEYS)
        .bind(before)
        .execute(pool)
        .await?
        .rows_affected())
}

const RECORD_USAGE: &str = "INSERT INTO billing_usage (org_id, day, seats, managed) \
     SELECT o.id, $2, o.seats, (SELECT COUNT(*) FROM accounts a WHERE a.org_id = o.id \
        AND a.kind = 'managed' AND a.status IN ('active', 'suspended')) FROM orgs o \
     WHERE ($1 = '' OR o.id = $1) \
     ON CONFLICT (org_id, day) DO UPDATE SET seats = excluded.seats, managed = excluded.managed";

/// Records today's seats and managed accounts of one organization (or of all, with `None`).
pub async fn record_usage<'c>(
    exec: impl Executor<'c, Database = Any>,
    org: Option<OrgId>,
    day: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(RECORD_USAGE)
        .bind(org.map(|o| o.to_string()).unwrap_or_default())
        .bind(day)
        .execute(exec)
        .await?;
    Ok(())
}

const USAGE: &str = "SELECT day, seats, managed FROM billing_usage \
     WHERE org_id = $1 AND day >= $2 ORDER BY day";

/// Recorded (day, seats, managed) since `from`, oldest first.
pub async fn usage(
    pool: &sqlx::AnyPool,
    org: OrgId,
    from: i64,
) -> Result<Vec<(i64, i64, i64)>, sqlx::Error> {
    let rows = sqlx::query(USAGE)
        .bind(org.to_string())
        .bind(from)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("day")?,
                r.try_get("seats")?,
                r.try_get("managed")?,
            ))
        })
        .collect()
}

/// One line of an invoice.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Line {
    pub description: String,
    pub quantity: i64,
    /// Minor units per unit.
    pub unit_price: i64,
    /// Minor units.
    pub amount: i64,
    /// What caused it: `subscription:<org id>:<period start>` or `charge:<charge id>` (the
    /// charge id is in the `subscription.seats_changed` audit event that made it), or `tax`.
    pub source: String,
}

/// An invoice or credit note, as stored (never changed).
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Invoice {
    pub id: String,
    pub number: String,
    /// `invoice` or `credit_note`.
    pub kind: String,
    pub org_name: String,
    /// The invoice a credit note corrects.
    pub corrects: Option<String>,
    pub period: String,
    pub period_start: i64,
    pub period_end: i64,
    pub currency: String,
    pub subtotal: i64,
    pub tax_basis_points: i64,
    pub tax: i64,
    pub total: i64,
    pub note: Option<String>,
    pub issued_at: i64,
    pub lines: Vec<Line>,
}

const NEXT_NUMBER: &str =
    "UPDATE billing_counters SET value = value + 1 WHERE name = $1 RETURNING value";

/// The next number of `counter` (`invoice` or `credit_note`), one sequence per deployment; the
/// row lock serialises concurrent writers on PostgreSQL.
pub async fn next_number(tx: &mut Tx, counter: &str) -> Result<i64, sqlx::Error> {
    sqlx::query(NEXT_NUMBER)
        .bind(counter.to_string())
        .fetch_one(&mut **tx)
        .await?
        .try_get("value")
}

const INSERT_INVOICE: &str = "INSERT INTO invoices (id, number, kind, org_id, org_name, corrects, \
     period, period_start, period_end, currency, subtotal, tax_basis_points, tax, total, note, \
     issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
const INSERT_LINE: &str = "INSERT INTO invoice_lines (invoice_id, position, description, \
     quantity, unit_price, amount, source) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub async fn insert_invoice(tx: &mut Tx, org: OrgId, inv: &Invoice) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_INVOICE)
        .bind(inv.id.clone())
        .bind(inv.number.clone())
        .bind(inv.kind.clone())
        .bind(org.to_string())
        .bind(inv.org_name.clone())
        .bind(inv.corrects.clone())
        .bind(inv.period.clone())
        .bind(inv.period_start)
        .bind(inv.period_end)
        .bind(inv.currency.clone())
        .bind(inv.subtotal)
        .bind(inv.tax_basis_points)
        .bind(inv.tax)
        .bind(inv.total)
        .bind(inv.note.clone())
        .bind(inv.issued_at)
        .execute(&mut **tx)
        .await?;
    for (i, line) in inv.lines.iter().enumerate() {
        sqlx::query(INSERT_LINE)
            .bind(inv.id.clone())
            .bind(i64::try_from(i).unwrap_or(i64::MAX))
            .bind(line.description.clone())
            .bind(line.quantity)
            .bind(line.unit_price)
            .bind(line.amount)
            .bind(line.source.clone())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

const INVOICE_COLUMNS: &str = "id, number, kind, org_name, corrects, period, period_start, \
     period_end, currency, subtotal, tax_basis_points, tax, total, note, issued_at";

fn invoice_from_row(r: &sqlx::any::AnyRow) -> Result<Invoice, sqlx::Error> {
    Ok(Invoice {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        kind: r.try_get("kind")?,
        org_name: r.try_get("org_name")?,
        corrects: r.try_get("corrects")?,
        period: r.try_get("period")?,
        period_start: r.try_get("period_start")?,
        period_end: r.try_get("period_end")?,
        currency: r.try_get("currency")?,
        subtotal: r.try_get("subtotal")?,
        tax_basis_points: r.try_get("tax_basis_points")?,
        tax: r.try_get("tax")?,
        total: r.try_get("total")?,
        note: r.try_get("note")?,
        issued_at: r.try_get("issued_at")?,
        lines: Vec::new(),
    })
}

/// The organization's invoices and credit notes, newest first (without lines).
pub async fn invoices(pool: &sqlx::AnyPool, org: OrgId) -> Result<Vec<Invoice>, sqlx::Error> {
    let sql = format!(
        "SELECT {INVOICE_COLUMNS} FROM invoices WHERE org_id = $1 ORDER BY issued_at DESC, number DESC"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_string())
        .fetch_all(pool)
        .await?;
    rows.iter().map(invoice_from_row).collect()
}

const LINES: &str = "SELECT description, quantity, unit_price, amount, source FROM invoice_lines \
     WHERE invoice_id = $1 ORDER BY position";

/// One invoice of the organization by its number, with its lines.
pub async fn invoice(
    conn: &mut sqlx::AnyConnection,
    org: OrgId,
    number: &str,
) -> Result<Option<Invoice>, sqlx::Error> {
    let sql = format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE org_id = $1 AND number = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(org.to_string())
        .bind(number.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut inv = invoice_from_row(&row)?;
    let lines = sqlx::query(LINES)
        .bind(inv.id.clone())
        .fetch_all(&mut *conn)
        .await?;
    inv.lines = lines
        .iter()
        .map(|r| {
            Ok(Line {
                description: r.try_get("description")?,
                quantity: r.try_get("quantity")?,
                unit_price: r.try_get("unit_price")?,
                amount: r.try_get("amount")?,
                source: r.try_get("source")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Some(inv))
}
