//! The pages: the admin dashboard, forms that keep their input on errors, confirmations, the
//! two-step QR code, every main page in headless Chromium (axe-core checks, console errors,
//! screenshots at desktop and phone width), and an admin's whole journey in Chromium (domain,
//! SSO, invitation, migration with consent, SSO into the demo product, audit log and export);
//! on SQLite and PostgreSQL.

mod common;
#[path = "common/dns.rs"]
mod dns;

#[path = "pages/admin_journey.rs"]
mod admin_journey;
#[path = "pages/axe.rs"]
mod axe;
#[path = "pages/dashboard.rs"]
mod dashboard;
#[path = "pages/first_day.rs"]
mod first_day;
#[path = "pages/forms.rs"]
mod forms;
