//! The pages: the admin dashboard, forms that keep their input on errors, confirmations, the
//! two-step QR code, and every main page in headless Chromium (axe-core checks, console errors,
//! screenshots at desktop and phone width); on SQLite and PostgreSQL.

mod common;

#[path = "pages/axe.rs"]
mod axe;
#[path = "pages/dashboard.rs"]
mod dashboard;
#[path = "pages/first_day.rs"]
mod first_day;
#[path = "pages/forms.rs"]
mod forms;
